//! A small fake of duplicati/oauth-handler's `GET /export` (main.py
//! L922-998), served by the mock under `/_oauth-handler`, so that the broker's
//! lazy handler move (`src/handler_move.rs`) is tested against the answers the real
//! service gives. Entries are what oauth-handler stores per authid: the
//! keyid, the password that decrypts the entry, the provider's token JSON and
//! the `service`. Like the original, it splits the authid at the first `:`
//! and answers with `{"error": …}` and an `X-Reason` header.

use serde_json::{json, Value};

use crate::http::{Request, Response};

/// The API key the fake accepts (oauth-handler refuses keys shorter than 10).
pub const API_KEY: &str = "mock-oauth-handler-api-key";

/// One stored authid.
pub(crate) struct Entry {
    pub password: String,
    pub service: String,
    /// The provider's token response as last stored.
    pub token: Value,
}

fn refuse(status: u16, reason: &str) -> Response {
    let mut r = Response::json(status, &json!({ "error": reason }));
    r.headers.push(("X-Reason".into(), reason.into()));
    r
}

/// `GET /export`, answered like main.py `export`.
pub(crate) fn export(req: &Request, lookup: impl Fn(&str) -> Option<(String, Value)>) -> Response {
    // main.py L929: `len(settings.API_KEY) < 10 or request.headers['X-APIKey'] != settings.API_KEY`.
    if req.header("X-APIKey") != Some(API_KEY) {
        return refuse(403, "Invalid API key");
    }
    let authid = req.header("X-AuthID").unwrap_or("");
    if authid.is_empty() {
        return refuse(400, "No authid in query");
    }
    // main.py L947: `authid.find(':') <= 0`.
    let Some((keyid, password)) = authid.split_once(':').filter(|(k, _)| !k.is_empty()) else {
        return refuse(400, "Invalid authid in query");
    };
    if keyid == "v2" {
        return refuse(400, "No v2 export possible");
    }
    match lookup(keyid) {
        None => refuse(404, "No such key"),
        // simplecrypt.decrypt with the wrong password fails: L975-981.
        Some((stored_password, _)) if stored_password != password => {
            refuse(400, "Invalid authid password")
        }
        // L983: `resp['service'] = entry.service`, the token JSON as stored.
        Some((_, token)) => Response::json(200, &token),
    }
}

/// The token JSON `/export` answers for an entry.
pub(crate) fn exported(entry: &Entry) -> Value {
    let mut v = entry.token.clone();
    v["service"] = json!(entry.service);
    v
}
