//! `GET /admin/status` (the doctor, `crate::doctor`), `GET /export` and
//! `POST /import`: operator tools. Export and import move a grant between
//! brokers. Both need `ADMIN_API_KEY` in `X-APIKey`; export needs the authid in
//! `X-AuthID`, import takes one there (ours or a Duplicati service's) only if
//! it looks minted (else it mints one, on a random shard), and replaces what
//! it held. The grant goes to the shard the authid names (`crate::authid`).

use serde_json::json;

use crate::authid::{AuthId, WEAK_AUTHID};
use crate::doctor::{self, GrantGroup, ShardCheck};
use crate::error::{BrokerError, UNKNOWN_SHARD};
use crate::grant::Grant;
use crate::ids::ProviderId;
use crate::pages;
use crate::refresh::{Grants, ReadFrom};
use crate::request::single;
use crate::shell::call::Call;
use crate::shell::respond::{html, json_ok, Out};
use crate::storage::{GrantStore as _, GrantVault as _};

fn check_api_key(c: &Call) -> Result<(), BrokerError> {
    c.cfg.check_admin_key(c.header("X-APIKey").as_deref())
}

/// `GET /admin/status`: every configuration problem with its fix, each
/// provider and its redirect URI, each shard's migration level
/// (`crate::doctor`). Needs `X-APIKey`; without it (or with a wrong one) a
/// 401 that says nothing about the configuration.
pub async fn status(c: &mut Call) -> Out {
    check_api_key(c).map_err(|_| BrokerError::AdminKeyRequired)?;
    json_ok(report(c).await)
}

/// `GET /admin`: the doctor for a browser, which cannot send `X-APIKey`: a
/// form takes the key and posts it (never in a URL); `POST /admin` answers
/// the report as a page, or the form again (401) for a wrong key.
pub async fn page(c: &mut Call) -> Out {
    if !matches!(c.req.method(), worker::Method::Post) {
        return Ok(html(pages::doctor_form(false)));
    }
    let form = c.form().await?;
    let key = single(&form, "key")?;
    if c.cfg.check_admin_key(key).is_err() {
        return Ok(html(pages::doctor_form(true)));
    }
    Ok(html(pages::doctor_report(&report(c).await)))
}

/// What the doctor finds (`crate::doctor::diagnose`).
async fn report(c: &Call) -> serde_json::Value {
    let bindings: Vec<String> = {
        use wasm_bindgen::JsCast;
        js_sys::Object::keys(c.env.unchecked_ref::<js_sys::Object>())
            .iter()
            .filter_map(|k| k.as_string())
            .collect()
    };
    let mut shards = Vec::new();
    let mut grants = Vec::new();
    let mut refreshed = Vec::new();
    let bound = c.cfg.shards().map(<[String]>::to_vec).unwrap_or_default();
    for (i, binding) in bound.into_iter().enumerate() {
        let db =
            crate::shell::store::Db::open(&c.env, &binding, c.d1_work.clone(), Default::default());
        let migrated = match &db {
            Ok(db) => db
                .latest_migration()
                .await
                .map_err(|e| e.cause().unwrap_or_else(|| e.code().to_string())),
            Err(_) => Err(format!("no D1 binding named {binding}")),
        };
        // A shard behind the migrations may lack columns: counted only when current.
        let current = matches!(&migrated, Ok(Some(m)) if m == doctor::LATEST_MIGRATION);
        if let (Ok(db), true) = (&db, current) {
            if let Ok(rows) = db.last_refreshes(c.cfg.now - 86_400).await {
                refreshed.extend(rows);
            }
            if let Ok(groups) = db.grant_groups().await {
                grants.extend(groups.into_iter().map(|(provider, status, day, count)| {
                    GrantGroup {
                        shard: i + 1,
                        provider,
                        status,
                        day,
                        count,
                    }
                }));
            }
        }
        shards.push(ShardCheck { binding, migrated });
    }
    doctor::diagnose(&c.cfg, &bindings, &shards, &grants, &refreshed)
}

