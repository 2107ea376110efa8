//! `GET /login?id=<provider>`: a single-use state, a browser-binding cookie and
//! PKCE (`crate::login`), stored, then a 302 to the provider. With `token=<t>`
//! (Duplicati's old UI) only from the browser that registered `t` at the index,
//! and the provider is asked for consent. A CLI-token provider (Jottacloud)
//! is sent to its `/cli-token` page.

use super::handoff;
use crate::error::BrokerError;
use crate::login::{self, LoginEnding};
use crate::pages::{self, IndexOptions, ProviderLink};
use crate::providers::LoginKind;
use crate::shell::call::Call;
use crate::shell::respond::{redirect, Out};
use crate::storage::Logins as _;

pub async fn get(c: &mut Call) -> Out {
    let id = c.query("id")?.ok_or(BrokerError::BadRequest {
        code: "missing_provider",
        what: "no provider id was given",
    })?;
    let (provider, _) = c.cfg.provider(id)?;
    if provider.login == LoginKind::CliToken {
        // Jottacloud has no authorize endpoint: its login is the CLI-token page.
        let link = ProviderLink {
            id: &provider.id,
            name: &provider.name,
            cli_token: true,
        };
        let opts = IndexOptions {
            access_key: c.query("key")?.map(str::to_string),
            base: c.base.clone(),
            ..IndexOptions::default()
        };
        let href = pages::provider_href(&link, &opts);
        return Ok(redirect(&format!("{}{href}", c.cfg.origin)));
    }
    let token_version = match c.query("tokenversion")? {
        Some("2") => 2,
        _ => 1,
    };
    let fetch_token = crate::handoff::token_param(&c.query)?;
    if let Some(t) = fetch_token {
        handoff::check_login(c, t).await?;
    }
    let now = c.cfg.now;
    let started = login::start(
        provider,
        &c.cfg.origin,
        token_version,
        fetch_token,
        LoginEnding::ResultPage,
        now,
    )?;
    c.db()?
        .insert_login(&started.state, &started.record, now)
        .await?;
    let mut out = redirect(&started.authorize_url).with_cookie(login::set_cookie(&started.binding));
    if let Some(t) = fetch_token {
        out = out.with_cookie(handoff::carry_cookie(t));
    }
    Ok(out)
}
