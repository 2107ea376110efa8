//! `GET /revoke` (a form) and `POST /revoked`: whoever holds the authid can
//! delete its grant here, which also revokes it at the provider where the
//! provider has an endpoint for that (a pass-through (v2) authid: only there).

use crate::pages;
use crate::request::single;
use crate::shell::call::Call;
use crate::shell::respond::{html, Out};
use crate::shell::tokens;

pub async fn form(_: &mut Call) -> Out {
    Ok(html(pages::revoke_form()))
}

pub async fn post(c: &mut Call) -> Out {
    let form = c.form().await?;
    let authid = single(&form, "authid")?.unwrap_or_default();
    let revoked = tokens::revoke_authid(c, authid).await?;
    Ok(html(pages::revoked(revoked.provider)))
}
