//! The thin shell: the Workers entry point and the route handlers. Each handler
//! parses the request, calls the core, talks to D1 or the provider, and shapes
//! the response. Everything that can be decided without the runtime lives in
//! the core modules.

mod respond;
mod store;
mod upstream_fetch;

use std::time::Duration;

use worker::{event, Context, Delay, Env, Method, Request, Response};

use crate::access;
use crate::authid::{parse_authid, v2_authid, AuthId, ParsedAuthId};
use crate::error::BrokerError;
use crate::fetch;
use crate::grant::{Grant, DEFAULT_EXPIRES_IN};
use crate::login;
use crate::pages;
use crate::providers::{canonical_id, Catalogue, Provider};
use crate::random;
use crate::refresh::{self, Next, Status};
use crate::request::{authid_from, parse_params, single, Params, MAX_FORM_BYTES};
use crate::seal::ServerKeys;
use crate::secret::{ct_eq, AccessToken, ClientSecret, RefreshToken, StateToken};
use crate::upstream::{self, Upstream};

use respond::{html, json_ok, redirect, Out};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let https = req.url().map(|u| u.scheme() == "https").unwrap_or(false);
    let out = route(req, &env).await;
    respond::finish(out, https)
}

/// Unix seconds.
fn now() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

/// Reads a string binding (var or secret); absent or blank is `None`.
fn binding(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.trim().is_empty())
}

/// The request's per-route context: the environment and the broker's origin.
struct Ctx<'a> {
    env: &'a Env,
    origin: String,
}

