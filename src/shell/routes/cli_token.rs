//! `GET /cli-token?id=<provider>` and `POST /cli-token-login`: Jottacloud's
//! login as Duplicati's service offers it (oauth-handler main.py at 6d9aa7d,
//! `cli_token` L390-403 and `cli_token_login` L406-481). The page asks for the
//! provider's CLI token; the POST checks the form's double-submit token, parses
//! the CLI token (`crate::cli_token`), makes the password grant
//! (`crate::upstream::password_grant`) and keeps the grant under a new v1
//! authid exactly as a callback does (`tokens::mint`), then shows the same
//! result page.

use crate::cli_token::{self, CliToken, CliTokenError, CSRF_COOKIE, CSRF_TTL_SECS};
use crate::config::Config;
use crate::cookie;
use crate::error::BrokerError;
use crate::opener;
use crate::pages;
use crate::providers::{LoginKind, Provider};
use crate::request::single;
use crate::secret::ClientSecret;
use crate::shell::call::Call;
use crate::shell::respond::{html, Out};
use crate::shell::tokens;
use crate::shell::upstream_fetch;
use crate::upstream::{self, Upstream};

/// The offered CLI-token provider `id` names; any other id is unknown here.
fn provider<'a>(
    cfg: &'a Config,
    id: Option<&str>,
) -> Result<(&'a Provider, Option<&'a ClientSecret>), BrokerError> {
    let id = id
        .filter(|id| !id.is_empty())
        .ok_or(BrokerError::BadRequest {
            code: "missing_provider",
            what: "no provider id was given",
        })?;
    let (p, secret) = cfg.provider(id)?;
    if p.login != LoginKind::CliToken {
        return Err(BrokerError::UnknownProvider);
    }
    Ok((p, secret))
}

/// The form, and the cookie holding its double-submit value.
pub async fn form(c: &mut Call) -> Out {
    let (p, _) = provider(&c.cfg, c.query("id")?)?;
    let csrf = cli_token::new_csrf()?;
    let page = pages::cli_token_form(&p.id, &p.name, csrf.secret(), c.query("key")?, &c.base);
    Ok(html(page).with_cookie(cookie::set(CSRF_COOKIE, csrf.secret(), CSRF_TTL_SECS)))
}

/// The form's POST (`id`, `token`, `csrf`): the CLI token becomes an authid.
pub async fn login(c: &mut Call) -> Out {
    let form = c.form().await?;
    let cookie = c
        .header("Cookie")
        .and_then(|h| cookie::value(&h, CSRF_COOKIE));
    cli_token::check_csrf(cookie.as_deref(), single(&form, "csrf")?)?;
    let cfg = c.cfg.clone();
    let (p, secret) = provider(&cfg, single(&form, "id")?)?;
    let token = CliToken::parse(single(&form, "token")?.unwrap_or_default())?;
    let post = upstream::password_grant(p, secret, &token);
    let resp =
        match upstream_fetch::post_form(&post, &p.id, "password", cfg.upstream_timeout_ms).await? {
            Upstream::Ok(r) => r,
            Upstream::InvalidGrant => return Err(CliTokenError::Rejected.into()),
            Upstream::Failed(_) => return Err(BrokerError::ProviderFailed),
            Upstream::ClientRejected => return Err(BrokerError::ProviderRejectedClient),
        };
    let shown = tokens::mint(c, p, 1, resp).await?;
    // The new UI opened the index in this popup: the opener's origin the index
    // kept (`crate::opener`), checked against the allowlist again.
    let hint = c
        .header("Cookie")
        .and_then(|h| cookie::value(&h, opener::HINT_COOKIE));
    let targets = cfg.opener_origins.targets(hint.as_deref());
    let page = pages::result(
        &shown,
        (&p.id, &p.name),
        None,
        &targets,
        pages::HandoffPrompt::None,
        &c.cfg.oauth_url(),
    );
    Ok(html(page)
        .with_cookie(cookie::set(CSRF_COOKIE, "", 0))
        .with_cookie(cookie::set(opener::HINT_COOKIE, "", 0)))
}
