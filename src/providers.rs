//! The provider catalogue: every provider difference is data in one table.
//!
//! Built-in entries carry the real endpoints, scopes and quirks of the providers
//! Duplicati's clients know (ids are Duplicati's, so its clients work unchanged).
//! Operators add or override entries with the `OAUTH_PROVIDERS` JSON variable.
//! A provider is *offered* only when both its client id and client secret are
//! set, or, for a public client (Jottacloud's `jottacli`), its client id alone.

use serde::Deserialize;

/// How a user logs in with a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginKind {
    /// RFC 6749 §4.1: `/login` redirects to the provider, which calls back.
    AuthorizationCode,
    /// Jottacloud: the user pastes a "CLI token" on `/cli-token` and the broker
    /// makes a `grant_type=password` call with it (`crate::cli_token`).
    CliToken,
}

/// What the provider's revocation endpoint ends ([`Provider::revocation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    /// Only the grant the token belongs to (RFC 7009 §2.1: the token and the
    /// tokens of the same authorization grant).
    ThisGrant,
    /// Every grant the user gave this client: Google's `/revoke` removes the
    /// app's access to the account, so revoking one authid's token would end
    /// every other authid of that user too
    /// (developers.google.com/identity/protocols/oauth2/web-server,
    /// "Revoking a token": "the user's grant … is removed").
    EveryGrantOfTheUser,
}

/// Where a provider names the account a login was made with: recorded (as a
/// keyed hash, `crate::account`) at every mint, and compared when the holder
/// of an authid logs in again to re-authorize it in place. Only what the
/// provider already answers, or one call within the scopes already granted:
/// never a wider scope.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum AccountSource {
    /// The provider gives no stable account id within its scopes: grants of
    /// it cannot be re-authorized in place (a new authid instead).
    None,
    /// A string (or number) field of the code exchange's token answer.
    TokenAnswer { field: String },
    /// The `sub` claim of the OpenID Connect ID token in the token answer
    /// (OpenID Connect Core 1.0 §2: "locally unique and never reassigned").
    /// Received straight from the token endpoint over TLS, so TLS stands in
    /// for the signature check (§3.1.3.7, item 6).
    IdToken,
    /// One `GET url` with the new access token (`Authorization: Bearer`); the
    /// id is at the dotted `field` path of the JSON answer.
    Endpoint { url: String, field: String },
}

/// One OAuth2 provider, as the broker talks to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub authorize_url: String,
    pub token_url: String,
    /// RFC 7009 revocation endpoint, where the provider has one.
    pub revoke_url: Option<String>,
    /// What a call to `revoke_url` ends. The broker calls it on its own
    /// initiative (a replayed authorization code) only for [`Revocation::ThisGrant`].
    pub revocation: Revocation,
    /// Space-separated scopes requested at login.
    pub scopes: String,
    pub client_id: String,
    pub extra_authorize_params: Vec<(String, String)>,
    /// Added (replacing an extra parameter of the same name) when a login will
    /// hand its authid to another window (Duplicati's old UI): the provider
    /// must show its consent page rather than log a signed-in user in silently,
    /// so nobody is logged in through a link without seeing it.
    pub consent_authorize_params: Vec<(String, String)>,
    /// Use PKCE S256 (RFC 7636) on login.
    pub pkce: bool,
    /// Send `redirect_uri` on refresh_token grants (Dropbox rejects it there).
    pub refresh_sends_redirect_uri: bool,
    /// The access token never expires and there is no refresh token (pCloud):
    /// the result page shows the access token itself, which Duplicati uses
    /// directly and never sends to the broker. Nothing is stored.
    pub access_token_is_authid: bool,
    /// A public client (RFC 6749 §2.1): no client secret exists, none is sent
    /// upstream, and the provider is offered without a `CLIENT_SECRET_*` binding.
    pub public_client: bool,
    /// How a user logs in (`/login` or `/cli-token`).
    pub login: LoginKind,
    /// Regional token endpoints the callback may pick by its `hostname`
    /// parameter (pCloud: EU accounts are exchanged at `eapi.pcloud.com`).
    /// Empty: the provider has no regions and `hostname` means nothing.
    pub token_hosts: Vec<TokenHost>,
    /// Where the provider names the account (re-authorization in place).
    pub account: AccountSource,
}

/// A regional token endpoint ([`Provider::token_hosts`]). The callback's
/// `hostname` only *selects* one of these; the URL fetched is always the
/// configured one, so a forged `hostname` cannot point the broker anywhere
/// else (no SSRF).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenHost {
    /// The callback's `hostname` value that picks this endpoint.
    pub hostname: String,
    /// What the result page calls the region (`EU`), so the user can pick the
    /// same server in the backup client.
    pub region: String,
    /// Where a login of this region exchanges its code.
    pub token_url: String,
}

/// Where a login's code is exchanged ([`Provider::token_endpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEndpoint<'a> {
    pub token_url: &'a str,
    /// The region picked by the callback, to show beside the authid.
    pub region: Option<&'a TokenHost>,
}

/// The callback named a region the provider entry does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownRegion;

impl Provider {
    /// Whether a browser login at this provider yields a refresh token the
    /// broker can hand out as an authid: an authorization-code login (not
    /// Jottacloud's CLI token) at a provider that issues refresh tokens (not
    /// pCloud, whose access token is the authid). Only such a provider can
    /// take the OAuth 2.0 authorization and device doors.
    pub fn browser_login_with_refresh_token(&self) -> bool {
        self.login == LoginKind::AuthorizationCode && !self.access_token_is_authid
    }