/// The grant's provider token JSON plus `service`.
pub async fn export(c: &mut Call) -> Out {
    check_api_key(c)?;
    let authid = c.authid_header()?;
    let opened = c.vault()?.grant(authid)?.open(ReadFrom::Primary).await?;
    json_ok(opened.grant.export(opened.provider.as_str()))
}

/// Seals a provider token JSON (with `refresh_token` and `service`: what
/// `/export` here and duplicati/oauth-handler's `/export` answer, taken as it
/// is) under the authid in `X-AuthID`, in our spelling or either Duplicati
/// service's. Like oauth-handler's own `/import` (main.py L1000-1080, which
/// overwrites the stored entry), importing again under the same authid
/// replaces the grant, but only until the broker first refreshes it (409
/// `grant_in_use` after that: its tokens are then newer than any export); a
/// grant stored under the same keyid with another secret is never touched
/// (409 `authid_exists`). The authid's secret is the grant's only key
/// material, so one of the caller's choosing must look as random as its
/// service would have made it (`AuthId::looks_minted`); without `X-AuthID`
/// the broker mints the authid and returns it in `authid`, once.
pub async fn import(c: &mut Call) -> Out {
    check_api_key(c)?;
    let chosen = match c.header("X-AuthID").filter(|h| !h.trim().is_empty()) {
        Some(_) => Some(c.authid_header()?),
        None => None,
    };
    if let Some(a) = &chosen {
        // The grant goes where the authid says (untagged: shard 1); a shard
        // this broker lacks has nowhere to keep it.
        if c.cfg.shard_binding(a.shard())?.is_none() {
            return Err(UNKNOWN_SHARD);
        }
        if !a.looks_minted() {
            return Err(WEAK_AUTHID);
        }
    }
    let body = c.body().await?;
    let (service, grant) = Grant::import(&body).map_err(|_| BrokerError::BadRequest {
        code: "bad_import",
        what: "the body must be a JSON object with refresh_token and service",
    })?;
    let provider = c
        .cfg
        .catalogue()?
        .get(&service)
        .map(|p| ProviderId::new(&p.id))
        .ok_or(BrokerError::UnknownProvider)?;
    let (authid, minted) = match chosen {
        Some(a) => (a, false),
        None => (AuthId::generate(c.cfg.shard_for_new_grant()?)?, true),
    };
    let shown = minted.then(|| authid.expose());
    let stored = c.vault()?.grant(authid)?;
    let replaced = match stored.open(ReadFrom::Primary).await {
        // Only an import not yet refreshed here: after a refresh the stored
        // tokens are newer than any export (with single-use refresh tokens the
        // exported one is spent), and replacing them would lose the grant.
        Ok(read) if !read.grant.awaiting_first_refresh() => return Err(IN_USE),
        Ok(read) => {
            if !stored.replace(&read, &provider, &grant, c.cfg.now).await? {
                return Err(IN_USE);
            }
            true
        }
        Err(BrokerError::UnknownAuthId) => {
            // Unknown, or stored under this keyid with another secret (under
            // any server-secret version: `exists` looks under all of them).
            if stored.exists().await?
                || !stored
                    .insert_if_absent(&provider, &grant, c.cfg.now)
                    .await?
            {
                return Err(BrokerError::Conflict {
                    code: "authid_exists",
                    what: "a grant is already stored under this authid's key id",
                });
            }
            false
        }
        Err(e) => return Err(e),
    };
    let mut answer = json!({
        "imported": true,
        "replaced": replaced,
        "type": provider.as_str(),
    });
    if let Some(authid) = shown {
        answer["authid"] = authid.into();
    }
    json_ok(answer)
}

/// The grant under this authid has been used here (or was while it was
/// being imported): its tokens are newer than what is being imported.
const IN_USE: BrokerError = BrokerError::Conflict {
    code: "grant_in_use",
    what: "the grant stored under this authid has been refreshed here since it was stored, \
           so its tokens are newer than this import; revoke it first to replace it",
};
