//! The provider account of a new login (`crate::account`): read from the
//! token answer, or asked of the provider's account endpoint with the new
//! access token. Recorded (hashed) at every mint; compared on
//! re-authorization. A failure here never fails a login: the grant is kept
//! without a record (it then cannot be re-authorized in place) and the
//! failure is logged without any value.

use serde_json::json;

use crate::account::{self, Found};
use crate::providers::Provider;
use crate::shell::call::Call;
use crate::shell::log;
use crate::shell::upstream_fetch::{self, Answer};
use crate::upstream::TokenResponse;

/// The account id `provider` names for the login that answered `resp`.
pub async fn account_id(c: &Call, provider: &Provider, resp: &TokenResponse) -> Option<String> {
    let unknown = |why: &str, status: Option<u16>| {
        log::warn(
            "account_id_unavailable",
            json!({ "provider": provider.id, "why": why, "upstream_status": status }),
        );
        None
    };
    match account::from_token_answer(&provider.account, resp) {
        Found::Id(id) => Some(id),
        Found::NotOffered => None,
        Found::Missing => unknown("not in the token answer", None),
        Found::AskEndpoint { url, field } => {
            let bearer = format!("Bearer {}", resp.access_token());
            let answer = upstream_fetch::get(
                &url,
                &[("Authorization", bearer)],
                c.cfg.upstream_timeout_ms,
            )
            .await;
            match answer {
                Ok(Answer { status: 200, body }) => {
                    match account::from_endpoint_answer(&body, &field) {
                        Found::Id(id) => Some(id),
                        _ => unknown("not in the account endpoint's answer", Some(200)),
                    }
                }
                Ok(Answer { status, .. }) => unknown("the account endpoint refused", Some(status)),
                Err(e) => unknown(e.code(), None),
            }
        }
    }
}
