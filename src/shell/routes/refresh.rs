//! `GET|POST /refresh`: an access token for an authid, in Duplicati's shape
//! (`{access_token, expires, type}`, plus `v2_authid` for a pass-through
//! authid). The work is `crate::shell::tokens`, shared by every door.

use serde_json::json;
use worker::Method;

use crate::error::BrokerError;
use crate::request::{authid_from, Params};
use crate::shell::call::Call;
use crate::shell::respond::{json_ok, redirect, Out};
use crate::shell::tokens;

pub async fn handle(c: &mut Call) -> Out {
    let form = match c.req.method() {
        Method::Post => c.form().await?,
        _ => Params::new(),
    };
    let header = c.header("X-AuthID");
    let Some(raw) = authid_from(header.as_deref(), &form, &c.query)? else {
        return login_redirect(c);
    };
    let issued = tokens::for_authid(c, raw, None).await?;
    let mut answer = json!({
        "access_token": issued.token.secret(),
        "expires": issued.remaining,
        "type": issued.provider,
    });
    if let Some(next) = issued.next_authid {
        answer["v2_authid"] = next.into();
    }
    json_ok(answer)
}

/// No authid: Duplicati's new UI opens `<oauth-url>?type=<id>` to log in. The
/// access key goes along as it came (`key=`, or the `/k/<key>` prefix).
fn login_redirect(c: &Call) -> Out {
    let Some(t) = c.query("type")? else {
        return Err(BrokerError::MissingAuthId);
    };
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("type", t);
    if let Some(k) = c.query("key")? {
        q.append_pair("key", k);
    }
    Ok(redirect(&format!(
        "{}{}/?{}",
        c.cfg.origin,
        c.base,
        q.finish()
    )))
}