    /// The provider-specific authorize parameters of a login: the extra ones,
    /// plus the consent ones when `ask_consent` (a hand-off is pending).
    pub fn authorize_params(&self, ask_consent: bool) -> Vec<(&str, &str)> {
        let consent: &[(String, String)] = if ask_consent {
            &self.consent_authorize_params
        } else {
            &[]
        };
        self.extra_authorize_params
            .iter()
            .filter(|(k, _)| !consent.iter().any(|(c, _)| c == k))
            .chain(consent)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Where to exchange a login's code, given the callback's `hostname`.
    ///
    /// - no `hostname`, or a provider without regions: the default `token_url`;
    /// - a listed `hostname` (ASCII case-insensitive): that region's endpoint;
    /// - an unlisted one: refused. Falling back to the default would send an EU
    ///   account's code to the US host, where it fails anyway with a misleading
    ///   provider error; an unknown value is tampering or a region this broker
    ///   does not know yet, and the user should be told so, not sent on.
    pub fn token_endpoint(
        &self,
        hostname: Option<&str>,
    ) -> Result<TokenEndpoint<'_>, UnknownRegion> {
        let default = TokenEndpoint {
            token_url: &self.token_url,
            region: None,
        };
        let Some(h) = hostname.map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(default);
        };
        if self.token_hosts.is_empty() {
            return Ok(default);
        }
        self.token_hosts
            .iter()
            .find(|t| t.hostname.eq_ignore_ascii_case(h))
            .map(|t| TokenEndpoint {
                token_url: &t.token_url,
                region: Some(t),
            })
            .ok_or(UnknownRegion)
    }

    /// Name of the secret binding that holds this provider's client secret:
    /// `CLIENT_SECRET_<ID>`, id upper-cased, non-alphanumerics as `_`.
    pub fn secret_binding(&self) -> String {
        binding_name("CLIENT_SECRET_", &self.id)
    }

    /// Name of the variable that sets a built-in provider's client id.
    pub fn client_id_binding(&self) -> String {
        binding_name("CLIENT_ID_", &self.id)
    }
}

