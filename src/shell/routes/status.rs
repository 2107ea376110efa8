//! `/status`: what the holder of an authid may learn about its grant
//! (`crate::status`). `GET` with `X-AuthID`: the JSON answer (a machine, a
//! script); `GET` without: the form; `POST` (the form's authid): the page,
//! whose re-authorize and revoke forms carry a ticket for the authid
//! (`crate::reauthorize::Ticket`), never the authid itself.

use worker::Method;

use crate::cookie;
use crate::error::BrokerError;
use crate::random;
use crate::reauthorize::Ticket;
use crate::request::single;
use crate::shell::call::Call;
use crate::shell::respond::{html, json_ok, Out};
use crate::shell::tokens::{self, StatusAnswer};
use crate::status;

pub async fn handle(c: &mut Call) -> Out {
    if c.req.method() == Method::Post {
        return page(c).await;
    }
    let Some(raw) = c.header("X-AuthID").filter(|h| !h.is_empty()) else {
        return Ok(html(status::form(&format!("{}/status", c.base))));
    };
    match tokens::status(c, &raw).await? {
        StatusAnswer::Stored(view) => json_ok(status::json(&view, &c.cfg.origin)),
        StatusAnswer::PassThrough { provider, name } => {
            json_ok(status::pass_through_json(&provider, name.as_deref()))
        }
        StatusAnswer::Replaced => json_ok(status::replaced_json()),
    }
}

async fn page(c: &mut Call) -> Out {
    let form = c.form().await?;
    let raw = single(&form, "authid")?
        .filter(|a| !a.trim().is_empty())
        .ok_or(BrokerError::MissingAuthId)?
        .to_string();
    match tokens::status(c, &raw).await? {
        StatusAnswer::Stored(view) => {
            let cookie = random::token_b64url(32)
                .map_err(|_| BrokerError::internal("no randomness for a status ticket"))?;
            let ticket = Ticket::seal(c.cfg.keys()?, &cookie, raw.trim(), c.cfg.now)?;
            Ok(html(status::page(&view, &ticket)).with_cookie(cookie::set(
                Ticket::COOKIE,
                &cookie,
                Ticket::TTL_SECS,
            )))
        }
        StatusAnswer::PassThrough { .. } => Ok(html(status::note_page(true))),
        StatusAnswer::Replaced => Ok(html(status::note_page(false))),
    }
}
