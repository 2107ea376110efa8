//! `POST /__conformance`, in the fault-injection build only: the storage
//! contract's conformance checks (`crate::storage::conformance`) run against
//! shard 1's D1, whose store implements the traits directly
//! (`store/{vault,logins,handoffs,codes,devices,purge}.rs`), answered as
//! JSON for `tests/e2e/storage_contract.rs`. Never in the release build
//! (`scripts/size-check.sh`). How D1 gives each guarantee: `docs/storage.md`,
//! "What a storage backend must guarantee".

use worker::{Context, Env, Request, Response};

use super::call::Call;
use super::respond;
use crate::ids::Shard;
use crate::request::parse_params;
use crate::route::Surface;
use crate::storage::conformance::{self, Check};

/// The path the hook answers (only with `POST`).
pub const PATH: &str = "/__conformance";

/// The clock the checks run at: 2001-09-09, before any real row's
/// expiry, so that the purge check (at this time plus seconds) can only
/// delete the rows the checks wrote (every key they write is random too).
const NOW: i64 = 1_000_000_000;

/// Whether `path` and `method` name the hook.
pub fn asks(path: &str, method: crate::route::Method) -> bool {
    path == PATH && method == crate::route::Method::Post
}

/// Runs the conformance checks against shard 1's D1 (grants, logins,
/// hand-offs, codes, device codes) and answers `{"checks":[{name,
/// passed, detail}]}`.
pub async fn answer(
    req: Request,
    env: Env,
    ctx: Context,
    origin: String,
) -> worker::Result<Response> {
    let cfg = super::bindings::config(&env, origin);
    let call = Call::new(req, env, ctx, cfg, parse_params(""));
    let checks: Result<Vec<Check>, _> = async {
        let (db, vault) = (call.db()?, call.vault()?);
        Ok(conformance::run(&vault, &db, Shard::FIRST, NOW).await)
    }
    .await;
    match checks {
        Ok(checks) => Response::from_json(&serde_json::json!({ "checks": checks })),
        Err(e) => respond::finish(Err(e), Surface::Api, false, None),
    }
}
