//! `GET /revoke` (a form) and `POST /revoked`: whoever holds the authid can
//! delete its grant here, which also revokes it at the provider where the
//! provider has an endpoint for that (a pass-through (v2) authid: only there).

use super::reauthorize;
use crate::error::BrokerError;
use crate::pages;
use crate::request::single;
use crate::shell::call::Call;
use crate::shell::respond::{html, Out};
use crate::shell::tokens;

pub async fn form(_: &mut Call) -> Out {
    Ok(html(pages::revoke_form()))
}

/// The authid comes from the form, or, from the status page, as its ticket
/// (`crate::reauthorize::Ticket`) with the confirmation box ticked.
pub async fn post(c: &mut Call) -> Out {
    let form = c.form().await?;
    let from_status_page = single(&form, "ticket")?.is_some_and(|t| !t.is_empty());
    if from_status_page && single(&form, "confirm")? != Some("yes") {
        return Err(BrokerError::BadRequest {
            code: "not_confirmed",
            what: "tick the box to confirm that backups using this authid stop working",
        });
    }
    let authid = reauthorize::authid_or_ticket(c, &form)?;
    let revoked = tokens::revoke_authid(c, &authid).await?;
    Ok(html(pages::revoked(revoked.provider)))
}
