//! Server-rendered HTML pages. No external assets; every interpolated value is
//! escaped with [`escape`]; the only script and style are constants allowed by
//! their SHA-256 hash in the Content-Security-Policy, so no value ever lands in
//! script text.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::BrokerError;
use crate::next_step::{self, Step};

/// HTML-escapes text for element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The pages' one style sheet. Authids and tokens are shown and typed in
/// `textarea.authid` (or `.paste` for a whole command line): a textarea wraps
/// (`overflow-wrap:anywhere`), so a long value is never cut off at the edge as
/// in a one-line `<input>`, and `field-sizing:content` grows it to its content
/// (the `rows` attribute is the fallback). `line-height:1.5` everywhere a
/// monospace value is shown: at `line-height:normal` the box ends at the font's
/// descent and an underscore, drawn at the very bottom, is clipped away, so
/// `a_b` read as `a b` and was retyped wrong.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.5}\
h1{font-size:1.5rem}ul.providers{list-style:none;padding:0}ul.providers li{margin:.5rem 0}\
a.button,button{display:inline-block;padding:.6rem 1rem;border:1px solid #346;border-radius:.3rem;background:#eef3fa;color:#123;text-decoration:none;font-size:1rem;cursor:pointer}\
label{display:block;font-weight:600;margin:.25rem 0}\
code,.authid,.paste{font-family:ui-monospace,monospace;overflow-wrap:anywhere}\
.authid,.paste{display:block;width:100%;padding:.5rem;font-size:.9rem;line-height:1.5;box-sizing:border-box}\
textarea.authid,textarea.paste{resize:vertical;field-sizing:content;white-space:pre-wrap}\
.error{border-left:4px solid #b00;padding-left:1rem}.muted{color:#666;font-size:.9rem}";

/// Hands the authid to Duplicati's UI through `window.opener` (its copy
/// button is one of [`COPY_SCRIPT`]'s). The authid and the exact target origins
/// (`crate::opener::OpenerOrigins::targets`) come from data attributes, never
/// from script text. Any authid is posted, pCloud's access token (no `:`) too;
/// the page exists only for a real one (errors are other pages, without this
/// script).
const RESULT_SCRIPT: &str = "(function(){var e=document.getElementById('authid');if(!e)return;\
var v=e.getAttribute('data-authid')||'';if(!v||!window.opener)return;\
(e.getAttribute('data-origins')||'').split(' ').forEach(function(o){if(o){try{window.opener.postMessage('authid:'+v,o);}catch(x){}}});})();";

/// Copy buttons (the result page's, Akeeba's helper page's, `crate::akeeba`):
/// each `button[data-copy]` copies exactly the value of the field its
/// attribute names. Values come from the fields, never script text.
const COPY_SCRIPT: &str = "(function(){document.querySelectorAll('button[data-copy]').forEach(function(b){\
b.addEventListener('click',function(){var e=document.getElementById(b.getAttribute('data-copy'));if(!e)return;\
e.select();var done=function(){b.textContent='Copied';};var old=function(){try{document.execCommand('copy');}catch(x){}done();};\
if(navigator.clipboard){navigator.clipboard.writeText(e.value).then(done,old);}else{old();}});});})();";

fn csp_hash(s: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes()))
    )
}

/// The Content-Security-Policy for every page: nothing external, no inline
/// code except the two constants above (by hash), no framing, forms post here.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; style-src {}; script-src {} {}; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        csp_hash(STYLE),
        csp_hash(RESULT_SCRIPT),
        csp_hash(COPY_SCRIPT)
    )
}

/// A rendered page and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub html: String,
}

pub(crate) fn layout(status: u16, title: &str, body: &str, script: bool) -> Page {
    let script = if script {
        format!("<script>{RESULT_SCRIPT}</script><script>{COPY_SCRIPT}</script>")
    } else {
        String::new()
    };
    Page {
        status,
        html: format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <meta name=\"referrer\" content=\"no-referrer\">\
             <title>{title}</title><style>{STYLE}</style></head><body>{body}{script}</body></html>",
            title = escape(title),
        ),
    }
}

/// A 200 page with the copy buttons of [`COPY_SCRIPT`], for a door's own
/// result page written outside this file (`body` is HTML: escape every value).
pub fn copy_page(title: &str, body: &str) -> Page {
    layout(
        200,
        title,
        &format!("{body}<script>{COPY_SCRIPT}</script>"),
        false,
    )
}

/// A provider button on the index page.
pub struct ProviderLink<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// Logged in by pasting a CLI token (`/cli-token`), not through `/login`.
    pub cli_token: bool,
}

/// Options the index passes on to `/login`.
#[derive(Default, Debug, Clone)]
pub struct IndexOptions {
    /// `?type=`: show only this provider.
    pub only: Option<String>,
    /// `?token=`: fetch token for UI polling, passed on to `/login`.
    pub fetch_token: Option<String>,
    /// `?tokenversion=2`: start stateless (v2) logins.
    pub token_version_2: bool,
    /// `?key=`: the operator's access key, passed on to `/login`.
    pub access_key: Option<String>,
    /// The `/k/<key>` path prefix the request came with (`crate::access::KeyPrefix`),
    /// or empty: the buttons start with it.
    pub base: String,
}

/// The login URL a provider button points to (relative to the host root).
pub fn login_href(id: &str, opts: &IndexOptions) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("id", id);
    if let Some(t) = &opts.fetch_token {
        q.append_pair("token", t);
    }
    if opts.token_version_2 {
        q.append_pair("tokenversion", "2");
    }
    if let Some(k) = &opts.access_key {
        q.append_pair("key", k);
    }
    format!("{}/login?{}", opts.base, q.finish())
}