fn binding_name(prefix: &str, id: &str) -> String {
    let mut s = String::from(prefix);
    s.extend(id.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

struct BuiltIn {
    id: &'static str,
    name: &'static str,
    authorize_url: &'static str,
    token_url: &'static str,
    revoke_url: Option<&'static str>,
    revocation: Revocation,
    scopes: &'static str,
    extra: &'static [(&'static str, &'static str)],
    consent: &'static [(&'static str, &'static str)],
    pkce: bool,
    refresh_sends_redirect_uri: bool,
    access_token_is_authid: bool,
    /// `Some(client id)` for a public client, which has no secret.
    public_client: Option<&'static str>,
    login: LoginKind,
    account: BuiltInAccount,
}

/// [`AccountSource`] of a built-in entry, as constants.
#[derive(Clone, Copy)]
enum BuiltInAccount {
    None,
    TokenAnswer(&'static str),
    IdToken,
    Endpoint(&'static str, &'static str),
}

impl BuiltInAccount {
    fn source(self) -> AccountSource {
        match self {
            BuiltInAccount::None => AccountSource::None,
            BuiltInAccount::TokenAnswer(f) => AccountSource::TokenAnswer {
                field: f.to_string(),
            },
            BuiltInAccount::IdToken => AccountSource::IdToken,
            BuiltInAccount::Endpoint(url, field) => AccountSource::Endpoint {
                url: url.to_string(),
                field: field.to_string(),
            },
        }
    }
}

/// Google Drive: `about.get` with `fields=user` is allowed with the
/// `drive.file` scope the broker asks for, and `user.permissionId` is "the
/// user's ID as visible in Permission resources"
/// (developers.google.com/drive/api/reference/rest/v3/about/get,
/// developers.google.com/drive/api/reference/rest/v3/User).
const GOOGLE_DRIVE_ACCOUNT: BuiltInAccount = BuiltInAccount::Endpoint(
    "https://www.googleapis.com/drive/v3/about?fields=user",
    "user.permissionId",
);
/// Microsoft Graph: `GET /me/drive` needs only `Files.Read` (less than every
/// Microsoft entry asks for), and the drive's `owner.user.id` is the signed-in
/// user's id (learn.microsoft.com/graph/api/drive-get, "Get current user's
/// OneDrive"; `User.Read` for `/me` itself is not among the scopes).
const MS_ACCOUNT: BuiltInAccount = BuiltInAccount::Endpoint(
    "https://graph.microsoft.com/v1.0/me/drive?$select=owner",
    "owner.user.id",
);

const GOOGLE_AUTH: &str = "https://accounts.google.com/o/oauth2/v2/auth";
const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
const GOOGLE_REVOKE: &str = "https://oauth2.googleapis.com/revoke";
const GOOGLE_EXTRA: &[(&str, &str)] = &[("access_type", "offline"), ("prompt", "consent")];
/// Google: `prompt=consent` shows the consent page every time
/// (developers.google.com/identity/protocols/oauth2/web-server, "prompt").
/// Microsoft identity platform: `prompt=consent` shows the consent dialog after
/// sign-in (learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow,
/// "Request an authorization code").
const PROMPT_CONSENT: &[(&str, &str)] = &[("prompt", "consent")];
const MS_AUTH: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize";
const MS_TOKEN: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/token";

/// The built-in catalogue. Quirks live here, not in handlers.
const BUILT_IN: &[BuiltIn] = &[
    BuiltIn {
        id: "googledrive",
        name: "Google Drive",
        authorize_url: GOOGLE_AUTH,
        token_url: GOOGLE_TOKEN,
        revoke_url: Some(GOOGLE_REVOKE),
        revocation: Revocation::EveryGrantOfTheUser,
        scopes: "https://www.googleapis.com/auth/drive.file",
        // Google issues a refresh token only with access_type=offline, and only on
        // first consent unless prompt=consent forces it.
        extra: GOOGLE_EXTRA,
        consent: PROMPT_CONSENT,
        pkce: true,
        refresh_sends_redirect_uri: false,
        access_token_is_authid: false,
        public_client: None,
        account: GOOGLE_DRIVE_ACCOUNT,
        login: LoginKind::AuthorizationCode,
    },
    BuiltIn {
        id: "gcs",
        name: "Google Cloud Storage",
        authorize_url: GOOGLE_AUTH,
        token_url: GOOGLE_TOKEN,
        revoke_url: Some(GOOGLE_REVOKE),
        revocation: Revocation::EveryGrantOfTheUser,
        scopes: "https://www.googleapis.com/auth/devstorage.read_write",
        extra: GOOGLE_EXTRA,
        consent: PROMPT_CONSENT,
        pkce: true,
        refresh_sends_redirect_uri: false,
        access_token_is_authid: false,
        public_client: None,
        // `devstorage.read_write` reaches no user endpoint (the Drive `about`
        // and OpenID userinfo need other scopes, which the broker never adds).
        account: BuiltInAccount::None,
        login: LoginKind::AuthorizationCode,
    },
    BuiltIn {
        id: "onedrivev2",
        name: "Microsoft OneDrive",
        authorize_url: MS_AUTH,
        token_url: MS_TOKEN,
        revoke_url: None,
        revocation: Revocation::ThisGrant,
        scopes: "offline_access Files.ReadWrite",
        extra: &[],
        consent: PROMPT_CONSENT,
        pkce: true,
        refresh_sends_redirect_uri: true,
        access_token_is_authid: false,
        public_client: None,
        account: MS_ACCOUNT,
        login: LoginKind::AuthorizationCode,
    },
    BuiltIn {
        id: "sharepoint",
        name: "Microsoft SharePoint",
        authorize_url: MS_AUTH,
        token_url: MS_TOKEN,
        revoke_url: None,
        revocation: Revocation::ThisGrant,
        scopes: "offline_access Files.ReadWrite.All Sites.ReadWrite.All",
        extra: &[],
        consent: PROMPT_CONSENT,
        pkce: true,
        refresh_sends_redirect_uri: true,
        access_token_is_authid: false,
        public_client: None,
        account: MS_ACCOUNT,
        login: LoginKind::AuthorizationCode,
    },
    BuiltIn {
        id: "msgroup",
        name: "Microsoft Office 365 Group",
        authorize_url: MS_AUTH,
        token_url: MS_TOKEN,
        revoke_url: None,
        revocation: Revocation::ThisGrant,
        scopes: "offline_access Files.ReadWrite Group.ReadWrite.All",
        extra: &[],
        consent: PROMPT_CONSENT,
        pkce: true,
        refresh_sends_redirect_uri: true,
        access_token_is_authid: false,
        public_client: None,
        account: MS_ACCOUNT,
        login: LoginKind::AuthorizationCode,
    },
    BuiltIn {
        // Box refresh tokens are single use: every refresh returns a new one and
        // presenting a spent one kills the grant.
        id: "box.com",
        name: "Box.com",
        authorize_url: "https://account.box.com/api/oauth2/authorize",
        token_url: "https://api.box.com/oauth2/token",
        revoke_url: Some("https://api.box.com/oauth2/revoke"),
        revocation: Revocation::ThisGrant,
        scopes: "root_readwrite",
        extra: &[],
        // No documented way to force the consent page; the broker's own
        // confirmation click (`crate::handoff`) is the safeguard.
        consent: &[],
        pkce: false,
        refresh_sends_redirect_uri: false,
        access_token_is_authid: false,
        public_client: None,
        // "Get current user" works with any scope
        // (developer.box.com/reference/get-users-me); `id` is the user's id.
        account: BuiltInAccount::Endpoint("https://api.box.com/2.0/users/me?fields=id", "id"),
        login: LoginKind::AuthorizationCode,
    },
    BuiltIn {
        // Dropbox issues refresh tokens only with token_access_type=offline and
        // rejects redirect_uri on refresh_token grants.
        id: "dropbox",
        name: "Dropbox",
        authorize_url: "https://www.dropbox.com/oauth2/authorize",
        token_url: "https://api.dropboxapi.com/oauth2/token",
        revoke_url: None,
        revocation: Revocation::ThisGrant,
        scopes: "",
        extra: &[("token_access_type", "offline")],
        // Dropbox skips its approval page for an app the user approved before
        // unless force_reapprove=true (dropbox.com/developers/documentation/http/
        // documentation#oauth2-authorize, "force_reapprove").
        consent: &[("force_reapprove", "true")],
        pkce: true,
        refresh_sends_redirect_uri: false,
        access_token_is_authid: false,
        public_client: None,
        // The token answer carries "account_id: The account ID of the user"
        // (dropbox.com/developers/documentation/http/documentation#oauth2-token).
        account: BuiltInAccount::TokenAnswer("account_id"),
        login: LoginKind::AuthorizationCode,
    },
    BuiltIn {
        // pCloud access tokens never expire and it issues no refresh token.
        // `token_url` is the US default; EU logins: `REGIONAL_TOKEN_HOSTS`.
        id: "pcloud",
        name: "pCloud",
        authorize_url: "https://my.pcloud.com/oauth2/authorize",
        token_url: "https://api.pcloud.com/oauth2_token",
        revoke_url: None,
        revocation: Revocation::ThisGrant,
        scopes: "",
        extra: &[],
        // No documented way to force the consent page; the broker's own
        // confirmation click (`crate::handoff`) is the safeguard.
        consent: &[],
        pkce: false,
        refresh_sends_redirect_uri: false,
        access_token_is_authid: true,
        public_client: None,
        // Nothing is stored (the access token is the authid), so nothing is
        // re-authorized; pCloud's `userid` in the token answer goes unused.
        account: BuiltInAccount::None,
        login: LoginKind::AuthorizationCode,
    },
    BuiltIn {
        // oauth-handler settings.py (6d9aa7d) L163, L233-238, L334-340: the
        // public client `jottacli` (no secret), scope `openid offline_access`,
        // logged in with a pasted CLI token (`cli-token: True`). Refresh tokens
        // rotate. Jottacloud has no revocation endpoint there.
        id: "jottacloud",
        name: "Jottacloud",
        authorize_url: "",
        token_url: "https://id.jottacloud.com/auth/realms/jottacloud/protocol/openid-connect/token",
        revoke_url: None,
        revocation: Revocation::ThisGrant,
        scopes: "openid offline_access",
        extra: &[],
        consent: &[],
        pkce: false,
        refresh_sends_redirect_uri: false,
        access_token_is_authid: false,
        public_client: Some("jottacli"),
        // Keycloak's OpenID Connect token endpoint answers an `id_token` for
        // the `openid` scope already asked for; its `sub` names the user.
        account: BuiltInAccount::IdToken,
        login: LoginKind::CliToken,
    },
];

/// Regional token endpoints of built-in providers, by id (kept beside
/// `BUILT_IN` rather than as a field of every entry). pCloud's callback carries
/// `hostname` and `locationid` (1 = US, 2 = EU); the code must be exchanged at
/// that API host (docs.pcloud.com, "Authentication" / oauth2_token). Only
/// these two hosts: the callback's value is a key into this list, never a URL.
/// `(hostname, region, token_url)` of one regional endpoint.
type RegionalHost = (&'static str, &'static str, &'static str);

const REGIONAL_TOKEN_HOSTS: &[(&str, &[RegionalHost])] = &[(
    "pcloud",
    &[
        (
            "api.pcloud.com",
            "US",
            "https://api.pcloud.com/oauth2_token",
        ),
        (
            "eapi.pcloud.com",
            "EU",
            "https://eapi.pcloud.com/oauth2_token",
        ),
    ],
)];

fn built_in_token_hosts(id: &str) -> Vec<TokenHost> {
    REGIONAL_TOKEN_HOSTS
        .iter()
        .filter(|(p, _)| *p == id)
        .flat_map(|(_, hosts)| hosts.iter())
        .map(|(hostname, region, token_url)| TokenHost {
            hostname: hostname.to_string(),
            region: region.to_string(),
            token_url: token_url.to_string(),
        })
        .collect()
}

/// How long a provider keeps a refresh token nobody uses (days), by provider
/// id, with the provider's own words for it. The broker refreshes only when a
/// client asks, so a job that stops running lets its grant age towards this.
pub const IDLE_LIMITS: &[(&str, i64, &str)] = &[
    // "the refresh token has not been used for six months"
    (
        "googledrive",
        182,
        "https://developers.google.com/identity/protocols/oauth2#expiration",
    ),
    (
        "gcs",
        182,
        "https://developers.google.com/identity/protocols/oauth2#expiration",
    ),
    // "90 days for all other scenarios"
    (
        "onedrivev2",
        90,
        "https://learn.microsoft.com/entra/identity-platform/refresh-tokens",
    ),
    (
        "sharepoint",
        90,
        "https://learn.microsoft.com/entra/identity-platform/refresh-tokens",
    ),
    (
        "msgroup",
        90,
        "https://learn.microsoft.com/entra/identity-platform/refresh-tokens",
    ),
    // "not refreshed within 60 days, the user will need to be re-authorized"
    (
        "box.com",
        60,
        "https://developer.box.com/guides/authentication/tokens/refresh",
    ),
];

/// The idle limit of `provider` (canonical id) in days, if it has one.
pub fn idle_limit_days(provider: &str) -> Option<i64> {
    IDLE_LIMITS
        .iter()
        .find(|(id, _, _)| *id == provider)
        .map(|(_, days, _)| *days)
}

/// Aliases Duplicati's clients send for built-in ids.
const ALIASES: &[(&str, &str)] = &[("box", "box.com")];

/// Maps an id a client sent to the catalogue id (`box` → `box.com`).
pub fn canonical_id(id: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == id)
        .map(|(_, target)| *target)
        .unwrap_or(id)
}

/// Whether two provider ids (as spelled, aliases allowed) name one provider.
pub fn same_provider(a: &str, b: &str) -> bool {
    canonical_id(a) == canonical_id(b)
}

/// One entry of `OAUTH_PROVIDERS`. For a built-in id every field is optional and
/// overrides the built-in value; for a new id `name`, `authorize_url`,
/// `token_url`, `scopes` and `client_id` are required.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ProviderOverride {
    id: String,
    name: Option<String>,
    authorize_url: Option<String>,
    token_url: Option<String>,
    revoke_url: Option<String>,
    revocation: Option<Revocation>,
    scopes: Option<String>,
    client_id: Option<String>,
    extra_authorize_params: Option<std::collections::BTreeMap<String, String>>,
    consent_authorize_params: Option<std::collections::BTreeMap<String, String>>,
    pkce: Option<bool>,
    refresh_sends_redirect_uri: Option<bool>,
    access_token_is_authid: Option<bool>,
    public_client: Option<bool>,
    login: Option<LoginKind>,
    token_hosts: Option<Vec<TokenHost>>,
    account: Option<AccountSource>,
}

/// Why `OAUTH_PROVIDERS` was rejected. Carries no configured values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfigError(pub String);

impl std::fmt::Display for ProviderConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ProviderConfigError> for crate::error::BrokerError {
    fn from(_: ProviderConfigError) -> Self {
        crate::error::BrokerError::Misconfigured {
            what: "OAUTH_PROVIDERS is invalid",
        }
    }
}

/// The catalogue after applying `OAUTH_PROVIDERS`: every known provider, whether
/// configured or not. Use [`Catalogue::configured`] to learn which are offered.
#[derive(Clone, Debug)]
pub struct Catalogue {
    providers: Vec<Provider>,
}

impl Catalogue {
    /// Builds the catalogue from the built-ins plus the `OAUTH_PROVIDERS` JSON
    /// (`None` or blank = no overrides).
    pub fn load(oauth_providers: Option<&str>) -> Result<Catalogue, ProviderConfigError> {
        let mut providers: Vec<Provider> = BUILT_IN
            .iter()
            .map(|b| Provider {
                id: b.id.to_string(),
                name: b.name.to_string(),
                authorize_url: b.authorize_url.to_string(),
                token_url: b.token_url.to_string(),
                revoke_url: b.revoke_url.map(str::to_string),
                revocation: b.revocation,
                scopes: b.scopes.to_string(),
                client_id: b.public_client.unwrap_or_default().to_string(),
                extra_authorize_params: b
                    .extra
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                consent_authorize_params: b
                    .consent
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                pkce: b.pkce,
                refresh_sends_redirect_uri: b.refresh_sends_redirect_uri,
                access_token_is_authid: b.access_token_is_authid,
                public_client: b.public_client.is_some(),
                login: b.login,
                token_hosts: built_in_token_hosts(b.id),
                account: b.account.source(),
            })
            .collect();
        let raw = oauth_providers.map(str::trim).unwrap_or("");
        if raw.is_empty() {
            return Ok(Catalogue { providers });
        }
        let overrides: Vec<ProviderOverride> = serde_json::from_str(raw).map_err(|e| {
            ProviderConfigError(format!(
                "OAUTH_PROVIDERS is not a JSON array of provider objects (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        for o in overrides {
            let id = o.id.clone();
            validate_id(&id)?;
            match providers.iter_mut().find(|p| p.id == id) {
                Some(p) => apply(p, o)?,
                None => {
                    let missing =
                        |what: &str| ProviderConfigError(format!("provider `{id}` needs `{what}`"));
                    let mut p = Provider {
                        id: id.clone(),
                        name: o.name.clone().ok_or_else(|| missing("name"))?,
                        authorize_url: o
                            .authorize_url
                            .clone()
                            .ok_or_else(|| missing("authorize_url"))?,
                        token_url: o.token_url.clone().ok_or_else(|| missing("token_url"))?,
                        revoke_url: None,
                        revocation: Revocation::ThisGrant,
                        scopes: o.scopes.clone().ok_or_else(|| missing("scopes"))?,
                        client_id: o.client_id.clone().ok_or_else(|| missing("client_id"))?,
                        extra_authorize_params: Vec::new(),
                        // OpenID Connect Core 1.0 §3.1.2.1 `prompt=consent`; a plain
                        // OAuth 2.0 server ignores a parameter it does not know
                        // (RFC 6749 §3.1). `{}` in OAUTH_PROVIDERS turns it off.
                        consent_authorize_params: PROMPT_CONSENT
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        pkce: true,
                        refresh_sends_redirect_uri: true,
                        access_token_is_authid: false,
                        public_client: false,
                        login: LoginKind::AuthorizationCode,
                        token_hosts: Vec::new(),
                        // Unknown until the entry says where.
                        account: AccountSource::None,
                    };
                    apply(&mut p, o)?;
                    providers.push(p);
                }
            }
        }
        Ok(Catalogue { providers })
    }

    /// Every provider in the catalogue (configured or not), in display order.
    pub fn all(&self) -> &[Provider] {
        &self.providers
    }

    /// Looks a provider up by id or alias.
    pub fn get(&self, id: &str) -> Option<&Provider> {
        let id = canonical_id(id);
        self.providers.iter().find(|p| p.id == id)
    }

    /// Fills in client ids from `CLIENT_ID_<ID>` variables where the JSON gave none.
    pub fn with_client_ids(mut self, lookup: impl Fn(&str) -> Option<String>) -> Catalogue {
        for p in &mut self.providers {
            if p.client_id.is_empty() {
                if let Some(v) = lookup(&p.client_id_binding()) {
                    p.client_id = v.trim().to_string();
                }
            }
        }
        self
    }

    /// The providers a user may log in with: client id set and client secret
    /// bound (`has_secret` is asked with the binding name); a public client
    /// needs no secret.
    pub fn configured(&self, has_secret: impl Fn(&str) -> bool) -> Vec<&Provider> {
        self.providers
            .iter()
            .filter(|p| {
                !p.client_id.is_empty() && (p.public_client || has_secret(&p.secret_binding()))
            })
            .collect()
    }
}

fn validate_id(id: &str) -> Result<(), ProviderConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ProviderConfigError(
            "provider ids must be 1-64 chars of [a-z0-9._-]".to_string(),
        ))
    }
}

fn validate_url(id: &str, field: &str, value: &str) -> Result<(), ProviderConfigError> {
    let parsed = url::Url::parse(value).ok();
    let ok = parsed.is_some_and(|u| {
        u.scheme() == "https"
            || (u.scheme() == "http"
                && matches!(
                    u.host_str(),
                    Some("127.0.0.1") | Some("localhost") | Some("[::1]")
                ))
    });
    if ok {
        Ok(())
    } else {
        Err(ProviderConfigError(format!(
            "provider `{id}`: `{field}` must be an https URL (http only on loopback)"
        )))
    }
}

fn apply(p: &mut Provider, o: ProviderOverride) -> Result<(), ProviderConfigError> {
    let id = p.id.clone();
    if let Some(v) = o.name {
        p.name = v;
    }
    if let Some(v) = o.authorize_url {
        validate_url(&id, "authorize_url", &v)?;
        p.authorize_url = v;
    }
    if let Some(v) = o.token_url {
        validate_url(&id, "token_url", &v)?;
        p.token_url = v;
        // Regional endpoints belong to the token_url they came with: pointing a
        // provider elsewhere drops them unless `token_hosts` is given too.
        p.token_hosts.clear();
    }
    if let Some(v) = o.token_hosts {
        for t in &v {
            validate_url(&id, "token_hosts.token_url", &t.token_url)?;
        }
        p.token_hosts = v;
    }
    if let Some(v) = o.revoke_url {
        validate_url(&id, "revoke_url", &v)?;
        p.revoke_url = Some(v);
    }
    if let Some(v) = o.revocation {
        p.revocation = v;
    }
    if let Some(v) = o.account {
        if let AccountSource::Endpoint { url, .. } = &v {
            validate_url(&id, "account.url", url)?;
        }
        p.account = v;
    }
    if let Some(v) = o.scopes {
        p.scopes = v;
    }
    if let Some(v) = o.client_id {
        p.client_id = v;
    }
    if let Some(v) = o.extra_authorize_params {
        p.extra_authorize_params = v.into_iter().collect();
    }
    if let Some(v) = o.consent_authorize_params {
        p.consent_authorize_params = v.into_iter().collect();
    }
    if let Some(v) = o.pkce {
        p.pkce = v;
    }
    if let Some(v) = o.refresh_sends_redirect_uri {
        p.refresh_sends_redirect_uri = v;
    }
    if let Some(v) = o.access_token_is_authid {
        p.access_token_is_authid = v;
    }
    if let Some(v) = o.public_client {
        p.public_client = v;
    }
    if let Some(v) = o.login {
        p.login = v;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_code_login_with_a_refresh_token_can_take_the_oauth_doors() {
        let c = Catalogue::load(None).unwrap();
        assert!(c.get("box.com").unwrap().browser_login_with_refresh_token());
        // pCloud: the access token is the authid, no refresh token.
        assert!(!c.get("pcloud").unwrap().browser_login_with_refresh_token());
        // Jottacloud: a CLI token, no browser login.
        assert!(!c
            .get("jottacloud")
            .unwrap()
            .browser_login_with_refresh_token());
    }

    #[test]
    fn secret_binding_names_follow_the_spec() {
        let c = Catalogue::load(None).unwrap();
        assert_eq!(
            c.get("box.com").unwrap().secret_binding(),
            "CLIENT_SECRET_BOX_COM"
        );
        assert_eq!(
            c.get("googledrive").unwrap().secret_binding(),
            "CLIENT_SECRET_GOOGLEDRIVE"
        );
        assert_eq!(
            c.get("onedrivev2").unwrap().client_id_binding(),
            "CLIENT_ID_ONEDRIVEV2"
        );
    }

    #[test]
    fn built_in_ids_are_duplicatis() {
        let c = Catalogue::load(None).unwrap();
        for id in [
            "googledrive",
            "gcs",
            "onedrivev2",
            "sharepoint",
            "msgroup",
            "box.com",
            "dropbox",
            "pcloud",
            "jottacloud",
        ] {
            assert!(c.get(id).is_some(), "{id} missing");
        }
        assert_eq!(c.get("box").unwrap().id, "box.com");
        assert!(c.get("nope").is_none());
    }

    #[test]
    fn provider_quirks_are_data() {
        let c = Catalogue::load(None).unwrap();
        let dropbox = c.get("dropbox").unwrap();
        assert!(!dropbox.refresh_sends_redirect_uri);
        assert!(dropbox
            .extra_authorize_params
            .contains(&("token_access_type".into(), "offline".into())));
        assert_eq!(
            c.get("onedrivev2").unwrap().scopes,
            "offline_access Files.ReadWrite"
        );
        assert!(c.get("googledrive").unwrap().scopes.ends_with("drive.file"));
        assert!(c.get("pcloud").unwrap().access_token_is_authid);
        assert!(!c.get("box.com").unwrap().access_token_is_authid);
    }

    #[test]
    fn a_pending_hand_off_asks_each_provider_for_consent_in_its_own_words() {
        let c = Catalogue::load(None).unwrap();
        let params = |id: &str, ask: bool| {
            c.get(id)
                .unwrap()
                .authorize_params(ask)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        for id in ["onedrivev2", "sharepoint", "msgroup"] {
            assert_eq!(params(id, true), ["prompt=consent"], "{id}");
            assert!(params(id, false).is_empty(), "{id}");
        }
        // Google always asks for consent (a refresh token needs it); never twice.
        for id in ["googledrive", "gcs"] {
            assert_eq!(params(id, true), ["access_type=offline", "prompt=consent"]);
            assert_eq!(params(id, false), params(id, true));
        }
        assert_eq!(
            params("dropbox", true),
            ["token_access_type=offline", "force_reapprove=true"]
        );
        assert_eq!(params("dropbox", false), ["token_access_type=offline"]);
        assert!(params("box.com", true).is_empty());
        assert!(params("pcloud", true).is_empty());
    }

    #[test]
    fn operator_providers_ask_for_oidc_consent_unless_told_otherwise() {
        let base = r#""name":"D","authorize_url":"https://a.example/a","token_url":"https://a.example/t","scopes":"s","client_id":"c""#;
        let json = format!(
            r#"[{{"id":"plain",{base}}},{{"id":"quiet",{base},"consent_authorize_params":{{}}}},
               {{"id":"own",{base},"extra_authorize_params":{{"prompt":"none","x":"1"}},"consent_authorize_params":{{"prompt":"login consent"}}}},
               {{"id":"box.com","consent_authorize_params":{{"force":"1"}}}}]"#
        );
        let c = Catalogue::load(Some(&json)).unwrap();
        let p = |id: &str, ask: bool| c.get(id).unwrap().authorize_params(ask);
        assert_eq!(p("plain", true), [("prompt", "consent")]);
        assert!(p("plain", false).is_empty());
        assert!(p("quiet", true).is_empty());
        assert_eq!(p("own", false), [("prompt", "none"), ("x", "1")]);
        assert_eq!(
            p("own", true),
            [("x", "1"), ("prompt", "login consent")],
            "the consent value replaces the extra one of the same name"
        );
        assert_eq!(p("box.com", true), [("force", "1")]);
    }

    #[test]
    fn jottacloud_is_a_public_cli_token_client_offered_without_a_secret() {
        let c = Catalogue::load(None).unwrap();
        let j = c.get("jottacloud").unwrap();
        assert_eq!(j.client_id, "jottacli");
        assert!(j.public_client);
        assert_eq!(j.login, LoginKind::CliToken);
        assert_eq!(j.scopes, "openid offline_access");
        assert_eq!(
            j.token_url,
            "https://id.jottacloud.com/auth/realms/jottacloud/protocol/openid-connect/token"
        );
        assert!(j.revoke_url.is_none());
        let offered = c.configured(|_| false);
        assert_eq!(
            offered.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["jottacloud"]
        );
        // Operators point it elsewhere (the e2e harness: at the mock).
        let c = Catalogue::load(Some(
            r#"[{"id":"jottacloud","token_url":"http://127.0.0.1:9/token"}]"#,
        ))
        .unwrap();
        let j = c.get("jottacloud").unwrap();
        assert_eq!(j.token_url, "http://127.0.0.1:9/token");
        assert!(j.public_client && j.login == LoginKind::CliToken);
        let c = Catalogue::load(Some(
            r#"[{"id":"mine","name":"M","authorize_url":"https://a.example/a","token_url":"https://a.example/t","scopes":"","client_id":"c","public_client":true,"login":"cli_token"}]"#,
        ))
        .unwrap();
        let m = c.get("mine").unwrap();
        assert!(m.public_client && m.login == LoginKind::CliToken);
        // An operator who does not want it offered empties its client id.
        let c = Catalogue::load(Some(r#"[{"id":"jottacloud","client_id":""}]"#)).unwrap();
        assert!(c.configured(|_| true).is_empty());
    }

    #[test]
    fn nothing_is_offered_without_client_id_and_secret() {
        let c = Catalogue::load(None).unwrap();
        assert!(c.configured(|_| true).iter().all(|p| p.public_client));
        let c = c.with_client_ids(|name| (name == "CLIENT_ID_DROPBOX").then(|| "abc".into()));
        assert!(c.configured(|_| false).iter().all(|p| p.public_client));
        let offered = c.configured(|name| name == "CLIENT_SECRET_DROPBOX");
        let dropbox: Vec<_> = offered.iter().filter(|p| !p.public_client).collect();
        assert_eq!(dropbox.len(), 1);
        assert_eq!(dropbox[0].id, "dropbox");
        assert_eq!(dropbox[0].client_id, "abc");
    }

    #[test]
    fn oauth_providers_adds_a_provider() {
        let json = r#"[{"id":"demo","name":"Demo","authorize_url":"http://127.0.0.1:9999/authorize",
            "token_url":"http://127.0.0.1:9999/token","revoke_url":"http://127.0.0.1:9999/revoke",
            "scopes":"files","client_id":"demo-client","extra_authorize_params":{"prompt":"none"},"pkce":true}]"#;
        let c = Catalogue::load(Some(json)).unwrap();
        let d = c.get("demo").unwrap();
        assert_eq!(d.token_url, "http://127.0.0.1:9999/token");
        assert_eq!(
            d.revoke_url.as_deref(),
            Some("http://127.0.0.1:9999/revoke")
        );
        assert_eq!(
            d.extra_authorize_params,
            vec![("prompt".to_string(), "none".to_string())]
        );
        assert_eq!(
            c.configured(|n| n == "CLIENT_SECRET_DEMO")
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>(),
            ["jottacloud", "demo"],
            "the public client needs no secret"
        );
    }

    #[test]
    fn oauth_providers_overrides_a_built_in_partially() {
        let c = Catalogue::load(Some(r#"[{"id":"box.com","client_id":"cid"}]"#)).unwrap();
        let b = c.get("box").unwrap();
        assert_eq!(b.client_id, "cid");
        assert_eq!(b.token_url, "https://api.box.com/oauth2/token");
    }

    #[test]
    fn bad_oauth_providers_is_rejected_with_a_reason() {
        let cases = [
            ("not json", "JSON array"),
            (r#"{"id":"x"}"#, "JSON array"),
            (r#"[{"id":"x"}]"#, "needs `name`"),
            (r#"[{"id":"Bad Id","name":"n"}]"#, "[a-z0-9._-]"),
            (
                r#"[{"id":"x","name":"n","authorize_url":"http://evil.example/a","token_url":"https://t","scopes":"","client_id":"c"}]"#,
                "https URL",
            ),
            (r#"[{"id":"x","surprise":1}]"#, "JSON array"),
        ];
        for (json, want) in cases {
            let err = Catalogue::load(Some(json)).unwrap_err();
            assert!(err.0.contains(want), "{json}: {}", err.0);
        }
    }

    #[test]
    fn pcloud_exchanges_at_the_host_its_callback_names_and_only_its_two_api_hosts() {
        let c = Catalogue::load(None).unwrap();
        let p = c.get("pcloud").unwrap();
        let us = p.token_endpoint(None).unwrap();
        assert_eq!(us.token_url, "https://api.pcloud.com/oauth2_token");
        assert_eq!(us.region, None);
        let eu = p.token_endpoint(Some("eapi.pcloud.com")).unwrap();
        assert_eq!(eu.token_url, "https://eapi.pcloud.com/oauth2_token");
        assert_eq!(eu.region.map(|r| r.region.as_str()), Some("EU"));
        let us = p.token_endpoint(Some("API.pcloud.com")).unwrap();
        assert_eq!(us.token_url, "https://api.pcloud.com/oauth2_token");
        assert_eq!(us.region.map(|r| r.region.as_str()), Some("US"));
        for forged in [
            "evil.example",
            "eapi.pcloud.com.evil.example",
            "127.0.0.1",
            "eapi.pcloud.com/../x",
            "https://eapi.pcloud.com",
        ] {
            assert_eq!(
                p.token_endpoint(Some(forged)),
                Err(UnknownRegion),
                "{forged}"
            );
        }
        assert_eq!(p.token_endpoint(Some(" ")).unwrap().region, None);
    }

    #[test]
    fn a_provider_without_regions_ignores_a_stray_hostname() {
        let c = Catalogue::load(None).unwrap();
        let b = c.get("box.com").unwrap();
        assert!(b.token_hosts.is_empty());
        let e = b.token_endpoint(Some("evil.example")).unwrap();
        assert_eq!(e.token_url, "https://api.box.com/oauth2/token");
        assert_eq!(e.region, None);
    }

    #[test]
    fn overriding_token_url_drops_the_built_in_regions_unless_given_again() {
        let c = Catalogue::load(Some(
            r#"[{"id":"pcloud","token_url":"http://127.0.0.1:9/token"}]"#,
        ))
        .unwrap();
        let p = c.get("pcloud").unwrap();
        assert!(p.token_hosts.is_empty());
        assert_eq!(
            p.token_endpoint(Some("eapi.pcloud.com")).unwrap().token_url,
            "http://127.0.0.1:9/token",
            "no regions left: the stray hostname is ignored, never fetched"
        );
        let c = Catalogue::load(Some(
            r#"[{"id":"pcloud","token_url":"http://127.0.0.1:9/token","token_hosts":[{"hostname":"eapi.pcloud.com","region":"EU","token_url":"http://127.0.0.1:9/eu/token"}]}]"#,
        ))
        .unwrap();
        let p = c.get("pcloud").unwrap();
        assert_eq!(
            p.token_endpoint(Some("eapi.pcloud.com")).unwrap().token_url,
            "http://127.0.0.1:9/eu/token"
        );
        assert_eq!(p.token_endpoint(Some("api.pcloud.com")), Err(UnknownRegion));
        let bad = Catalogue::load(Some(
            r#"[{"id":"pcloud","token_hosts":[{"hostname":"x","region":"X","token_url":"http://evil.example/t"}]}]"#,
        ));
        assert!(
            bad.is_err(),
            "regional URLs are https (http only on loopback)"
        );
    }
}
