//! `GET /`: one login button per offered provider. Duplicati's old UI opens it
//! with `?type=<id>&token=<t>` (the token registers a hand-off bound to this
//! browser, `handoff.rs`); `?tokenversion=2` starts pass-through logins;
//! `?key=` and a `/k/<key>/` prefix are passed on. A CLI-token provider (Jottacloud) links to
//! `/cli-token` instead of `/login`. The `Referer`'s origin, when it is an
//! allowed opener origin, is kept in a cookie for the result page (`crate::opener`).

use super::handoff;
use crate::cookie;
use crate::login;
use crate::opener;
use crate::pages::{self, IndexOptions, ProviderLink};
use crate::providers::LoginKind;
use crate::shell::call::Call;
use crate::shell::respond::{html, Out};

pub async fn get(c: &mut Call) -> Out {
    let offered = c.cfg.offered()?;
    let links: Vec<ProviderLink<'_>> = offered
        .iter()
        .map(|p| ProviderLink {
            id: &p.id,
            name: &p.name,
            cli_token: p.login == LoginKind::CliToken,
        })
        .collect();
    let fetch_token = crate::handoff::token_param(&c.query)?;
    let binding_cookie = match fetch_token {
        Some(t) => Some(handoff::register(c, t).await?),
        None => None,
    };
    let opts = IndexOptions {
        only: c.query("type")?.map(str::to_string),
        fetch_token: fetch_token.map(str::to_string),
        token_version_2: c.query("tokenversion")? == Some("2"),
        access_key: c.query("key")?.map(str::to_string),
        base: c.base.clone(),
    };
    let mut out = html(pages::index(&links, &opts));
    // The popup's first request names its opener (Duplicati's UI) in `Referer`;
    // a later visit without an allowed one forgets an old hint.
    let referer = c.header("Referer");
    out = out.with_cookie(
        match c.cfg.opener_origins.hint_from_referer(referer.as_deref()) {
            Some(origin) => cookie::set(opener::HINT_COOKIE, &origin, login::LOGIN_TTL_SECS),
            None => cookie::set(opener::HINT_COOKIE, "", 0),
        },
    );
    if let Some(cookie) = binding_cookie {
        out = out.with_cookie(cookie);
    }
    Ok(out)
}