/// Where a provider button points: `/login`, or for a CLI-token provider
/// `/cli-token?id=<id>` as oauth-handler main.py (6d9aa7d) L165-166 links it
/// (no hand-off token, no token version: the result is always a stored v1
/// authid), keeping only the access key.
pub fn provider_href(p: &ProviderLink<'_>, opts: &IndexOptions) -> String {
    if !p.cli_token {
        return login_href(p.id, opts);
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("id", p.id);
    if let Some(k) = &opts.access_key {
        q.append_pair("key", k);
    }
    format!("{}/cli-token?{}", opts.base, q.finish())
}

/// `GET /`: one button per configured provider.
pub fn index(providers: &[ProviderLink<'_>], opts: &IndexOptions) -> Page {
    let shown: Vec<&ProviderLink<'_>> = providers
        .iter()
        .filter(|p| {
            opts.only
                .as_deref()
                .is_none_or(|only| crate::providers::canonical_id(only) == p.id)
        })
        .collect();
    let mut body = String::from("<h1>Authorize a backup client</h1>");
    if shown.is_empty() {
        body.push_str(if opts.only.is_some() {
            "<p class=\"error\">That provider is not configured on this broker.</p>"
        } else {
            "<p class=\"error\">No providers are configured on this broker yet.</p>"
        });
    } else {
        body.push_str(
            "<p>Pick your storage provider and log in there. You will get an <em>authid</em> \
             to paste into your backup software: in Duplicati, into the destination's \
             <em>AuthID</em> field (its <em>AuthID</em> link opens this page and fills the field \
             in by itself), or on its command line as <code>--authid</code>.</p>\
             <ul class=\"providers\">",
        );
        for p in shown {
            body.push_str(&format!(
                "<li><a class=\"button\" id=\"login-{id}\" href=\"{href}\">{name}</a></li>",
                id = escape(p.id),
                href = escape(&provider_href(p, opts)),
                name = escape(p.name),
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str(&format!(
        "<p class=\"muted\" id=\"device-hint\">A machine without a browser showed you a code? \
         Enter it on the <a href=\"{}/device\">device login</a> page.</p>",
        escape(&opts.base)
    ));
    body.push_str(
        "<p class=\"muted\">Akeeba Backup: use <code>/akeeba/&lt;engine&gt;</code> as the \
         Helper URL and <code>/akeeba/&lt;engine&gt;/refresh</code> as the Refresh URL.</p>\
         <p class=\"muted\">Lost trust in an authid? <a href=\"/revoke\">Revoke it</a>.</p>",
    );
    layout(200, "OAuth broker", &body, false)
}

/// Where a Jottacloud user makes the CLI token ("personal login token"):
/// rclone/rclone `docs/content/jottacloud.md`, "Standard authentication"
/// (Settings, Security, "Personal login token", Generate), the link rclone's
/// own configuration prints (`backend/jottacloud/jottacloud.go`, "Generate
/// here"). The only CLI-token provider built in (`crate::providers`).
pub const JOTTACLOUD_CLI_TOKEN_PAGE: &str = "https://www.jottacloud.com/web/secure";

/// `GET /cli-token?id=<id>`: the form where the user pastes the provider's CLI
/// token. Field names as oauth-handler's templates/cli-token.html L26-28 (`id`,
/// `token`), plus the double-submit `csrf` value (`crate::cli_token`).
/// `base` is the request's `/k/<key>` prefix (or empty), kept in the form's action.
pub fn cli_token_form(
    id: &str,
    provider_name: &str,
    csrf: &str,
    access_key: Option<&str>,
    base: &str,
) -> Page {
    let action = match access_key {
        Some(k) => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("key", k);
            format!("{base}/cli-token-login?{}", q.finish())
        }
        None => format!("{base}/cli-token-login"),
    };
    let body = format!(
        "<h1>Log in to {name}</h1>\
         <p>Paste your {name} <strong>CLI token</strong>. {source}The broker uses it \
         once and keeps only the resulting authorization.</p>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"id\" value=\"{id}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label for=\"token\">CLI token</label><textarea class=\"authid\" id=\"token\" \
         name=\"token\" rows=\"4\" autocomplete=\"off\" spellcheck=\"false\" required></textarea></p>\
         <p><button id=\"cli-login\" type=\"submit\">Log in</button></p></form>",
        name = escape(provider_name),
        action = escape(&action),
        id = escape(id),
        csrf = escape(csrf),
        source = match id {
            "jottacloud" => format!(
                "Jottacloud calls it a <em>personal login token</em>: make one at \
                 <a id=\"cli-token-source\" href=\"{u}\" rel=\"noopener noreferrer\" \
                 target=\"_blank\">{u}</a> (<em>Settings</em>, <em>Security</em>, \
                 <em>Personal login token</em>, <em>Generate</em>). ",
                u = JOTTACLOUD_CLI_TOKEN_PAGE
            ),
            _ => format!("Create one in your {} account settings. ", escape(provider_name)),
        },
    );
    layout(200, "Log in with a CLI token", &body, false)
}

/// What the result page says about Duplicati's old-UI hand-off (`crate::handoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffPrompt<'a> {
    /// The login carried no fetch token: nothing to say.
    None,
    /// The authid waits, sealed, for the user's go-ahead: the form that posts
    /// this single-use confirmation token (the raw value; a hidden field, never a URL).
    Confirm(&'a str),
    /// The login carried a token but its hand-off could not be left (it was
    /// started in another browser, already sent, or expired).
    NotSent,
}

/// The hand-off's section of the result page. The question names what is at
/// stake: whoever wrote the link that opened this page receives the authid.
fn handoff_section(prompt: HandoffPrompt<'_>) -> String {
    match prompt {
        HandoffPrompt::None => String::new(),
        HandoffPrompt::Confirm(token) => format!(
            "<section id=\"handoff\"><h2>Send it to Duplicati?</h2>\
             <p>Send this authorization to the Duplicati window that opened this page?</p>\
             <p class=\"muted\">Only if you opened this page from your own Duplicati just now. \
             If a link from someone else brought you here, do not send it: they would get \
             access to your storage.</p>\
             <form method=\"post\" action=\"/handoff\"><input type=\"hidden\" name=\"confirm\" \
             value=\"{t}\"><button id=\"confirm-handoff\" type=\"submit\">Send to Duplicati</button>\
             </form></section>",
            t = escape(token),
        ),
        HandoffPrompt::NotSent => "<p class=\"muted\" id=\"handoff-not-sent\">This authorization was \
             not sent to Duplicati (the request was started in another browser, already \
             answered, or expired): paste it into Duplicati yourself.</p>"
            .to_string(),
    }
}

/// The provider region a login was completed in (pCloud: US or EU), shown
/// beside the authid so the user picks the same server in the backup client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region<'a> {
    pub name: &'a str,
    pub host: &'a str,
}

/// The rclone backend of a provider whose authid is a refresh token at the
/// broker's OAuth 2.0 token endpoint, with the settings the backend needs
/// besides `client_id`, `token_url` and `token`: the providers for which the
/// result page offers an `rclone config create` line. Not here: pCloud (its
/// "authid" is the access token itself, never refreshed), Jottacloud (rclone's
/// backend keeps its own `tokenURL` setting and logs in with the CLI token
/// itself), OneDrive and SharePoint (rclone's `onedrive` also needs `drive_id`
/// and `drive_type`, which its config asks the Graph API for).
/// - rclone/rclone `docs/content/drive.md`, "scope": `drive.file` is "Access to
///   files created by rclone only", the scope the broker's Google login grants
///   (`crate::providers`).
/// - `client_id`, `token_url` and `token` are every OAuth backend's settings
///   (rclone/rclone `lib/oauthutil/oauthutil.go`, `SharedOptions`; README "Use
///   with rclone"); `rclone config create … --non-interactive` writes them as
///   given (checked with Debian's rclone 1.60.1 for these three backends).
const RCLONE_BACKENDS: &[(&str, &str, &str)] = &[
    ("googledrive", "drive", " scope=drive.file"),
    ("dropbox", "dropbox", ""),
    ("box.com", "box", ""),
];

/// The line that makes an rclone remote `<backend>` refreshing `authid` at the
/// broker's token endpoint (an expiry in the past: rclone refreshes at once),
/// or `None` where rclone cannot use it ([`RCLONE_BACKENDS`]). `oauth_url` is
/// Duplicati's `--oauth-url` (`<origin>[/k/<key>]/refresh`): the token
/// endpoint is `/oauth/token` beside it, behind the same gate prefix.
pub fn rclone_line(provider_id: &str, authid: &str, oauth_url: &str) -> Option<String> {
    let (_, backend, extra) = RCLONE_BACKENDS.iter().find(|(id, ..)| *id == provider_id)?;
    let base = oauth_url.strip_suffix("/refresh")?;
    Some(format!(
        "rclone config create {backend} {backend} client_id={provider_id}{extra} \
         token_url={base}/oauth/token \
         token='{{\"access_token\":\"x\",\"token_type\":\"Bearer\",\"refresh_token\":\"{authid}\",\
         \"expiry\":\"2000-01-01T00:00:00Z\"}}' --non-interactive"
    ))
}

/// Duplicati's command-line options for `authid` at this broker.
pub fn duplicati_line(authid: &str, oauth_url: &str) -> String {
    format!("--authid={authid} --oauth-url={oauth_url}")
}

/// A read-only value with its label and its own copy button
/// ([`COPY_SCRIPT`]): `id` names the field, `copy-<id>` the button.
fn paste_field(id: &str, label: &str, value: &str) -> String {
    format!(
        "<label for=\"{id}\">{label}</label>\
         <textarea class=\"paste\" id=\"{id}\" readonly rows=\"4\" spellcheck=\"false\">{v}</textarea>\
         <p><button type=\"button\" id=\"copy-{id}\" data-copy=\"{id}\">Copy</button></p>",
        v = escape(value),
    )
}

/// The result page: shows the authid once, with copy button and instructions,
/// ready-to-paste lines for Duplicati's command line and (where it can use the
/// provider, [`rclone_line`]) rclone, each with its own copy button; posts it
/// to `post_to` (exact opener origins, already checked against the allowlist),
/// and asks before handing it to Duplicati's old UI. `oauth_url` is the
/// `--oauth-url` Duplicati's command line needs for this broker.
pub fn result(
    authid: &str,
    provider: (&str, &str),
    region: Option<Region<'_>>,
    post_to: &[String],
    handoff: HandoffPrompt<'_>,
    oauth_url: &str,
) -> Page {
    let (provider_id, provider_name) = provider;
    // A gated broker's URLs carry a placeholder for the key, which no page shows.
    let fill_in = match oauth_url.contains('<') {
        true => {
            "<p class=\"muted\">Replace <code>&lt;your access key&gt;</code> with this \
                 broker's access key.</p>"
        }
        false => "",
    };
    let rclone = rclone_line(provider_id, authid, oauth_url)
        .map(|line| {
            format!(
                "<li id=\"use-rclone\">{}{fill_in}</li>",
                paste_field("paste-rclone", "rclone: create a remote", &line)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Authorized with {name}</h1>\
         <p>This is your <strong>authid</strong>. It is shown only once: copy it now and keep it \
         secret, it is the key to your backups' storage.</p>\
         <label for=\"authid\">Your authid</label>\
         <textarea class=\"authid\" id=\"authid\" readonly rows=\"3\" spellcheck=\"false\" \
         data-authid=\"{a}\" data-origins=\"{o}\">{a}</textarea>\
         <p><button id=\"copy\" type=\"button\" data-copy=\"authid\">Copy authid</button></p>\
         {region}{handoff}\
         <h2>Use it</h2><ul id=\"use\">\
         <li><strong>Duplicati's web UI</strong>: if this page was opened by the <em>AuthID</em> \
         link of a destination, the authid reaches that <em>AuthID</em> field by itself{after}. \
         Otherwise paste it into the field.</li>\
         <li id=\"use-duplicati\">{duplicati}{fill_in}</li>{rclone}\
         <li><strong>Any OAuth 2.0 client</strong>: it is the refresh token at this \
         broker's token endpoint (<code>/oauth/token</code>); a machine without a browser can \
         get one with a <a href=\"/device\">device login</a>.</li>\
         <li><strong>Other software</strong>: paste it where it asks for an authid.</li></ul>\
         <p class=\"muted\">If a backup ever says <em>re-authorize</em>, the <a href=\"/status\">status \
         page</a> shows why and lets you log in again into this same authid. You can revoke it at \
         any time on the <a href=\"/revoke\">revoke page</a>.</p>",
        name = escape(provider_name),
        a = escape(authid),
        o = escape(&post_to.join(" ")),
        after = match handoff {
            HandoffPrompt::Confirm(_) => " once you click <em>Send to Duplicati</em> above",
            _ => "",
        },
        duplicati = paste_field(
            "paste-duplicati",
            "Duplicati's command line: add these options",
            &duplicati_line(authid, oauth_url)
        ),
        handoff = handoff_section(handoff),
        region = region
            .map(|r| format!(
                "<p id=\"region\">Region: <strong>{n}</strong> (<code>{h}</code>). \
                 Choose the same server in your backup software.</p>",
                n = escape(r.name),
                h = escape(r.host),
            ))
            .unwrap_or_default(),
    );
    layout(200, "Your authid", &body, true)
}

/// `POST /handoff`: the hand-off was confirmed.
pub fn handoff_sent() -> Page {
    let body =
        "<h1>Sent to Duplicati</h1><p id=\"handoff-sent\">Duplicati picks the authorization \
        up within a few seconds, and may close this window itself. Otherwise close it and go \
        back to Duplicati.</p>";
    layout(200, "Sent to Duplicati", body, false)
}

/// An error page for browser routes: same status and reason as the JSON
/// error, under what happened in plain words, with the stable code and the one
/// next step (`crate::next_step`): *Try again* (`restart`, the link that
/// starts the same login again, `crate::next_step::restart_href`; the start
/// page without one), or tell the operator.
pub fn error(err: &BrokerError, restart: Option<&str>) -> Page {
    let row = next_step::for_code(err.code());
    let step = match (row.step, restart) {
        (Step::TellOperator, _) => "<p id=\"next-step\"><strong>Tell the operator of this \
             broker</strong> (whoever gave you its address), with the error code above. Trying \
             again will not help.</p>"
            .to_string(),
        (Step::TryAgain, Some(href)) => format!(
            "<p id=\"next-step\"><a class=\"button\" id=\"try-again\" href=\"{}\">Try again</a></p>",
            escape(href)
        ),
        (Step::Reauthorize, _) => format!(
            "<p id=\"next-step\"><a class=\"button\" id=\"reauthorize-again\" \
             href=\"{}\">Re-authorize again</a></p>",
            crate::error::REAUTHORIZE_PATH
        ),
        (Step::TryAgain, None) | (Step::StartPage, _) => "<p id=\"next-step\"><a class=\"button\" \
             id=\"start-page\" href=\"/\">Start again from the start page</a></p>"
            .to_string(),
    };
    let body = format!(
        "<h1 id=\"error-what\">{what}</h1><p class=\"error\" id=\"error-reason\">{reason}</p>\
         <p>Error code: <code id=\"error-code\">{code}</code></p>{step}",
        what = escape(row.what),
        reason = escape(&err.reason()),
        code = escape(err.code()),
    );
    layout(err.status(), "Error", &body, false)
}

/// The access gate's answer on a browser route reached without a (valid) key:
/// the error's status and reason, and a form that asks for the key and sends
/// the same request again with it (`GET action?<keep>&key_entered=1&key=<key>`),
/// which the gate answers with [`key_accepted`]. `action` is the route's path
/// without a `/k/<key>` prefix (a wrong key there would win over the one typed
/// in); `keep` is the request's query without `key` and `key_entered`.
/// `refused`: the request did present a key, which is not one of the keys; the
/// page says so, and never shows it.
pub fn key_form(action: &str, keep: &[(String, String)], err: &BrokerError, refused: bool) -> Page {
    let hidden: String = keep
        .iter()
        .map(|(name, value)| hidden_input(name, value))
        .collect();
    let reason = match refused {
        true => "That access key is not right. Check it and enter it again.".to_string(),
        false => err.reason(),
    };
    let body = format!(
        "<h1>Access key needed</h1><p class=\"error\" id=\"key-error\">{reason}</p>\
         <p>This broker is private. Enter the access key its operator gave you.</p>\
         <form method=\"get\" action=\"{action}\">{hidden}{entered}\
         <p><label for=\"key\">Access key</label><input class=\"authid\" id=\"key\" name=\"key\" \
         type=\"password\" autocomplete=\"off\" required></p>\
         <p><button id=\"send-key\" type=\"submit\">Continue</button></p></form>",
        reason = escape(&reason),
        action = escape(action),
        entered = hidden_input(crate::access::KEY_ENTERED, "1"),
    );
    layout(err.status(), "Access key needed", &body, false)
}

fn hidden_input(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

/// The gate's answer to [`key_form`]'s request with a right key: a 200 page
/// whose *Continue* is a link to the same request, `action?<keep>&key=<key>`.
/// A link, because the route usually redirects to the provider, which CSP
/// `form-action 'self'` forbids after the form's own request; the key goes as
/// `key=` (not as a `/k/<key>` prefix), as the form sent it: any key fits in
/// a query, and the request's issuer (RFC 9207 `iss`) stays the one the
/// client was given. The link carries the key, as every gated URL does; the
/// page is `no-store` like every answer.
pub fn key_accepted(action: &str, keep: &[(String, String)], key: &str) -> Page {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in keep {
        q.append_pair(name, value);
    }
    q.append_pair("key", key);
    let body = format!(
        "<h1>Access key accepted</h1><p id=\"key-accepted\">The key is right.</p>\
         <p><a class=\"button\" id=\"continue\" href=\"{href}\">Continue</a></p>",
        href = escape(&format!("{action}?{}", q.finish())),
    );
    layout(200, "Access key accepted", &body, false)
}

/// `GET /admin`: the doctor's page for a browser asks for the admin key,
/// which goes in the form's body (`POST /admin`), never in a URL. `refused`:
/// the key sent was not the admin key (the page says only that).
pub fn doctor_form(refused: bool) -> Page {
    let (status, error) = match refused {
        true => (
            401,
            "<p class=\"error\" id=\"key-error\">That is not this broker's admin key.</p>",
        ),
        false => (200, ""),
    };
    let body = format!(
        "<h1>Broker status</h1>{error}<p>For the operator: what is misconfigured and how \
         to fix it. Enter the broker's <code>ADMIN_API_KEY</code>.</p>\
         <form method=\"post\" action=\"/admin\"><p><label for=\"key\">Admin key</label> \
         <input class=\"authid\" id=\"key\" name=\"key\" type=\"password\" \
         autocomplete=\"off\" required></p>\
         <p><button id=\"show-status\" type=\"submit\">Show status</button></p></form>"
    );
    layout(status, "Broker status", &body, false)
}

/// `POST /admin` with the admin key: the doctor's report
/// (`crate::doctor::diagnose`) for a person, every value escaped.
pub fn doctor_report(v: &serde_json::Value) -> Page {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => escape(s),
        serde_json::Value::Null => "—".to_string(),
        other => escape(&other.to_string()),
    };
    let list = |key: &str| v[key].as_array().cloned().unwrap_or_default();
    let mut body = String::from("<h1>Broker status</h1>");
    let problems = list("problems");
    match problems.is_empty() {
        true => body.push_str("<p id=\"status-ok\">No problem found.</p>"),
        false => {
            body.push_str(&format!(
                "<h2 id=\"problems\">{} problem(s)</h2><ul>",
                problems.len()
            ));
            for p in &problems {
                body.push_str(&format!(
                    "<li class=\"error\">{}<br><span class=\"muted\">Fix: {}</span></li>",
                    text(&p["what"]),
                    text(&p["fix"])
                ));
            }
            body.push_str("</ul>");
        }
    }
    for w in list("warnings") {
        body.push_str(&format!(
            "<p class=\"muted\">Warning: {} ({})</p>",
            text(&w["what"]),
            text(&w["fix"])
        ));
    }
    body.push_str("<h2>Providers</h2><ul>");
    for p in list("providers") {
        let why = p["why_not"]
            .as_array()
            .map(|w| w.iter().map(text).collect::<Vec<_>>().join("; "))
            .unwrap_or_default();
        body.push_str(&format!(
            "<li><b>{}</b>: {}. Redirect URI: <code>{}</code></li>",
            text(&p["id"]),
            match p["offered"].as_bool() {
                Some(true) => "offered".to_string(),
                _ => format!("not offered ({why})"),
            },
            text(&p["redirect_uri"])
        ));
    }
    body.push_str("</ul><h2>Shards</h2><ul>");
    for s in list("shards") {
        body.push_str(&format!(
            "<li>{} {}: {} ({})</li>",
            text(&s["shard"]),
            text(&s["binding"]),
            match (s["reachable"].as_bool(), s["up_to_date"].as_bool()) {
                (Some(false), _) => "unreachable",
                (_, Some(true)) => "up to date",
                _ => "behind the code",
            },
            text(&s["migration"])
        ));
    }
    body.push_str("</ul><h2>Grants</h2><ul>");
    for g in list("grants") {
        body.push_str(&format!(
            "<li>shard {} {}: {} active, {} need re-authorization, {} idle soon</li>",
            text(&g["shard"]),
            text(&g["provider"]),
            text(&g["active"]),
            text(&g["reauthorization_required"]),
            text(&g["idle_soon"])
        ));
    }
    body.push_str("</ul><h2>Last refresh in 24 hours</h2><ul>");
    for r in list("last_refresh_24h") {
        let outcomes = r
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| *k != "provider")
                    .map(|(k, n)| format!("{} {}", text(n), escape(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        body.push_str(&format!("<li>{}: {outcomes}</li>", text(&r["provider"])));
    }
    body.push_str("</ul>");
    layout(200, "Broker status", &body, false)
}

/// `GET /privacy`: what this broker keeps and who runs it (`PRIVACY_CONTACT`),
/// for a provider's consent screen (Google asks for a privacy-policy URL).
pub fn privacy(contact: &str) -> Page {
    let body = format!(
        "<h1>Privacy</h1>\
         <p>This service lets backup software use your cloud storage while you are away. \
         It is run by <span id=\"contact\">{contact}</span>.</p>\
         <h2>What is kept</h2><ul>\
         <li>For each authorization: the provider's refresh token (and the latest access \
         token, and whatever else the provider sent with them, such as an account id), \
         encrypted with a key derived from the authid you were shown. The authid itself \
         is not kept, so nobody here can read them without it.</li>\
         <li>While you log in: a few short-lived records (at most 15 minutes).</li>\
         <li>The service's own logs: which kind of request failed and why, never an \
         authid, a token or your address.</li></ul>\
         <h2>What it is used for</h2><p>Only to obtain access tokens for the backups \
         you configured, at the provider you chose. Nothing is shared with anyone else. \
         The service runs on Cloudflare Workers.</p>\
         <h2>Ending it</h2><p><a href=\"/revoke\">Revoke an authorization</a>: the \
         encrypted tokens are deleted and the provider is asked to revoke them. You can \
         also remove the app's access in your provider account.</p>",
        contact = escape(contact),
    );
    layout(200, "Privacy", &body, false)
}

/// `GET /device`: the RFC 8628 verification page, asking for the code the
/// device shows. `action` is where the form posts (`<base>/device`, with the
/// access key if the request carried one); `prefill` is `?user_code=`.
pub fn device_form(action: &str, prefill: Option<&str>) -> Page {
    let body = format!(
        "<h1>Device login</h1><p>Enter the code your device shows. You will see which          provider it asks for before anything happens.</p>         <form method=\"post\" action=\"{action}\"><p><label for=\"user_code\">Code</label>\
         <input class=\"authid\" id=\"user_code\" name=\"user_code\" value=\"{value}\" \
         autocomplete=\"off\" autocapitalize=\"characters\" placeholder=\"XXXX-XXXX\" required></p>\
         <p><button type=\"submit\">Next</button></p></form>",
        action = escape(action),
        value = escape(prefill.unwrap_or("")),
    );
    layout(200, "Device login", &body, false)
}

/// `POST /device` with a valid code: which provider the device asks for, and
/// the user's click (or refusal). The choices are links, not a form: the
/// approval ends in a redirect to the provider, which CSP `form-action 'self'`
/// would block after a form submission. Each link carries a one-time value
/// matched against this browser's cookie.
pub fn device_confirm(
    provider: &str,
    user_code: &str,
    requested_at: i64,
    requested_from: Option<&str>,
    approve: &str,
    deny: &str,
) -> Page {
    let from = match requested_from {
        Some(c) => format!(" from a network in <strong>{}</strong>", escape(c)),
        None => String::new(),
    };
    let body = format!(
        "<h1>Device login</h1><p id=\"device-ask\">A device showing the code \
         <code>{code}</code> asks to use your <strong>{provider}</strong> account through \
         this broker.</p><p id=\"device-origin\">The code was requested at \
         <strong>{at}</strong>{from}.</p><p id=\"device-warning\" class=\"warning\"><strong>If \
         someone sent you this code, or asked you to enter it, they are trying to get into your \
         storage: deny.</strong> Continue only if you started this yourself, on your own \
         device, just now.</p>\
         <p><a class=\"button\" id=\"approve\" href=\"{approve}\">Continue to {provider}</a> \
         <a class=\"button\" id=\"deny\" href=\"{deny}\">Deny</a></p>",
        provider = escape(provider),
        code = escape(user_code),
        at = utc_minute(requested_at),
        approve = escape(approve),
        deny = escape(deny),
    );
    layout(200, "Device login", &body, false)
}

/// `YYYY-MM-DD HH:MM UTC` for unix seconds (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
pub(crate) fn utc_minute(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let minute_of_day = secs.rem_euclid(86_400) / 60;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// The end of a device login in the browser: approved ("return to your
/// device") or refused.
pub fn device_done(approved: bool) -> Page {
    let body = if approved {
        "<h1>Done</h1><p id=\"device-done\">The device is authorized. Return to your          device: it picks the authorization up within a few seconds. You can close this window.</p>"
    } else {
        "<h1>Denied</h1><p id=\"device-denied\">The device was not authorized. Return to          your device; it will report that access was denied.</p>"
    };
    layout(200, "Device login", body, false)
}

/// `GET /revoke`: the revoke form.
pub fn revoke_form() -> Page {
    let body = "<h1>Revoke an authid</h1>\
        <p>Revoking deletes the stored authorization and asks the provider to revoke it. \
        Backups using this authid stop working.</p>\
        <form method=\"post\" action=\"/revoked\"><p><label for=\"authid\">Authid</label>\
        <textarea class=\"authid\" id=\"authid\" name=\"authid\" rows=\"3\" autocomplete=\"off\" \
        spellcheck=\"false\" required></textarea></p>\
        <p><button type=\"submit\">Revoke</button></p></form>";
    layout(200, "Revoke an authid", body, false)
}

/// What happened on revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Grant deleted; provider revocation succeeded.
    ProviderRevoked,
    /// Grant deleted; the provider has no revocation endpoint.
    NoProviderEndpoint,
    /// Grant deleted; the provider's revocation endpoint failed.
    ProviderFailed,
}

/// `POST /revoked`: the outcome page.
pub fn revoked(outcome: RevokeOutcome) -> Page {
    let detail = match outcome {
        RevokeOutcome::ProviderRevoked => "The provider confirmed the revocation.",
        RevokeOutcome::NoProviderEndpoint => {
            "This provider has no revocation endpoint; remove the app's access in your \
             provider account settings if you want it gone there too."
        }
        RevokeOutcome::ProviderFailed => {
            "The provider did not confirm the revocation; remove the app's access in your \
             provider account settings to be sure."
        }
    };
    let body = format!(
        "<h1>Authid revoked</h1><p id=\"outcome\">The broker deleted this authorization; \
         the authid no longer works.</p><p>{detail}</p><p><a href=\"/\">Back to the start page</a></p>"
    );
    layout(200, "Authid revoked", &body, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_minute_names_the_calendar_minute() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_minute(1_796_643_359), "2026-12-07 11:35 UTC");
        assert_eq!(utc_minute(4_107_542_399), "2100-02-28 23:59 UTC");
    }

    #[test]
    fn the_device_page_says_when_and_from_where_and_warns_against_sent_codes() {
        let p = device_confirm("Demo", "BCDF-GHJK", 0, Some("DE"), "/a", "/d");
        assert!(p.html.contains("1970-01-01 00:00 UTC"), "{}", p.html);
        assert!(p.html.contains("<strong>DE</strong>"));
        assert!(p.html.contains("If someone sent you this code"));
        let none = device_confirm("Demo", "BCDF-GHJK", 0, None, "/a", "/d");
        assert!(!none.html.contains("from a network"));
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn index_lists_providers_escaped() {
        let p = [
            ProviderLink {
                id: "demo",
                name: "Demo <b>",
                cli_token: false,
            },
            ProviderLink {
                id: "box.com",
                name: "Box",
                cli_token: false,
            },
        ];
        let page = index(&p, &IndexOptions::default());
        assert_eq!(page.status, 200);
        assert!(page.html.contains("Demo &lt;b&gt;"));
        assert!(!page.html.contains("Demo <b>"));
        assert!(page.html.contains("href=\"/login?id=box.com\""));
    }

    #[test]
    fn index_type_filter_accepts_aliases_and_passes_options_on() {
        let p = [
            ProviderLink {
                id: "demo",
                name: "Demo",
                cli_token: false,
            },
            ProviderLink {
                id: "box.com",
                name: "Box",
                cli_token: false,
            },
        ];
        let opts = IndexOptions {
            only: Some("box".into()),
            fetch_token: Some("t\"<1".into()),
            token_version_2: true,
            access_key: None,
            base: String::new(),
        };
        let page = index(&p, &opts);
        assert!(!page.html.contains("login-demo"));
        assert!(page
            .html
            .contains("href=\"/login?id=box.com&amp;token=t%22%3C1&amp;tokenversion=2\""));
        let none = index(
            &p,
            &IndexOptions {
                only: Some("gcs".into()),
                ..Default::default()
            },
        );
        assert!(none.html.contains("not configured"));
    }

    #[test]
    fn a_cli_token_provider_links_to_the_cli_token_page() {
        let p = [
            ProviderLink {
                id: "jottacloud",
                name: "Jottacloud",
                cli_token: true,
            },
            ProviderLink {
                id: "box.com",
                name: "Box",
                cli_token: false,
            },
        ];
        let opts = IndexOptions {
            only: Some("jottacloud".into()),
            fetch_token: Some("tok".into()),
            token_version_2: true,
            access_key: Some("k&1".into()),
            base: String::new(),
        };
        let page = index(&p, &opts);
        assert!(page
            .html
            .contains("href=\"/cli-token?id=jottacloud&amp;key=k%261\""));
        assert!(!page.html.contains("/login?"));
        let form = cli_token_form("jotta\"", "Jotta<", "c\"<", Some("k&1"), "");
        assert!(form.html.contains("action=\"/cli-token-login?key=k%261\""));
        assert!(form.html.contains("name=\"id\" value=\"jotta&quot;\""));
        assert!(form.html.contains("name=\"csrf\" value=\"c&quot;&lt;\""));
        assert!(form.html.contains("name=\"token\""));
        assert!(form.html.contains("Jotta&lt;"));
        assert!(!form.html.contains("<script"));
        let plain = cli_token_form("jottacloud", "Jottacloud", "c", None, "/k/K");
        assert!(plain.html.contains("action=\"/k/K/cli-token-login\""));
        // A request that came with `/k/<key>/` keeps the prefix in its buttons.
        let keyed = IndexOptions {
            base: "/k/K".into(),
            ..Default::default()
        };
        let page = index(&p, &keyed);
        assert!(page.html.contains("href=\"/k/K/cli-token?id=jottacloud\""));
        assert!(page.html.contains("href=\"/k/K/login?id=box.com\""));
    }

    #[test]
    fn the_key_form_asks_for_the_key_and_resends_the_request() {
        let err = BrokerError::Forbidden {
            code: "access_key_required",
            what: "needs a key",
        };
        let keep = [("id".to_string(), "demo\"<".to_string())];
        let page = key_form("/login", &keep, &err, false);
        assert_eq!(page.status, 403);
        assert!(page
            .html
            .contains("<form method=\"get\" action=\"/login\">"));
        assert!(page
            .html
            .contains("<input type=\"hidden\" name=\"id\" value=\"demo&quot;&lt;\">"));
        assert!(page
            .html
            .contains("<input type=\"hidden\" name=\"key_entered\" value=\"1\">"));
        assert!(page.html.contains("name=\"key\""));
        assert!(page.html.contains("needs a key"));
        assert!(!page.html.contains("<script"));
        // A key was given and is not one of the keys: the page says so.
        let refused = key_form("/login", &keep, &err, true);
        assert_eq!(refused.status, 403);
        assert!(refused.html.contains("That access key is not right."));
        assert!(!refused.html.contains("needs a key"));
    }

    #[test]
    fn a_taken_key_continues_by_a_link_to_the_same_request_with_the_key_encoded() {
        let keep = [
            ("client_id".to_string(), "demo".to_string()),
            (
                "redirect_uri".to_string(),
                "http://127.0.0.1:5/cb?a=1&b=\"".to_string(),
            ),
        ];
        let page = key_accepted("/oauth/authorize", &keep, "odd/k+e%y&=?\"<");
        assert_eq!(page.status, 200);
        assert!(
            page.html.contains(
                "<a class=\"button\" id=\"continue\" href=\"/oauth/authorize?client_id=demo\
                 &amp;redirect_uri=http%3A%2F%2F127.0.0.1%3A5%2Fcb%3Fa%3D1%26b%3D%22\
                 &amp;key=odd%2Fk%2Be%25y%26%3D%3F%22%3C\">Continue</a>"
            ),
            "{}",
            page.html
        );
        // A link, not a form: CSP form-action does not apply to it.
        assert!(!page.html.contains("<form"));
        assert!(!page.html.contains("<script"));
        let plain = key_accepted("/akeeba/box", &[], "K");
        assert!(plain.html.contains("href=\"/akeeba/box?key=K\""));
    }

    const U: &str = "https://broker.example/refresh";

    #[test]
    fn the_result_page_says_what_to_paste_where_for_each_duplicati_surface() {
        let plain = result("k:s", ("demo", "Demo"), None, &[], HandoffPrompt::None, U);
        assert!(plain.html.contains("<strong>Duplicati's web UI</strong>"));
        assert!(plain
            .html
            .contains("reaches that <em>AuthID</em> field by itself."));
        assert!(plain.html.contains(
            "id=\"paste-duplicati\" readonly rows=\"4\" spellcheck=\"false\">--authid=k:s \
             --oauth-url=https://broker.example/refresh</textarea>"
        ));
        assert!(plain.html.contains("data-copy=\"paste-duplicati\""));
        assert!(plain.html.contains("<label for=\"paste-duplicati\">"));
        assert!(!plain.html.contains("your access key"));
        let ask = result(
            "k:s",
            ("demo", "Demo"),
            None,
            &[],
            HandoffPrompt::Confirm("c"),
            U,
        );
        assert!(ask
            .html
            .contains("by itself once you click <em>Send to Duplicati</em> above."));
        let gated = result(
            "k:s",
            ("demo", "Demo"),
            None,
            &[],
            HandoffPrompt::None,
            "https://b/k/<key>/refresh",
        );
        assert!(gated
            .html
            .contains("--oauth-url=https://b/k/&lt;key&gt;/refresh"));
        assert!(gated
            .html
            .contains("Replace <code>&lt;your access key&gt;</code>"));
    }

    #[test]
    fn the_rclone_line_is_offered_only_for_a_provider_rclone_can_refresh_here() {
        let line = rclone_line("googledrive", "a_b:c-d", U).expect("drive");
        assert_eq!(
            line,
            "rclone config create drive drive client_id=googledrive scope=drive.file \
             token_url=https://broker.example/oauth/token \
             token='{\"access_token\":\"x\",\"token_type\":\"Bearer\",\"refresh_token\":\"a_b:c-d\",\
             \"expiry\":\"2000-01-01T00:00:00Z\"}' --non-interactive"
        );
        assert!(rclone_line("box.com", "a:b", U)
            .unwrap()
            .contains(" box box client_id=box.com "));
        assert!(rclone_line("dropbox", "a:b", U).is_some());
        for not in ["pcloud", "jottacloud", "onedrivev2", "demo"] {
            assert_eq!(rclone_line(not, "a:b", U), None, "{not}");
        }
        let gated = rclone_line("dropbox", "a:b", "https://b/k/<your access key>/refresh").unwrap();
        assert!(gated.contains("token_url=https://b/k/<your access key>/oauth/token "));
        // The page: a labelled field with its own copy button, only where offered.
        let drive = result(
            "a:b",
            ("googledrive", "Google Drive"),
            None,
            &[],
            HandoffPrompt::None,
            U,
        );
        assert!(drive.html.contains("<label for=\"paste-rclone\">"));
        assert!(drive.html.contains("data-copy=\"paste-rclone\""));
        assert!(drive
            .html
            .contains("&quot;refresh_token&quot;:&quot;a:b&quot;"));
        let pcloud = result(
            "tok",
            ("pcloud", "pCloud"),
            None,
            &[],
            HandoffPrompt::None,
            U,
        );
        assert!(!pcloud.html.contains("paste-rclone"));
        assert!(pcloud.html.contains("paste-duplicati"));
    }

    #[test]
    fn every_field_has_a_visible_label_and_authids_are_shown_in_wrapping_fields() {
        let csrf_form = cli_token_form("jottacloud", "Jottacloud", "c", None, "");
        let err = BrokerError::Forbidden {
            code: "access_key_required",
            what: "k",
        };
        let pages = [
            result("a:b", ("demo", "Demo"), None, &[], HandoffPrompt::None, U),
            revoke_form(),
            key_form("/login", &[], &err, false),
            doctor_form(false),
            device_form("/device", None),
            csrf_form,
        ];
        for p in &pages {
            let html = &p.html;
            // Every visible field (not hidden, not a button) has `<label for=its id>`.
            for field in html
                .split("<input")
                .skip(1)
                .chain(html.split("<textarea").skip(1))
            {
                let tag = &field[..field.find('>').unwrap()];
                if tag.contains("type=\"hidden\"") {
                    continue;
                }
                let id = tag.split("id=\"").nth(1).expect("a field with an id");
                let id = &id[..id.find('"').unwrap()];
                assert!(
                    html.contains(&format!("<label for=\"{id}\">")),
                    "{id}: {html}"
                );
            }
            assert!(!html.contains("aria-label"), "a visible label instead");
        }
        // Authids are never in a one-line input (it cannot wrap).
        assert!(!pages[0]
            .html
            .contains("<input class=\"authid\" id=\"authid\""));
        assert!(pages[1]
            .html
            .contains("<textarea class=\"authid\" id=\"authid\" name=\"authid\""));
        assert!(STYLE.contains("line-height:1.5") && STYLE.contains("overflow-wrap:anywhere"));
    }

    #[test]
    fn the_jottacloud_page_links_to_where_the_cli_token_is_made() {
        let j = cli_token_form("jottacloud", "Jottacloud", "c", None, "");
        assert!(j
            .html
            .contains("href=\"https://www.jottacloud.com/web/secure\""));
        let other = cli_token_form("mine", "Mine", "c", None, "");
        assert!(!other.html.contains("jottacloud.com"));
        assert!(other
            .html
            .contains("Create one in your Mine account settings."));
    }

    #[test]
    fn result_page_keeps_values_out_of_script() {
        let page = result(
            "0123:abc\"<x",
            ("demo", "Demo"),
            None,
            &["http://localhost:8200".to_string()],
            HandoffPrompt::None,
            U,
        );
        assert!(page.html.contains("data-authid=\"0123:abc&quot;&lt;x\""));
        let script_start = page.html.find("<script>").unwrap();
        assert!(!page.html[script_start..].contains("0123"));
        assert!(page.html.contains("data-origins=\"http://localhost:8200\""));
    }

    #[test]
    fn the_result_page_names_the_region_and_posts_a_token_without_a_colon() {
        let eu = Region {
            name: "EU",
            host: "eapi.pcloud.com",
        };
        let page = result(
            "pcloudAccessToken",
            ("pcloud", "pCloud"),
            Some(eu),
            &["http://127.0.0.1:8300".to_string()],
            HandoffPrompt::None,
            U,
        );
        assert!(page.html.contains(
            "<p id=\"region\">Region: <strong>EU</strong> (<code>eapi.pcloud.com</code>)."
        ));
        assert!(page.html.contains("data-authid=\"pcloudAccessToken\""));
        assert!(page.html.contains("data-origins=\"http://127.0.0.1:8300\""));
        // The script no longer skips an authid without `:` (pCloud's token).
        assert!(!RESULT_SCRIPT.contains("indexOf(':')"));
        let plain = result("k:s", ("demo", "Demo"), None, &[], HandoffPrompt::None, U);
        assert!(!plain.html.contains("id=\"region\""));
        assert!(plain.html.contains("data-origins=\"\""));
    }

    #[test]
    fn the_result_page_asks_before_handing_the_authid_to_duplicati() {
        let origins = ["http://localhost:8200".to_string()];
        let plain = result(
            "k:s",
            ("demo", "Demo"),
            None,
            &origins,
            HandoffPrompt::None,
            U,
        );
        assert!(!plain.html.contains("<form"));
        assert!(!plain.html.contains("Duplicati window"));
        let ask = result(
            "k:s",
            ("demo", "Demo"),
            None,
            &origins,
            HandoffPrompt::Confirm("c\"<1"),
            U,
        );
        assert!(ask
            .html
            .contains("Send this authorization to the Duplicati window that opened this page?"));
        assert!(ask.html.contains(
            "<form method=\"post\" action=\"/handoff\"><input type=\"hidden\" name=\"confirm\" value=\"c&quot;&lt;1\">"
        ));
        assert!(ask.html.contains("id=\"confirm-handoff\""));
        // Everything the page did before is still there: the authid, copy, opener.
        for page in [&plain, &ask] {
            assert!(page.html.contains("data-authid=\"k:s\""));
            assert!(page.html.contains("id=\"copy\""));
            assert!(page.html.contains("data-origins=\"http://localhost:8200\""));
            assert!(page.html.contains(RESULT_SCRIPT));
        }
        let not_sent = result(
            "k:s",
            ("demo", "Demo"),
            None,
            &origins,
            HandoffPrompt::NotSent,
            U,
        );
        assert!(not_sent.html.contains("not sent to Duplicati"));
        assert!(!not_sent.html.contains("<form"));
        let sent = handoff_sent();
        assert_eq!(sent.status, 200);
        assert!(sent.html.contains("Sent to Duplicati") && !sent.html.contains("data-authid"));
    }

    #[test]
    fn csp_allows_exactly_the_inline_constants() {
        let csp = content_security_policy();
        assert!(csp.contains("default-src 'none'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains(&csp_hash(RESULT_SCRIPT)));
        assert!(csp.contains(&csp_hash(COPY_SCRIPT)));
        assert!(csp.contains(&csp_hash(STYLE)));
        assert!(!csp.contains("unsafe-inline"));
    }

    #[test]
    fn error_page_carries_status_and_escaped_reason() {
        let page = error(&BrokerError::InvalidLoginState, Some("/login?id=a&b"));
        assert_eq!(page.status, 400);
        assert!(page.html.contains("start the login again"));
        assert!(page
            .html
            .contains("<code id=\"error-code\">invalid_state</code>"));
        assert!(page.html.contains("This login has expired"));
        assert!(page
            .html
            .contains("id=\"try-again\" href=\"/login?id=a&amp;b\">Try again</a>"));
        assert!(!page.html.contains("start-page"));
    }

    #[test]
    fn every_error_page_names_its_one_next_step() {
        // Misconfiguration: tell the operator, and no retry link.
        let op = error(&BrokerError::ProviderRejectedClient, Some("/login?id=demo"));
        assert!(op.html.contains("Tell the operator of this broker"));
        assert!(op.html.contains(">provider_misconfigured</code>"));
        assert!(!op.html.contains("try-again") && !op.html.contains("start-page"));
        // A login that failed at the provider: try the same login again.
        let denied = error(&BrokerError::LoginDenied, Some("/login?id=demo"));
        assert!(denied.html.contains("Access was not granted"));
        assert!(denied
            .html
            .contains("href=\"/login?id=demo\">Try again</a>"));
        // Nothing to restart, or nothing here: the start page.
        for (e, restart) in [
            (BrokerError::ProviderFailed, None),
            (BrokerError::UnknownProvider, Some("/login?id=x")),
        ] {
            let p = error(&e, restart);
            assert!(p.html.contains("id=\"start-page\" href=\"/\""), "{e:?}");
            assert!(!p.html.contains("try-again"), "{e:?}");
        }
    }

    #[test]
    fn the_index_and_the_result_page_point_to_the_device_login() {
        let opts = IndexOptions {
            base: "/k/key".into(),
            ..IndexOptions::default()
        };
        assert!(index(&[], &opts).html.contains("href=\"/k/key/device\""));
        let r = result("a:b", ("demo", "Demo"), None, &[], HandoffPrompt::None, U);
        assert!(r.html.contains("href=\"/device\"") && r.html.contains("/oauth/token"));
    }

    #[test]
    fn device_pages_escape_what_they_show() {
        let form = device_form("/device?key=a\"b", Some("<x>"));
        assert!(form.html.contains("value=\"&lt;x&gt;\""));
        assert!(form.html.contains("action=\"/device?key=a&quot;b\""));
        let ask = device_confirm(
            "<Demo>",
            "BCDF-GHJK",
            0,
            Some("<X"),
            "/device?a=1&b=2",
            "/d\"",
        );
        assert!(ask.html.contains("&lt;Demo&gt;") && !ask.html.contains("<Demo>"));
        assert!(ask.html.contains("href=\"/device?a=1&amp;b=2\""));
        assert!(ask.html.contains("href=\"/d&quot;\""));
        assert!(device_done(true).html.contains("Return to your"));
        assert!(device_done(false).html.contains("not authorized"));
    }
}