impl Ctx<'_> {
    fn catalogue(&self) -> Result<Catalogue, BrokerError> {
        let raw = binding(self.env, "OAUTH_PROVIDERS");
        Catalogue::load(raw.as_deref())
            .map(|c| c.with_client_ids(|name| binding(self.env, name)))
            .map_err(|_| BrokerError::Misconfigured {
                what: "OAUTH_PROVIDERS is invalid",
            })
    }

    /// A configured provider (client id and secret present) and its secret.
    fn provider(&self, id: &str) -> Result<(Provider, ClientSecret), BrokerError> {
        let catalogue = self.catalogue()?;
        let p = catalogue
            .get(id)
            .filter(|p| !p.client_id.is_empty())
            .ok_or(BrokerError::UnknownProvider)?;
        let secret = binding(self.env, &p.secret_binding()).ok_or(BrokerError::UnknownProvider)?;
        Ok((p.clone(), ClientSecret::new(secret)))
    }

    fn sealing_secret(&self) -> Result<String, BrokerError> {
        binding(self.env, "SEALING_SECRET").ok_or(BrokerError::Misconfigured {
            what: "SEALING_SECRET is not set",
        })
    }

    fn keys(&self) -> Result<ServerKeys, BrokerError> {
        let current = self.sealing_secret()?;
        let previous = binding(self.env, "SEALING_SECRETS_PREVIOUS");
        ServerKeys::parse(&current, previous.as_deref()).map_err(|_| BrokerError::Misconfigured {
            what: "SEALING_SECRET or SEALING_SECRETS_PREVIOUS is invalid",
        })
    }

    fn upstream_timeout_ms(&self) -> u64 {
        refresh::upstream_timeout_ms(binding(self.env, "UPSTREAM_TIMEOUT_MS").as_deref())
    }

    fn opener_origins(&self) -> Vec<String> {
        binding(self.env, "OPENER_ORIGINS")
            .unwrap_or_else(|| "http://localhost:8200 http://127.0.0.1:8200".into())
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

async fn route(mut req: Request, env: &Env) -> Out {
    let url = req.url().map_err(|_| BrokerError::Internal)?;
    let origin = url.origin().ascii_serialization();
    let query = parse_params(url.query().unwrap_or(""));
    let ctx = Ctx { env, origin };
    let method = req.method();
    let path = url.path().to_string();
    guard(&ctx, &req, &path, &query).await.map_err(|e| {
        if access::browser_route(&path) {
            respond::Page(e)
        } else {
            e.into()
        }
    })?;
    match (path.as_str(), method) {
        ("/healthz", Method::Get | Method::Head) => respond::text("ok"),
        ("/", Method::Get | Method::Head) => index(&ctx, &query).await,
        ("/fetch", Method::Get) => fetch_authid(&ctx, &query).await,
        ("/token-state", Method::Get) => token_state(&ctx, &query).await,
        ("/login", Method::Get) => start_login(&ctx, &query).await,
        ("/refresh", Method::Get) => refresh(&ctx, &req, &Params::new(), &query).await,
        ("/refresh", Method::Post) => {
            let form = read_form(&mut req).await?;
            refresh(&ctx, &req, &form, &query).await
        }
        ("/revoke", Method::Get) => Ok(html(pages::revoke_form())),
        ("/revoked", Method::Post) => {
            let form = read_form(&mut req).await?;
            revoke(&ctx, &form).await
        }
        ("/export", Method::Get) => export(&ctx, &req).await,
        ("/import", Method::Post) => {
            let body = read_body(&mut req).await?;
            import(&ctx, &req, &body).await
        }
        (p, Method::Get) if p.starts_with("/callback/") => {
            let provider = p.trim_start_matches("/callback/").to_string();
            let cookie = req.headers().get("Cookie").ok().flatten();
            callback(&ctx, &provider, &query, cookie.as_deref()).await
        }
        (
            "/healthz" | "/" | "/login" | "/refresh" | "/revoke" | "/revoked" | "/export"
            | "/import" | "/fetch" | "/token-state",
            _,
        ) => Err(BrokerError::MethodNotAllowed.into()),
        (p, _) if p.starts_with("/callback/") => Err(BrokerError::MethodNotAllowed.into()),
        _ => Err(BrokerError::NotFound.into()),
    }
}

/// Abuse controls before any work: the per-IP rate limit on routes that cost
/// something, then the operator's access gate (`ACCESS_KEYS`) on /login and /refresh.
async fn guard(
    ctx: &Ctx<'_>,
    req: &Request,
    path: &str,
    query: &Params,
) -> Result<(), BrokerError> {
    if access::ip_limited(path) {
        let ip = req
            .headers()
            .get("CF-Connecting-IP")
            .ok()
            .flatten()
            .unwrap_or_default();
        rate_limit(ctx, "RL_PER_IP", access::ip_key(&ip)).await?;
    }
    if access::gated(path) {
        let keys = access::parse_keys(binding(ctx.env, "ACCESS_KEYS").as_deref());
        let header = req.headers().get("X-Access-Key").ok().flatten();
        let presented = header.as_deref().or(single(query, "key")?);
        if !access::allowed(&keys, presented) {
            return Err(BrokerError::Forbidden {
                code: "access_key_required",
                what: "this broker needs an access key (key= in the URL or X-Access-Key)",
            });
        }
    }
    Ok(())
}

/// Seconds in the rate-limit window (`period` of the `[[ratelimits]]` bindings).
const RATE_LIMIT_PERIOD: u32 = 60;

/// One hit against a Workers rate-limit binding. A missing binding means the
/// operator turned that limit off; a failing one lets the request through
/// (availability over strictness: the limits protect quota, not secrets).
async fn rate_limit(ctx: &Ctx<'_>, binding_name: &str, key: String) -> Result<(), BrokerError> {
    let Ok(limiter) = ctx.env.rate_limiter(binding_name) else {
        return Ok(());
    };
    match limiter.limit(key).await {
        Ok(outcome) if !outcome.success => Err(BrokerError::RateLimited {
            retry_after: RATE_LIMIT_PERIOD,
        }),
        _ => Ok(()),
    }
}

async fn read_form(req: &mut Request) -> Result<Params, BrokerError> {
    let bytes = read_body(req).await?;
    let text = String::from_utf8(bytes).map_err(|_| BrokerError::BadRequest {
        code: "bad_body",
        what: "the request body is not UTF-8 form data",
    })?;
    Ok(parse_params(&text))
}

async fn read_body(req: &mut Request) -> Result<Vec<u8>, BrokerError> {
    let bytes = req.bytes().await.map_err(|_| BrokerError::BadRequest {
        code: "bad_body",
        what: "the request body could not be read",
    })?;
    if bytes.len() > MAX_FORM_BYTES {
        return Err(BrokerError::BadRequest {
            code: "body_too_large",
            what: "the request body is too large",
        });
    }
    Ok(bytes)
}

/// `GET /`: one button per configured provider; `?token=` registers a fetch token.
async fn index(ctx: &Ctx<'_>, query: &Params) -> Out {
    let catalogue = ctx.catalogue().map_err(respond::Page)?;
    let offered = catalogue.configured(|name| binding(ctx.env, name).is_some());
    let links: Vec<pages::ProviderLink<'_>> = offered
        .iter()
        .map(|p| pages::ProviderLink {
            id: &p.id,
            name: &p.name,
        })
        .collect();
    let get = |k| single(query, k).map_err(respond::Page);
    let fetch_token = fetch_token_param(query).map_err(respond::Page)?;
    if let Some(t) = fetch_token {
        let db = store::Db::open(ctx.env).map_err(respond::Page)?;
        db.register_fetch_token(&fetch::token_hash(t), now() + fetch::FETCH_TTL_SECS, now())
            .await
            .map_err(respond::Page)?;
    }
    let opts = pages::IndexOptions {
        only: get("type")?.map(str::to_string),
        fetch_token: fetch_token.map(str::to_string),
        token_version_2: get("tokenversion")? == Some("2"),
        access_key: get("key")?.map(str::to_string),
    };
    Ok(html(pages::index(&links, &opts)))
}

/// The `token` parameter, validated (`None` when absent or empty).
fn fetch_token_param(query: &Params) -> Result<Option<&str>, BrokerError> {
    match single(query, "token")?.filter(|t| !t.is_empty()) {
        Some(t) if fetch::valid_token(t) => Ok(Some(t)),
        Some(_) => Err(BrokerError::BadRequest {
            code: "bad_token",
            what: "token must be 1-128 chars of A-Z a-z 0-9 . _ ~ -",
        }),
        None => Ok(None),
    }
}

/// `GET /fetch?token=<t>[&callback=<fn>]`: the authid a login with `t` made, once.
async fn fetch_authid(ctx: &Ctx<'_>, query: &Params) -> Out {
    let callback = single(query, "callback")?.filter(|c| !c.is_empty());
    if callback.is_some_and(|c| !fetch::valid_callback(c)) {
        return Err(BrokerError::BadRequest {
            code: "bad_callback",
            what: "callback must be a JavaScript identifier",
        }
        .into());
    }
    let answer = match single(query, "token")?.filter(|t| !t.is_empty()) {
        None => fetch::FetchAnswer::MissingToken,
        Some(t) if !fetch::valid_token(t) => fetch::FetchAnswer::NoSuchEntry,
        Some(t) => fetch_answer(ctx, t).await?,
    };
    let body = answer.json();
    match callback.and_then(|c| fetch::jsonp(c, &body)) {
        Some(js) => respond::javascript(js),
        None => json_ok(body),
    }
}

async fn fetch_answer(ctx: &Ctx<'_>, token: &str) -> Result<fetch::FetchAnswer, BrokerError> {
    let db = store::Db::open(ctx.env)?;
    let hash = fetch::token_hash(token);
    let Some(row) = db.fetch_token(&hash, now()).await? else {
        return Ok(fetch::FetchAnswer::NoSuchEntry);
    };
    let (Some(nonce), Some(ct)) = (row.nonce, row.ciphertext) else {
        return Ok(if row.collected == 1 {
            fetch::FetchAnswer::NoSuchEntry
        } else {
            fetch::FetchAnswer::NotReady
        });
    };
    let secret = ctx.sealing_secret()?;
    let authid = fetch::open_authid(token, &secret, &nonce, &ct);
    // Single use: only the caller that flips `collected` gets the authid.
    match authid {
        Some(a) if db.collect_fetch_token(&hash).await? => Ok(fetch::FetchAnswer::Authid(a)),
        _ => Ok(fetch::FetchAnswer::NoSuchEntry),
    }
}

/// `GET /token-state?token=<t>`: whether `/fetch` has collected it.
async fn token_state(ctx: &Ctx<'_>, query: &Params) -> Out {
    let collected = match single(query, "token")?.filter(|t| fetch::valid_token(t)) {
        Some(t) => {
            let db = store::Db::open(ctx.env)?;
            db.fetch_token(&fetch::token_hash(t), now())
                .await?
                .is_some_and(|r| r.collected == 1)
        }
        None => false,
    };
    json_ok(serde_json::json!({ "success": collected }))
}

/// `GET /login?id=`: single-use state + browser cookie + PKCE, then 302 to the provider.
async fn start_login(ctx: &Ctx<'_>, query: &Params) -> Out {
    let page = respond::Page;
    let id = single(query, "id")
        .map_err(page)?
        .ok_or(page(BrokerError::BadRequest {
            code: "missing_provider",
            what: "no provider id was given",
        }))?;
    let (provider, _) = ctx.provider(id).map_err(page)?;
    let token_version = match single(query, "tokenversion").map_err(page)? {
        Some("2") => 2,
        _ => 1,
    };
    let fetch_token = fetch_token_param(query).map_err(page)?;
    let started =
        login::start(&provider, &ctx.origin, token_version, fetch_token, now()).map_err(page)?;
    let db = store::Db::open(ctx.env).map_err(page)?;
    db.insert_login(
        &login::sha256_hex(started.state.secret()),
        &started.record,
        now(),
    )
    .await
    .map_err(page)?;
    let mut out = redirect(&started.authorize_url, login::set_cookie(&started.binding))?;
    if let Some(t) = fetch_token {
        out.extra_cookie = Some(login::cookie(fetch::COOKIE_NAME, t, login::LOGIN_TTL_SECS));
    }
    Ok(out)
}

/// `GET /callback/<provider>`: validate state + cookie, exchange the code, seal
/// the grant, show the authid once.
async fn callback(
    ctx: &Ctx<'_>,
    path_provider: &str,
    query: &Params,
    cookie_header: Option<&str>,
) -> Out {
    let page = respond::Page;
    let get = |k| single(query, k).map_err(page);
    let state = get("state")?
        .filter(|s| !s.is_empty())
        .map(|s| StateToken::new(s.to_string()))
        .ok_or(page(BrokerError::InvalidLoginState))?;
    let db = store::Db::open(ctx.env).map_err(page)?;
    // Consume first: whatever happens next, this state cannot be used again.
    let record = db
        .take_login(&login::sha256_hex(state.secret()))
        .await
        .map_err(page)?;
    let verifier = login::verify_callback(
        record.as_ref(),
        canonical_id(path_provider),
        &state,
        cookie_header.and_then(login::cookie_from_header).as_ref(),
        now(),
    )
    .map_err(|_| page(BrokerError::InvalidLoginState))?;
    if get("error")?.is_some() {
        return Err(page(BrokerError::LoginDenied));
    }
    let code = get("code")?
        .filter(|c| !c.is_empty())
        .ok_or(page(BrokerError::BadRequest {
            code: "missing_code",
            what: "the provider sent no authorization code",
        }))?;
    let record = record.ok_or(page(BrokerError::InvalidLoginState))?;
    let (provider, secret) = ctx.provider(&record.provider).map_err(page)?;
    let redirect_uri = login::redirect_uri(&ctx.origin, &provider.id);
    let post = upstream::code_exchange(
        &provider,
        &secret,
        code,
        &redirect_uri,
        provider.pkce.then_some(verifier.secret()),
    );
    let resp = match upstream_fetch::post_form(&post, ctx.upstream_timeout_ms())
        .await
        .map_err(page)?
    {
        Upstream::Ok(r) => r,
        Upstream::InvalidGrant => return Err(page(BrokerError::InvalidLoginState)),
        Upstream::Failed => return Err(page(BrokerError::ProviderFailed)),
    };
    let shown = mint_authid(ctx, &db, &provider, record.token_version, resp)
        .await
        .map_err(page)?;
    if let Some(expected) = &record.fetch_token_hash {
        leave_for_fetch(ctx, &db, expected, cookie_header, &shown)
            .await
            .map_err(page)?;
    }
    let mut out = html(pages::result(&shown, &provider.name, &ctx.opener_origins()));
    out.set_cookie = Some(login::clear_cookie());
    if record.fetch_token_hash.is_some() {
        out.extra_cookie = Some(login::cookie(fetch::COOKIE_NAME, "", 0));
    }
    Ok(out)
}

/// What the result page shows for a completed code exchange: a new stored (v1)
/// authid, a pass-through (v2) authid, or, for pCloud, the access token itself.
async fn mint_authid(
    ctx: &Ctx<'_>,
    db: &store::Db,
    provider: &Provider,
    token_version: u8,
    resp: upstream::TokenResponse,
) -> Result<String, BrokerError> {
    if provider.access_token_is_authid {
        // pCloud: the token never expires and there is no refresh token; Duplicati
        // uses the access token itself as the authid. Nothing is stored.
        return Ok(resp.access_token().to_string());
    }
    let grant = Grant::from_code_exchange(resp, now()).map_err(|_| BrokerError::BadRequest {
        code: "no_refresh_token",
        what: "the provider issued no refresh token",
    })?;
    if token_version == 2 {
        // Stateless (Akeeba-style): the authid carries the refresh token; nothing is stored.
        let rt = grant.refresh_token().ok_or(BrokerError::Internal)?;
        return Ok(v2_authid(&provider.id, &rt));
    }
    let authid = AuthId::generate().map_err(|_| BrokerError::Internal)?;
    let (key_hash, sealed) = ctx
        .keys()?
        .seal(&authid, &provider.id, &grant.to_bytes())
        .map_err(|_| BrokerError::Internal)?;
    db.insert_grant(&key_hash, &provider.id, &sealed, now())
        .await?;
    Ok(authid.expose())
}

/// The old UI polls `/fetch` with its token: leave the authid there, sealed
/// under the token the login's cookie carried (checked against the login record).
async fn leave_for_fetch(
    ctx: &Ctx<'_>,
    db: &store::Db,
    expected_hash: &str,
    cookie_header: Option<&str>,
    authid: &str,
) -> Result<(), BrokerError> {
    let token = cookie_header
        .and_then(|h| login::cookie_value(h, fetch::COOKIE_NAME))
        .filter(|t| ct_eq(fetch::token_hash(t).as_bytes(), expected_hash.as_bytes()));
    let Some(token) = token else {
        return Ok(());
    };
    let secret = ctx.sealing_secret()?;
    let (nonce, ct) = fetch::seal_authid(&token, &secret, authid).ok_or(BrokerError::Internal)?;
    db.complete_fetch_token(expected_hash, &nonce, &ct, now() + fetch::FETCH_TTL_SECS)
        .await
}

/// A v1 grant found in D1 and opened.
struct Opened {
    row: store::GrantRow,
    grant: Grant,
}

async fn open_grant(
    db: &store::Db,
    keys: &ServerKeys,
    authid: &AuthId,
) -> Result<Opened, BrokerError> {
    let hashes = keys.lookup_hashes(authid);
    let row = db
        .find_grant(&hashes)
        .await?
        .ok_or(BrokerError::UnknownAuthId)?;
    let plain = keys
        .open(authid, &row.provider, &row.key_hash, &row.sealed())
        .map_err(|_| BrokerError::UnknownAuthId)?;
    let grant = Grant::from_bytes(&plain).map_err(|_| BrokerError::UnknownAuthId)?;
    Ok(Opened { row, grant })
}

/// `GET|POST /refresh`: an access token for an authid.
async fn refresh(ctx: &Ctx<'_>, req: &Request, form: &Params, query: &Params) -> Out {
    let header = req.headers().get("X-AuthID").ok().flatten();
    let raw = match authid_from(header.as_deref(), form, query)? {
        Some(a) => a,
        None => {
            // Duplicati's new UI opens `<oauth-url>?type=<id>` to log in.
            if let Some(t) = single(query, "type")? {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                q.append_pair("type", t);
                if let Some(k) = single(query, "key")? {
                    q.append_pair("key", k);
                }
                return redirect(&format!("{}/?{}", ctx.origin, q.finish()), None);
            }
            return Err(BrokerError::MissingAuthId.into());
        }
    };
    // Per-grant limit (cache hits count): keyed by the row's key hash for v1 and
    // by a hash of the whole authid for v2, never by the authid itself.
    let authid = match parse_authid(raw).map_err(|_| BrokerError::MalformedAuthId)? {
        ParsedAuthId::V1(a) => a,
        ParsedAuthId::V2 {
            provider,
            refresh_token,
        } => {
            rate_limit(ctx, "RL_PER_GRANT", login::sha256_hex(raw)).await?;
            return refresh_pass_through(ctx, &provider, &refresh_token).await;
        }
    };
    let keys = ctx.keys()?;
    rate_limit(ctx, "RL_PER_GRANT", keys.key_hash(&authid)).await?;
    let db = store::Db::open(ctx.env)?;
    let (token, remaining, provider) = refresh_stored(ctx, &db, &keys, &authid).await?;
    json_ok(serde_json::json!({
        "access_token": token.secret(),
        "expires": remaining,
        "type": provider,
    }))
}

/// A v2 authid carries its refresh token: nothing is stored, every call goes
/// upstream, and the answer carries the refresh token to use next time
/// (`v2_authid`) — the rotated one when the provider rotated it, never a spent one.
async fn refresh_pass_through(
    ctx: &Ctx<'_>,
    provider_id: &str,
    refresh_token: &RefreshToken,
) -> Out {
    let (provider, secret) = ctx
        .provider(provider_id)
        .map_err(|_| BrokerError::UnknownAuthId)?;
    let post = upstream::refresh(
        &provider,
        &secret,
        refresh_token,
        &login::redirect_uri(&ctx.origin, &provider.id),
    );
    let resp = match upstream_fetch::post_form(&post, ctx.upstream_timeout_ms()).await? {
        Upstream::Ok(r) => r,
        Upstream::InvalidGrant => return Err(reauthorize(ctx).into()),
        Upstream::Failed => return Err(BrokerError::ProviderFailed.into()),
    };
    let next = resp
        .refresh_token()
        .map(|rt| RefreshToken::new(rt.to_string()))
        .unwrap_or_else(|| refresh_token.clone());
    json_ok(serde_json::json!({
        "access_token": resp.access_token(),
        "expires": resp.expires_in().unwrap_or(DEFAULT_EXPIRES_IN),
        "type": provider.id,
        "v2_authid": v2_authid(&provider.id, &next),
    }))
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// The single-flight refresh loop of `crate::refresh`: serve from cache, or win
/// the lease and refresh upstream, or wait for the request that won it.
async fn refresh_stored(
    ctx: &Ctx<'_>,
    db: &store::Db,
    keys: &ServerKeys,
    authid: &AuthId,
) -> Result<(AccessToken, i64, String), BrokerError> {
    let deadline = now_ms() + refresh::WAIT_BUDGET_MS;
    loop {
        let Opened { row, grant } = open_grant(db, keys, authid).await?;
        let now = now();
        match refresh::next(Status::parse(&row.status), &grant, row.lease_until, now) {
            Next::Serve(token, remaining) => return Ok((token, remaining, row.provider)),
            Next::Reauthorize => return Err(reauthorize(ctx)),
            Next::Claim => {
                let lease_id = random::token_b64url(16).map_err(|_| BrokerError::Internal)?;
                if db
                    .claim_lease(&row, &lease_id, now + refresh::LEASE_SECS, now)
                    .await?
                {
                    return refresh_upstream(ctx, db, keys, authid, row, grant, &lease_id).await;
                }
            }
            Next::Wait => {}
        }
        if now_ms() >= deadline {
            return Err(BrokerError::RefreshPending);
        }
        Delay::from(Duration::from_millis(refresh::POLL_MS)).await;
    }
}

fn reauthorize(ctx: &Ctx<'_>) -> BrokerError {
    BrokerError::ReauthorizationRequired {
        broker_url: format!("{}/", ctx.origin),
    }
}

/// Holding the lease: one upstream refresh, then persist the (possibly rotated)
/// refresh token before answering. On failure the grant is left as it was.
async fn refresh_upstream(
    ctx: &Ctx<'_>,
    db: &store::Db,
    keys: &ServerKeys,
    authid: &AuthId,
    row: store::GrantRow,
    mut grant: Grant,
    lease_id: &str,
) -> Result<(AccessToken, i64, String), BrokerError> {
    let outcome = match (ctx.provider(&row.provider), grant.refresh_token()) {
        (Ok((provider, secret)), Some(rt)) => {
            let post = upstream::refresh(
                &provider,
                &secret,
                &rt,
                &login::redirect_uri(&ctx.origin, &provider.id),
            );
            upstream_fetch::post_form(&post, ctx.upstream_timeout_ms()).await
        }
        (Err(e), _) => Err(e),
        (_, None) => Err(BrokerError::UnknownAuthId),
    };
    let resp = match outcome {
        Ok(Upstream::Ok(resp)) => resp,
        Ok(Upstream::InvalidGrant) => {
            // Remember it: later calls answer at once without asking the provider again.
            db.release_lease(&row, lease_id, Status::ReauthRequired, now())
                .await?;
            return Err(reauthorize(ctx));
        }
        Ok(Upstream::Failed) | Err(_) => {
            db.release_lease(&row, lease_id, Status::Active, now())
                .await?;
            return Err(match outcome {
                Err(e) => e,
                _ => BrokerError::ProviderFailed,
            });
        }
    };
    let now = now();
    grant.apply_refresh(resp, now);
    // Re-seal under the current server-secret version (re-keying rows found
    // under an older one) and write before answering: a client that got an
    // access token must never leave the broker holding a spent refresh token.
    let (key_hash, sealed) = keys
        .seal(authid, &row.provider, &grant.to_bytes())
        .map_err(|_| BrokerError::Internal)?;
    if !db
        .write_refreshed(&row, lease_id, &key_hash, &sealed, now)
        .await?
    {
        // Only possible if our lease expired mid-refresh (upstream + write took
        // longer than LEASE_SECS). The access token is still good to hand out.
        worker::console_warn!("refresh: lease lost before write; grant not updated");
    }
    let (token, remaining) = grant
        .cached_access_token(now)
        .or_else(|| {
            grant
                .token
                .get("access_token")
                .and_then(|v| v.as_str())
                .map(|t| (AccessToken::new(t.to_string()), grant.expires_at - now))
        })
        .ok_or(BrokerError::ProviderFailed)?;
    Ok((token, remaining.max(0), row.provider))
}

/// Export/import are operator tools: they need the `ADMIN_API_KEY` secret in
/// `X-APIKey` (constant-time compare) and refuse everything when it is unset.
fn require_api_key(ctx: &Ctx<'_>, req: &Request) -> Result<(), BrokerError> {
    let configured = binding(ctx.env, "ADMIN_API_KEY").ok_or(BrokerError::Forbidden {
        code: "api_disabled",
        what: "export/import is disabled on this broker (no ADMIN_API_KEY)",
    })?;
    let sent = req
        .headers()
        .get("X-APIKey")
        .ok()
        .flatten()
        .unwrap_or_default();
    if ct_eq(sent.as_bytes(), configured.as_bytes()) {
        Ok(())
    } else {
        Err(BrokerError::Forbidden {
            code: "invalid_api_key",
            what: "missing or wrong X-APIKey",
        })
    }
}

fn v1_authid_header(req: &Request) -> Result<AuthId, BrokerError> {
    let raw = req
        .headers()
        .get("X-AuthID")
        .ok()
        .flatten()
        .filter(|a| !a.is_empty())
        .ok_or(BrokerError::MissingAuthId)?;
    match parse_authid(&raw).map_err(|_| BrokerError::MalformedAuthId)? {
        ParsedAuthId::V1(a) => Ok(a),
        ParsedAuthId::V2 { .. } => Err(BrokerError::BadRequest {
            code: "v2_not_stored",
            what: "pass-through (v2) authids are not stored",
        }),
    }
}

/// `GET /export`: the grant's provider token JSON plus `service`.
async fn export(ctx: &Ctx<'_>, req: &Request) -> Out {
    require_api_key(ctx, req)?;
    let authid = v1_authid_header(req)?;
    let keys = ctx.keys()?;
    let db = store::Db::open(ctx.env)?;
    let Opened { row, grant } = open_grant(&db, &keys, &authid).await?;
    json_ok(grant.export(&row.provider))
}

/// `POST /import`: seals a provider token JSON (with `refresh_token` and
/// `service`) under the authid in `X-AuthID`.
async fn import(ctx: &Ctx<'_>, req: &Request, body: &[u8]) -> Out {
    require_api_key(ctx, req)?;
    let authid = v1_authid_header(req)?;
    let (service, grant) = Grant::import(body).map_err(|_| BrokerError::BadRequest {
        code: "bad_import",
        what: "the body must be a JSON object with refresh_token and service",
    })?;
    let catalogue = ctx.catalogue()?;
    let provider = catalogue
        .get(&service)
        .ok_or(BrokerError::UnknownProvider)?
        .id
        .clone();
    let keys = ctx.keys()?;
    let db = store::Db::open(ctx.env)?;
    if db.find_grant(&keys.lookup_hashes(&authid)).await?.is_some() {
        return Err(BrokerError::Conflict {
            code: "authid_exists",
            what: "a grant is already stored under this authid",
        }
        .into());
    }
    let (key_hash, sealed) = keys
        .seal(&authid, &provider, &grant.to_bytes())
        .map_err(|_| BrokerError::Internal)?;
    db.insert_grant(&key_hash, &provider, &sealed, now())
        .await?;
    json_ok(serde_json::json!({ "imported": true, "type": provider }))
}

/// `POST /revoked`: prove possession, delete the grant, revoke upstream.
async fn revoke(ctx: &Ctx<'_>, form: &Params) -> Out {
    let page = respond::Page;
    let raw = single(form, "authid")
        .map_err(page)?
        .filter(|a| !a.is_empty())
        .ok_or(page(BrokerError::MissingAuthId))?;
    let authid = match parse_authid(raw.trim()).map_err(|_| page(BrokerError::MalformedAuthId))? {
        ParsedAuthId::V1(a) => a,
        ParsedAuthId::V2 { .. } => {
            return Err(page(BrokerError::BadRequest {
                code: "v2_not_stored",
                what: "pass-through (v2) authids are not stored; revoke at the provider",
            }))
        }
    };
    let keys = ctx.keys().map_err(page)?;
    let db = store::Db::open(ctx.env).map_err(page)?;
    let Opened { row, grant } = open_grant(&db, &keys, &authid).await.map_err(page)?;
    db.delete_grant(&row.key_hash).await.map_err(page)?;
    let outcome = match (ctx.provider(&row.provider), grant.refresh_token()) {
        (Ok((provider, secret)), Some(rt)) => match upstream::revoke(&provider, &secret, &rt) {
            Some(post) => match upstream_fetch::post_status(&post, ctx.upstream_timeout_ms()).await
            {
                Ok(s) if (200..300).contains(&s) => pages::RevokeOutcome::ProviderRevoked,
                _ => pages::RevokeOutcome::ProviderFailed,
            },
            None => pages::RevokeOutcome::NoProviderEndpoint,
        },
        _ => pages::RevokeOutcome::ProviderFailed,
    };
    Ok(html(pages::revoked(outcome)))
}
