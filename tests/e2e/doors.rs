//! Every door keeps the promise, as one table: each door of the route table
//! that mints, opens, refreshes, redeems, rotates or revokes a grant, under
//! every fault (the provider fails, times out or rotates; a D1 statement is
//! refused, or runs and its answer is lost; the client hangs up, retries at
//! once, or two clients come at once). For each cell that means something:
//! a fresh grant through the door's own path, the fault, the request, the
//! door's documented answer (`/refresh`: 502/504/500, never 503 for a
//! transient fault; OAuth 2.0: 5xx `temporarily_unavailable` + `Retry-After`;
//! a redemption answers from the login's sealed first answer), then, the fault
//! cleared: the grant still refreshes and no spent refresh token was ever
//! presented to the provider. The invariants: docs/storage.md "Redemption"
//! and "Concurrency".
//!
//! D1 faults come from the fault-injection build (`build-faults/`, cargo
//! feature `fault-injection`): `X-Broker-Fault: d1=<op>[@after]` fails the
//! named statement of that request before it runs, or after it ran.
//! `doors_every_route_of_the_table_has_a_row_or_a_reason` reads the route
//! table's source: a route added without a line in [`COVERAGE`] fails it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mock_provider::Config;
use serde_json::json;

use crate::akeeba::input_value;
use crate::harness::{
    duplicati_token, enc, extract_authid, extract_confirm, through_login, try_request_bytes,
    Broker, Jar, Options, Resp, ADMIN_API_KEY, LOOPBACK,
};
use crate::promise::code_at;

pub const TESTS: &[crate::Test] = tests![
    doors_every_route_of_the_table_has_a_row_or_a_reason => |_| doors_every_route_of_the_table_has_a_row_or_a_reason(),
    doors_refresh_keeps_the_promise_under_every_fault => |b| run_door(b, "refresh"),
    doors_token_endpoint_refresh_keeps_the_promise_under_every_fault => |b| run_door(b, "token_refresh"),
    doors_akeeba_refresh_keeps_the_promise_under_every_fault => |b| run_door(b, "akeeba_refresh"),
    doors_code_redemption_keeps_the_promise_under_every_fault => |b| run_door(b, "code_redemption"),
    doors_device_redemption_keeps_the_promise_under_every_fault => |b| run_door(b, "device_redemption"),
    doors_callback_keeps_the_promise_under_every_fault => |b| run_door(b, "callback"),
    doors_cli_token_login_keeps_the_promise_under_every_fault => |b| run_door(b, "cli_token_login"),
    doors_revoked_keeps_the_promise_under_every_fault => |b| run_door(b, "revoked"),
    doors_oauth_revoke_keeps_the_promise_under_every_fault => |b| run_door(b, "oauth_revoke"),
    doors_export_keeps_the_promise_under_every_fault => |b| run_door(b, "export"),
    doors_import_keeps_the_promise_under_every_fault => |b| run_door(b, "import"),
    doors_fetch_keeps_the_promise_under_every_fault => |b| run_door(b, "fetch"),
];

// ---------------------------------------------------------------------------
// Every route of the table appears here.

/// What the door table says about one row of `ROUTES`.
enum Covered {
    /// Checked by these doors' rows.
    Doors(&'static [&'static str]),
    /// The same handler as another row, whose doors check it.
    Alias(&'static str),
    /// Mints, opens, refreshes, redeems, rotates and revokes no grant: why.
    NotATokenDoor(&'static str),
}

use Covered::{Alias, Doors, NotATokenDoor};

/// Every row of `src/shell/routes/mod.rs` `ROUTES`, as `<Pattern> <path>`.
const COVERAGE: &[(&str, Covered)] = &[
    (
        "Exact /healthz",
        NotATokenDoor("liveness: no D1, no provider"),
    ),
    (
        "Exact /",
        NotATokenDoor("the index; `?token=` registers a hand-off that /fetch hands out"),
    ),
    ("Exact /fetch", Doors(&["fetch"])),
    (
        "Exact /token-state",
        NotATokenDoor("says whether /fetch collected a hand-off; reads only"),
    ),
    (
        "Exact /login",
        NotATokenDoor("starts a login; its grant is minted at /callback/"),
    ),
    (
        "Exact /cli-token",
        NotATokenDoor("the CLI-token form; /cli-token-login mints"),
    ),
    ("Exact /cli-token-login", Doors(&["cli_token_login"])),
    ("Exact /refresh", Doors(&["refresh"])),
    (
        "Exact /oauth/authorize",
        NotATokenDoor("starts a login; minted at /callback/, redeemed at /oauth/token"),
    ),
    (
        "Exact /oauth/device_authorization",
        NotATokenDoor("starts a device login; approved at /callback/, redeemed at /oauth/token"),
    ),
    (
        "Exact /device",
        NotATokenDoor("the verification page: starts the device's login at the provider"),
    ),
    (
        "Exact /handoff",
        NotATokenDoor("confirms a hand-off; /fetch hands the authid out"),
    ),
    (
        "Exact /revoke",
        NotATokenDoor("the revocation form; /revoked revokes"),
    ),
    ("Exact /revoked", Doors(&["revoked"])),
    (
        "Exact /admin",
        NotATokenDoor("the doctor's page: reads the configuration"),
    ),
    ("Exact /privacy", NotATokenDoor("a static page")),
    (
        "Exact /status",
        NotATokenDoor("reads a grant for its holder (a successor's first use takes over, as on /refresh); never refreshes or mints"),
    ),
    (
        "Exact /reauthorize",
        NotATokenDoor("starts a login; the grant is rewritten at /callback/ (same account only)"),
    ),
    (
        "Exact /admin/status",
        NotATokenDoor("the doctor: reads the configuration and each shard's migration level"),
    ),
    ("Exact /export", Doors(&["export"])),
    ("Exact /import", Doors(&["import"])),
    (
        "Exact /.well-known/oauth-authorization-server",
        NotATokenDoor("RFC 8414 metadata"),
    ),
    (
        "Prefix /.well-known/oauth-authorization-server/k/",
        NotATokenDoor("RFC 8414 metadata of a keyed issuer"),
    ),
    (
        "Exact /oauth/token",
        Doors(&["token_refresh", "code_redemption", "device_redemption"]),
    ),
    ("Exact /token", Alias("Exact /oauth/token")),
    ("Exact /oauth/revoke", Doors(&["oauth_revoke"])),
    (
        "Prefix /akeeba/",
        NotATokenDoor("Akeeba's helper: starts a login; minted at /callback/"),
    ),
    ("Tail /akeeba/", Doors(&["akeeba_refresh"])),
    ("Prefix /callback/", Doors(&["callback"])),
];

/// A `*_PATH` constant of the route table, resolved through the crate.
fn path_constant(name: &str) -> Option<&'static str> {
    use oauth_broker::oauth2::*;
    Some(match name {
        "AUTHORIZATION_PATH" => AUTHORIZATION_PATH,
        "DEVICE_AUTHORIZATION_PATH" => DEVICE_AUTHORIZATION_PATH,
        "METADATA_PATH" => METADATA_PATH,
        "METADATA_PATH_INSERTED_KEY" => METADATA_PATH_INSERTED_KEY,
        "REVOCATION_PATH" => REVOCATION_PATH,
        "TOKEN_ALIAS_PATH" => TOKEN_ALIAS_PATH,
        "TOKEN_PATH" => TOKEN_PATH,
        _ => return None,
    })
}

/// The rows of `ROUTES`, read from the route table's source (`ROUTES` itself
/// exists only in the wasm build): each `Exact(…)`, `Prefix(…)` or `Tail(…)`
/// after `pub static ROUTES`, its argument a string literal or a path constant.
fn routes_in_source(source: &str) -> Vec<String> {
    let table = source
        .split_once("pub static ROUTES")
        .map(|(_, t)| t)
        .expect("`pub static ROUTES` in src/shell/routes/mod.rs");
    let mut rows = Vec::new();
    for pattern in ["Exact", "Prefix", "Tail"] {
        let open = format!("{pattern}(");
        let mut rest = table;
        while let Some(at) = rest.find(&open) {
            // A whole word: `Exact(`, not `SomethingExact(`.
            let before = rest[..at].chars().last();
            rest = &rest[at + open.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let end = rest.find(')').expect("a closing parenthesis");
            let arg = rest[..end].trim();
            let path = match arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
                Some(literal) => literal.to_string(),
                None => path_constant(arg)
                    .unwrap_or_else(|| {
                        panic!("route table: resolve `{arg}` in doors.rs path_constant")
                    })
                    .to_string(),
            };
            rows.push(format!("{pattern} {path}"));
        }
    }
    rows
}

fn doors_every_route_of_the_table_has_a_row_or_a_reason() {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/shell/routes/mod.rs"),
    )
    .expect("src/shell/routes/mod.rs");
    let routes = routes_in_source(&source);
    assert!(routes.len() >= 20, "the parser found the table: {routes:?}");
    let mut problems = Vec::new();
    for r in &routes {
        if !COVERAGE.iter().any(|(k, _)| k == r) {
            problems.push(format!(
                "route `{r}` has no line in tests/e2e/doors.rs COVERAGE: give it door rows \
                 (DOORS) or say why it is not a token door"
            ));
        }
    }
    for (k, covered) in COVERAGE {
        if !routes.contains(&k.to_string()) {
            problems.push(format!("COVERAGE names `{k}`, which is not in ROUTES"));
        }
        match covered {
            Doors(names) => {
                for n in *names {
                    if !DOORS.iter().any(|d| d.name == *n) {
                        problems.push(format!("`{k}` names door `{n}`, which is not in DOORS"));
                    }
                }
            }
            Alias(of) => {
                if !COVERAGE
                    .iter()
                    .any(|(o, c)| o == of && matches!(c, Doors(_)))
                {
                    problems.push(format!("`{k}` is an alias of `{of}`, which has no doors"));
                }
            }
            NotATokenDoor(why) => assert!(!why.is_empty()),
        }
    }
    for d in DOORS {
        let used = COVERAGE
            .iter()
            .any(|(_, c)| matches!(c, Doors(names) if names.contains(&d.name)));
        if !used {
            problems.push(format!("door `{}` covers no route", d.name));
        }
        // Every cell of every door is decided, never left out.
        for f in FAULTS {
            let _ = (d.cells)(f);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// The faults.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The provider's token endpoint answers 500.
    Provider5xx,
    /// The provider's token endpoint answers after the broker's upstream
    /// timeout (`UPSTREAM_TIMEOUT_MS`, 3000 in the harness).
    ProviderTimeout,
    /// The provider rotates single-use refresh tokens (Box); every cell runs
    /// with that, this one is the plain request.
    ProviderRotates,
    /// The door's D1 read fails.
    D1Read,
    /// The door's claim (lease, spend, take, consume) is refused: nothing written.
    D1Claim,
    /// The door's claim runs, and its answer is lost.
    D1ClaimLost,
    /// The door's write is refused: nothing written.
    D1Write,
    /// The door's write runs, and its answer is lost.
    D1WriteLost,
    /// The client hangs up while the provider is still answering.
    HangUp,
    /// The client sends the same request again as soon as the first answered.
    RetryAtOnce,
    /// Two clients send the same request at the same moment.
    TwoAtOnce,
}

use Fault::*;

const FAULTS: [Fault; 11] = [
    Provider5xx,
    ProviderTimeout,
    ProviderRotates,
    D1Read,
    D1Claim,
    D1ClaimLost,
    D1Write,
    D1WriteLost,
    HangUp,
    RetryAtOnce,
    TwoAtOnce,
];

/// One cell of the table.
enum Cell {
    /// Run: every answer's status is one of these (`&[]`: the client hung up,
    /// no answer).
    Run(&'static [u16]),
    /// Means nothing for this door, and why.
    Skip(&'static str),
    /// Runs, and the broker is known to break the promise here (what breaks).
    /// The cell fails as soon as the promise holds, so the table is corrected
    /// with the fix.
    Broken(&'static [u16], &'static str),
}

use Cell::{Broken, Run, Skip};

/// The switches every cell starts from: single-use rotation (the strictest),
/// and access tokens of 30 s, under the broker's 60 s cache margin, so every
/// refresh goes to the provider.
fn base() -> Config {
    Config {
        access_token_ttl: 30,
        ..Config::default()
    }
}

/// The mock's switches while the fault is on.
fn provider_under(fault: Fault) -> Config {
    match fault {
        Provider5xx => Config {
            fail_status: Some(500),
            ..base()
        },
        // Past the broker's upstream timeout plus its write allowance (the
        // client's wait), well inside its patience (25 s).
        ProviderTimeout => Config {
            delay_ms: 6_000,
            ..base()
        },
        // The client hangs up after HANG_UP_AFTER, long before this.
        HangUp => Config {
            delay_ms: 2_500,
            ..base()
        },
        // Long enough that the two requests overlap.
        TwoAtOnce => Config {
            delay_ms: 1_500,
            ..base()
        },
        _ => base(),
    }
}

/// The D1 statement names a door's cells fail (`Db::statement`'s `op`), or
/// "" where the door has none (its cells are `Skip`).
struct Ops {
    read: &'static str,
    claim: &'static str,
    write: &'static str,
}

/// What each answer of a door looks like on failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Duplicati's and Akeeba's JSON: `error`, `error_description`, `X-Reason`.
    Api,
    /// RFC 6749 §5.2: `error`; transient 5xx `temporarily_unavailable` + `Retry-After`.
    OAuth,
    /// An HTML page.
    Page,
}

/// What a door's setup made: whatever its request and its checks need.
#[derive(Default, Clone)]
struct Subject {
    /// The door it was made for.
    door: &'static str,
    /// The grant's authid (known to the test from its login), if made yet.
    authid: String,
    /// A code, device code, fetch token or callback URL.
    secret: String,
    /// The browser's cookies, or the form's csrf value.
    cookie: String,
    csrf: String,
    /// The provider's revocation calls before the request.
    revokes: u64,
}

/// An answer, or `None` when the client hung up before one came.
type Answer = Option<Resp>;

/// A door's request: with `extra` headers (the fault), from a client that
/// waits `patience`.
type Act = fn(&Broker, &Subject, &[(&str, &str)], Duration) -> Answer;

struct Door {
    name: &'static str,
    shape: Shape,
    ops: Ops,
    /// A fresh grant (or code, or login) through the door's normal path.
    setup: fn(&Broker) -> Subject,
    act: Act,
    cells: fn(Fault) -> Cell,
    /// After the fault cleared: the promise holds.
    after: fn(&Broker, &Subject, &[Answer]),
}

const DOORS: &[Door] = &[
    Door {
        name: "refresh",
        shape: Shape::Api,
        ops: REFRESH_OPS,
        setup: login_grant,
        act: |b, s, extra, patience| {
            let mut h = vec![("X-AuthID", s.authid.as_str())];
            h.extend_from_slice(extra);
            send(b, "GET", "/refresh", &h, None, patience)
        },
        cells: refresh_cells,
        after: refresh_after,
    },
    Door {
        name: "token_refresh",
        shape: Shape::OAuth,
        ops: REFRESH_OPS,
        setup: login_grant,
        act: |b, s, extra, patience| {
            let body = format!("grant_type=refresh_token&refresh_token={}", enc(&s.authid));
            send(
                b,
                "POST",
                "/oauth/token",
                &form(extra),
                Some(&body),
                patience,
            )
        },
        cells: refresh_cells,
        after: refresh_after,
    },
    Door {
        name: "akeeba_refresh",
        shape: Shape::Api,
        ops: REFRESH_OPS,
        setup: akeeba_grant,
        act: |b, s, extra, patience| {
            let path = format!("/akeeba/box/refresh?refresh_token={}", enc(&s.authid));
            send(b, "GET", &path, extra, None, patience)
        },
        cells: refresh_cells,
        after: refresh_after,
    },
    Door {
        name: "code_redemption",
        shape: Shape::OAuth,
        ops: Ops {
            read: "code",
            claim: "redeem_code",
            write: "",
        },
        setup: authorization_code,
        act: |b, s, extra, patience| {
            let body = format!(
                "grant_type=authorization_code&code={}&client_id=demo&redirect_uri={}",
                enc(&s.secret),
                enc(LOOPBACK)
            );
            send(
                b,
                "POST",
                "/oauth/token",
                &form(extra),
                Some(&body),
                patience,
            )
        },
        cells: |f| match f {
            // Answered from the login's sealed first answer: no provider call.
            Provider5xx | ProviderTimeout => Run(&[200]),
            ProviderRotates => Skip(NO_PROVIDER_CALL),
            D1Read | D1Claim => Run(&[500]),
            // The spend committed, its answer lost: read back by its claim
            // id, it is this presentation's, which answers.
            D1ClaimLost => Run(&[200]),
            D1Write | D1WriteLost => {
                Skip("the spend is the redemption's only write: the claim cells")
            }
            HangUp => Skip(ANSWERS_AT_ONCE),
            RetryAtOnce | TwoAtOnce => Skip(
                "a second presentation of a redeemed code is a replay by definition \
                 (RFC 6749 §4.1.2): the grant is deleted (promise.rs checks it)",
            ),
        },
        after: redeem_after,
    },
    Door {
        name: "device_redemption",
        shape: Shape::OAuth,
        ops: Ops {
            read: "device",
            claim: "take_approved_device",
            write: "",
        },
        setup: approved_device,
        act: |b, s, extra, patience| {
            let body = format!(
                "grant_type={}&device_code={}&client_id=demo",
                enc(oauth_broker::oauth2::DEVICE_CODE_GRANT),
                enc(&s.secret)
            );
            send(
                b,
                "POST",
                "/oauth/token",
                &form(extra),
                Some(&body),
                patience,
            )
        },
        cells: |f| match f {
            Provider5xx | ProviderTimeout => Run(&[200]),
            ProviderRotates => Skip(NO_PROVIDER_CALL),
            D1Read | D1Claim => Run(&[500]),
            // The collection committed, its answer lost: read back by its
            // claim id, it is this poll's, which answers.
            D1ClaimLost => Run(&[200]),
            D1Write | D1WriteLost => {
                Skip("the take is the redemption's only write: the claim cells")
            }
            HangUp => Skip(ANSWERS_AT_ONCE),
            // Exactly one of the two gets the tokens (checked after).
            RetryAtOnce | TwoAtOnce => Run(&[200, 400]),
        },
        after: redeem_after,
    },
    Door {
        name: "callback",
        shape: Shape::Page,
        ops: Ops {
            read: "find_login",
            claim: "take_login",
            write: "insert_grant_if_absent",
        },
        setup: |b| {
            let (callback, cookie) = b.login_to_callback("/login?id=demo");
            Subject {
                secret: callback,
                cookie,
                ..Subject::default()
            }
        },
        act: |b, s, extra, patience| {
            let mut h = vec![("Cookie", s.cookie.as_str())];
            h.extend_from_slice(extra);
            let path = s
                .secret
                .strip_prefix(&b.base)
                .expect("a callback to the broker");
            send(b, "GET", path, &h, None, patience)
        },
        cells: |f| match f {
            Provider5xx => Run(&[502]),
            ProviderTimeout => Run(&[504]),
            ProviderRotates => Skip(MINTS),
            D1Read | D1Claim | D1ClaimLost | D1Write | D1WriteLost => Run(&[500]),
            HangUp => Run(&[]),
            // The state is single use: one result page, one 400 invalid_state.
            RetryAtOnce | TwoAtOnce => Run(&[200, 400]),
        },
        after: mint_after,
    },
    Door {
        name: "cli_token_login",
        shape: Shape::Page,
        ops: Ops {
            read: "",
            claim: "",
            write: "insert_grant_if_absent",
        },
        setup: |b| {
            let mut jar = Jar::default();
            let page = b.get_in(&mut jar, "/cli-token?id=jottacloud");
            assert_eq!(page.status, 200, "the CLI-token form: {}", page.body);
            Subject {
                csrf: hidden(&page.body, "csrf").expect("csrf field"),
                cookie: jar.header(),
                ..Subject::default()
            }
        },
        act: |b, s, extra, patience| {
            let cfg = Config::default();
            let token = cli_token(&cfg.password_username, &cfg.password);
            let body = format!("id=jottacloud&csrf={}&token={}", enc(&s.csrf), enc(&token));
            let mut h = form(extra);
            h.push(("Cookie", s.cookie.as_str()));
            send(b, "POST", "/cli-token-login", &h, Some(&body), patience)
        },
        cells: |f| match f {
            Provider5xx => Run(&[502]),
            ProviderTimeout => Run(&[504]),
            ProviderRotates => Skip(MINTS),
            D1Read | D1Claim | D1ClaimLost => {
                Skip("reads and claims nothing in D1: its form is bound by a cookie, never stored")
            }
            D1Write | D1WriteLost => Run(&[500]),
            HangUp => Run(&[]),
            // Each submission is a login of its own: two grants, both work.
            RetryAtOnce | TwoAtOnce => Run(&[200]),
        },
        after: mint_after,
    },
    Door {
        name: "revoked",
        shape: Shape::Page,
        ops: REVOKE_OPS,
        setup: login_grant,
        act: |b, s, extra, patience| {
            let body = format!("authid={}", enc(&s.authid));
            send(b, "POST", "/revoked", &form(extra), Some(&body), patience)
        },
        cells: |f| match f {
            RetryAtOnce | TwoAtOnce => Run(&[200, 401]),
            f => revoke_cells(f),
        },
        after: revoke_after,
    },
    Door {
        name: "oauth_revoke",
        shape: Shape::OAuth,
        ops: REVOKE_OPS,
        setup: login_grant,
        act: |b, s, extra, patience| {
            let body = format!("token={}", enc(&s.authid));
            send(
                b,
                "POST",
                "/oauth/revoke",
                &form(extra),
                Some(&body),
                patience,
            )
        },
        cells: |f| match f {
            // RFC 7009 §2.2: an unknown (already revoked) token is 200 too.
            RetryAtOnce | TwoAtOnce => Run(&[200]),
            f => revoke_cells(f),
        },
        after: revoke_after,
    },
    Door {
        name: "export",
        shape: Shape::Api,
        ops: Ops {
            read: "find_grant",
            claim: "",
            write: "",
        },
        setup: login_grant,
        act: |b, s, extra, patience| {
            let mut h = vec![("X-APIKey", ADMIN_API_KEY), ("X-AuthID", s.authid.as_str())];
            h.extend_from_slice(extra);
            send(b, "GET", "/export", &h, None, patience)
        },
        cells: |f| match f {
            Provider5xx | ProviderTimeout | ProviderRotates => Skip(NO_PROVIDER_CALL),
            D1Read => Run(&[500]),
            D1Claim | D1ClaimLost | D1Write | D1WriteLost => Skip("export only reads"),
            HangUp => Skip(NOTHING_SLOW),
            RetryAtOnce | TwoAtOnce => Run(&[200]),
        },
        after: |b, s, _| still_refreshes(b, &s.authid),
    },
    Door {
        name: "import",
        shape: Shape::Api,
        ops: Ops {
            read: "find_grant",
            claim: "",
            write: "insert_grant_if_absent",
        },
        setup: |b| {
            let mut grant = b.mock.issue_grant();
            grant["service"] = json!("demo");
            let authid = oauth_broker::authid::AuthId::generate(oauth_broker::ids::Shard::FIRST)
                .expect("an authid")
                .expose();
            b.remember(&authid);
            Subject {
                authid,
                secret: grant.to_string(),
                ..Subject::default()
            }
        },
        act: |b, s, extra, patience| {
            let mut h = vec![
                ("X-APIKey", ADMIN_API_KEY),
                ("X-AuthID", s.authid.as_str()),
                ("Content-Type", "application/json"),
            ];
            h.extend_from_slice(extra);
            send(b, "POST", "/import", &h, Some(&s.secret), patience)
        },
        cells: |f| match f {
            Provider5xx | ProviderTimeout | ProviderRotates => Skip(NO_PROVIDER_CALL),
            D1Read | D1Write | D1WriteLost => Run(&[500]),
            D1Claim | D1ClaimLost => Skip("an import takes no lease: it reads, then inserts"),
            HangUp => Skip(NOTHING_SLOW),
            // Under one authid, an import again replaces (200); two at once:
            // one inserts, the other finds the row (409 authid_exists) or replaces it.
            RetryAtOnce => Run(&[200]),
            TwoAtOnce => Run(&[200, 409]),
        },
        after: |b, s, answers| {
            if !answers.iter().flatten().any(|r| r.status == 200) {
                let again = act_of(b, "import", s, &[]);
                assert_eq!(again.status, 200, "the import retried: {}", again.body);
            }
            still_refreshes(b, &s.authid);
        },
    },
    Door {
        name: "fetch",
        shape: Shape::Api,
        ops: Ops {
            read: "handoff",
            claim: "collect_handoff",
            write: "",
        },
        setup: confirmed_handoff,
        act: |b, s, extra, patience| {
            let path = format!("/fetch?token={}", s.secret);
            send(b, "GET", &path, extra, None, patience)
        },
        cells: |f| match f {
            Provider5xx | ProviderTimeout | ProviderRotates => Skip(NO_PROVIDER_CALL),
            D1Read | D1Claim => Run(&[500]),
            // The collection committed, its answer lost: read back by its
            // claim id, it is this poll's, which answers.
            D1ClaimLost => Run(&[200]),
            D1Write | D1WriteLost => {
                Skip("collecting is the hand-off's only write: the claim cells")
            }
            HangUp => Skip(NOTHING_SLOW),
            // Exactly one answer carries the authid (checked after).
            RetryAtOnce | TwoAtOnce => Run(&[200]),
        },
        after: fetch_after,
    },
];

const REFRESH_OPS: Ops = Ops {
    read: "find_grant",
    claim: "claim_lease",
    write: "write_refreshed",
};

const REVOKE_OPS: Ops = Ops {
    read: "find_grant",
    claim: "",
    write: "revoke_grant",
};

const NO_PROVIDER_CALL: &str = "calls no provider token endpoint";
const MINTS: &str =
    "mints from a code exchange; a rotating refresh is the refresh doors' cell (the minted grant \
     is refreshed after, under rotation)";
const ANSWERS_AT_ONCE: &str =
    "answers at once, without a provider call: no moment to hang up in; a client that hangs up \
     after the spend lost the answer itself (for a code, its retry is a replay: RFC 6749 §4.1.2)";
const NOTHING_SLOW: &str =
    "nothing slow in it to hang up in: no provider token call (the mock delays only its token \
     endpoint)";

/// The refresh doors: the same token service behind three wire shapes.
fn refresh_cells(f: Fault) -> Cell {
    match f {
        Provider5xx => Run(&[502]),
        ProviderTimeout => Run(&[504]),
        ProviderRotates => Run(&[200]),
        // The lease, taken with the answer lost, is held until it expires (40 s):
        // the grant refreshes once it has.
        D1Read | D1Claim | D1ClaimLost => Run(&[500]),
        D1Write => Broken(
            &[200],
            "every write of the refreshed grant fails (3 tries): the access token is served, \
             the rotated single-use refresh token is not kept, and the next refresh presents \
             the spent one — the grant is lost",
        ),
        D1WriteLost => Run(&[200]),
        HangUp => Run(&[]),
        RetryAtOnce | TwoAtOnce => Run(&[200]),
    }
}

fn revoke_cells(f: Fault) -> Cell {
    match f {
        Provider5xx | ProviderTimeout => Skip(
            "the mock fails and delays only its token endpoint; a revocation calls its \
             revocation endpoint",
        ),
        ProviderRotates => Skip("a revocation refreshes nothing"),
        D1Read | D1Write => Run(&[500]),
        D1Claim | D1ClaimLost => Skip("a revocation takes no lease: it reads, then deletes"),
        // The provider is asked first, then the row deleted: a delete whose
        // answer is lost is read back gone, and the revocation is done.
        D1WriteLost => Run(&[200]),
        HangUp => Skip(NOTHING_SLOW),
        RetryAtOnce | TwoAtOnce => unreachable!("per door"),
    }
}

// ---------------------------------------------------------------------------
// Requests.

const FAULT_HEADER: &str = "X-Broker-Fault";

/// How long a hanging-up client waits.
const HANG_UP_AFTER: Duration = Duration::from_millis(500);

/// Generous: a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(150);

fn form<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(extra);
    h
}

fn send(
    b: &Broker,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    patience: Duration,
) -> Answer {
    match try_request_bytes(
        method,
        &b.url(path),
        headers,
        body.map(str::as_bytes),
        patience,
    ) {
        Ok(r) => Some(r),
        // The client with a short patience hung up.
        Err(_) if patience < PATIENCE => None,
        Err(e) => panic!("{e}"),
    }
}

/// The door's request without a fault, answered.
fn act_of(b: &Broker, door: &str, s: &Subject, extra: &[(&str, &str)]) -> Resp {
    let d = door_named(door);
    (d.act)(b, s, extra, PATIENCE).expect("an answer")
}

fn door_named(name: &str) -> &'static Door {
    DOORS
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no door {name}"))
}

// ---------------------------------------------------------------------------
// Setups.

fn login_grant(b: &Broker) -> Subject {
    let authid = b.login();
    Subject {
        authid,
        revokes: b.mock.stats().revoke_calls,
        ..Subject::default()
    }
}

/// Akeeba's helper (engine `box`, the built-in pointed at the mock): the
/// refresh token it shows is a stored authid.
fn akeeba_grant(b: &Broker) -> Subject {
    let page = through_login(b, &mut Jar::default(), "/akeeba/box");
    assert_eq!(page.status, 200, "the helper page: {}", page.body);
    let authid = input_value(&page.body, "refresh-token").expect("the refresh token shown");
    b.remember(&authid);
    Subject {
        authid,
        ..Subject::default()
    }
}

fn authorization_code(b: &Broker) -> Subject {
    Subject {
        secret: code_at(b, "demo"),
        ..Subject::default()
    }
}

fn approved_device(b: &Broker) -> Subject {
    // Each approval from an address of its own: the verification page's
    // per-address limit (RL_USER_CODE, 10 a minute) is not what is tested.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let ip = format!("198.51.{}.{}", 100 + n / 250, 1 + n % 250);
    let v = crate::device::device_start(b);
    let done = crate::device::approve(b, &ip, v["user_code"].as_str().expect("user_code"));
    assert_eq!(done.status, 200, "approved: {}", done.body);
    Subject {
        secret: v["device_code"].as_str().expect("device_code").to_string(),
        ..Subject::default()
    }
}

/// Duplicati's old UI: a registered token, a login carrying it, the user's
/// confirmation; `/fetch` now hands the authid out.
fn confirmed_handoff(b: &Broker) -> Subject {
    let token = duplicati_token();
    let mut popup = Jar::default();
    let (page, _) = b.handoff_login_in(&mut popup, &token);
    assert_eq!(page.status, 200, "{}", page.body);
    let authid = extract_authid(&page.body).expect("authid on the result page");
    b.remember(&authid);
    let confirm = extract_confirm(&page.body).expect("the confirmation form");
    let sent = b.post_form_in(&mut popup, "/handoff", &format!("confirm={confirm}"));
    assert_eq!(sent.status, 200, "{}", sent.body);
    Subject {
        authid,
        secret: token,
        ..Subject::default()
    }
}

/// A CLI token as Jottacloud shows it: base64url JSON.
fn cli_token(username: &str, auth_token: &str) -> String {
    use base64::Engine as _;
    let json = json!({
        "username": username,
        "realm": "jottacloud",
        "auth_token": auth_token,
    });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

/// A form's hidden `name` value.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

// ---------------------------------------------------------------------------
// After the fault: the promise holds.

/// The grant refreshes (at `/refresh`, through the provider: its access
/// tokens have 30 s, under the cache margin), waiting out a transient answer
/// (a lease held by a refresh still running, or by a claim whose answer was
/// lost, for at most its 40 s).
fn still_refreshes(b: &Broker, authid: &str) {
    b.mock.set_config(base());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = b.refresh(authid);
        if r.status == 200 {
            return;
        }
        assert!(
            [500, 502, 504].contains(&r.status) && Instant::now() < deadline,
            "the grant no longer refreshes: {} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn refresh_after(b: &Broker, s: &Subject, answers: &[Answer]) {
    // Akeeba's answer names the refresh token to present next.
    let next = answers
        .iter()
        .flatten()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json()["refresh_token"].as_str().map(str::to_string))
        .rfind(|t| !t.starts_with("mockRT_"));
    if let Some(n) = &next {
        b.remember(n);
    }
    still_refreshes(b, next.as_deref().unwrap_or(&s.authid));
}

/// A redemption: at most one answer carries tokens; if none did (the broker
/// failed), the client's retry is a first presentation and does; the authid
/// it carries refreshes.
fn redeem_after(b: &Broker, s: &Subject, answers: &[Answer]) {
    let issued: Vec<&Resp> = answers
        .iter()
        .flatten()
        .filter(|r| r.status == 200)
        .collect();
    assert!(issued.len() <= 1, "a code redeemed twice");
    for r in answers.iter().flatten().filter(|r| r.status == 400) {
        assert_eq!(r.json()["error"], "invalid_grant", "{}", r.body);
    }
    let authid = match issued.first() {
        Some(r) => r.json()["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string(),
        None => {
            let retried = act_of(b, s.door, s, &[]);
            assert_eq!(
                retried.status, 200,
                "the retry after a failure the broker caused is a first presentation: {}",
                retried.body
            );
            retried.json()["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_string()
        }
    };
    if answers.len() > 1 {
        assert_eq!(issued.len(), 1, "exactly one of the two gets the tokens");
    }
    b.remember(&authid);
    still_refreshes(b, &authid);
}

/// A minting door: every authid it showed refreshes; if it showed none, the
/// user starting again gets one that does.
fn mint_after(b: &Broker, s: &Subject, answers: &[Answer]) {
    let shown: Vec<String> = answers
        .iter()
        .flatten()
        .filter(|r| r.status == 200)
        .map(|r| extract_authid(&r.body).expect("an authid on the result page"))
        .collect();
    if answers.len() > 1 && s.door == "callback" {
        // The callback: the state is single use.
        assert_eq!(shown.len(), 1, "one result page for one login");
    }
    for a in &shown {
        b.remember(a);
        still_refreshes(b, a);
    }
    if shown.is_empty() {
        let d = door_named(s.door);
        let fresh = (d.setup)(b);
        let r = (d.act)(b, &fresh, &[], PATIENCE).expect("an answer");
        assert_eq!(r.status, 200, "starting again works: {}", r.body);
        let a = extract_authid(&r.body).expect("an authid on the result page");
        b.remember(&a);
        still_refreshes(b, &a);
    }
}

/// A revocation: a failed one is retried by its holder; then the grant is gone
/// here and the provider was asked to revoke it.
fn revoke_after(b: &Broker, s: &Subject, answers: &[Answer]) {
    let done = answers.iter().flatten().any(|r| r.status == 200);
    if !done {
        let again = act_of(b, s.door, s, &[]);
        assert_eq!(again.status, 200, "the revocation retried: {}", again.body);
    }
    let r = b.refresh(&s.authid);
    assert_eq!(r.status, 401, "a revoked grant is gone: {}", r.body);
    assert!(
        b.mock.stats().revoke_calls > s.revokes,
        "the provider was asked to revoke the grant"
    );
}

/// A hand-off: exactly one answer carries the authid (a failed one is polled
/// again), and the authid refreshes.
fn fetch_after(b: &Broker, s: &Subject, answers: &[Answer]) {
    let carried = answers
        .iter()
        .flatten()
        .filter(|r| r.status == 200 && r.json()["authid"].is_string())
        .count();
    assert!(carried <= 1, "a hand-off collected twice");
    if carried == 0 {
        let again = act_of(b, "fetch", s, &[]);
        // Compared, never printed: a known-broken cell prints its failure.
        let collected = again.json()["authid"].as_str() == Some(s.authid.as_str());
        let error = again.json()["error"].to_string();
        assert!(
            collected,
            "the next poll after a failure the broker caused collects the authid (error: {error})"
        );
    }
    still_refreshes(b, &s.authid);
}

// ---------------------------------------------------------------------------
// The runner.

/// The fault-injection worker every door test uses (each start costs
/// seconds), started by the first one.
static FAULTY: Mutex<Option<Arc<Broker>>> = Mutex::new(None);

fn faulty(b: &Broker) -> Arc<Broker> {
    let mut shared = FAULTY.lock().unwrap_or_else(|e| e.into_inner());
    let f = shared.get_or_insert_with(|| {
        Arc::new(Broker::start_with(
            &b.mock,
            Options {
                fault_build: true,
                ..Options::default()
            },
        ))
    });
    Arc::clone(f)
}

/// Stops the fault-injection worker (after the last test).
pub fn stop() {
    let f = FAULTY.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(f);
}

/// The `X-Broker-Fault` header of a D1 fault at `door`.
fn d1_plan(door: &Door, fault: Fault) -> Option<String> {
    let (op, after) = match fault {
        D1Read => (door.ops.read, false),
        D1Claim => (door.ops.claim, false),
        D1ClaimLost => (door.ops.claim, true),
        D1Write => (door.ops.write, false),
        D1WriteLost => (door.ops.write, true),
        _ => return None,
    };
    assert!(
        !op.is_empty(),
        "{} × {fault:?}: the door has no such statement: make the cell a Skip",
        door.name
    );
    Some(format!("d1={op}{}", if after { "@after" } else { "" }))
}

/// What every failing answer of the door looks like.
fn check_shape(door: &Door, r: &Resp) {
    if r.status < 500 {
        return;
    }
    assert_ne!(r.status, 503, "never 503 for a transient fault: {}", r.body);
    match door.shape {
        Shape::Api => {
            assert!(r.header("X-Reason").is_some(), "X-Reason: {}", r.body);
            assert!(r.json()["error"].is_string(), "error: {}", r.body);
            assert!(r.json()["error_description"].is_string(), "{}", r.body);
        }
        Shape::OAuth => {
            assert_eq!(
                r.json()["error"],
                "temporarily_unavailable",
                "RFC 6749 §5.2 transient: {}",
                r.body
            );
            assert!(r.header("Retry-After").is_some(), "Retry-After");
        }
        Shape::Page => assert!(
            r.header("Content-Type").is_some_and(|t| t.contains("html")),
            "an HTML page"
        ),
    }
}

/// One cell: setup, fault, request(s), answers, fault cleared, promise.
fn run_cell(b: &Broker, door: &Door, fault: Fault, expect: &[u16]) {
    b.mock.set_config(base());
    b.mock.reset_stats();
    let s = Subject {
        door: door.name,
        ..(door.setup)(b)
    };
    let plan = d1_plan(door, fault);
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = &plan {
        extra.push((FAULT_HEADER, p.as_str()));
    }
    b.mock.set_config(provider_under(fault));
    let answers: Vec<Answer> = match fault {
        HangUp => {
            let a = (door.act)(b, &s, &extra, HANG_UP_AFTER);
            assert!(a.is_none(), "the provider was slow: no answer in time");
            // The provider answers (and the broker finishes) on its own time.
            std::thread::sleep(Duration::from_millis(3_000));
            vec![a]
        }
        RetryAtOnce => {
            let first = (door.act)(b, &s, &extra, PATIENCE);
            let second = (door.act)(b, &s, &extra, PATIENCE);
            vec![first, second]
        }
        TwoAtOnce => std::thread::scope(|scope| {
            let one = scope.spawn(|| (door.act)(b, &s, &extra, PATIENCE));
            let two = scope.spawn(|| (door.act)(b, &s, &extra, PATIENCE));
            vec![
                one.join().expect("first client"),
                two.join().expect("second client"),
            ]
        }),
        _ => vec![(door.act)(b, &s, &extra, PATIENCE)],
    };
    b.mock.set_config(base());
    for a in &answers {
        match a {
            None => assert!(expect.is_empty(), "no answer"),
            Some(r) => {
                assert!(
                    expect.contains(&r.status),
                    "answered {} (the door's documented answer: {expect:?}): {}",
                    r.status,
                    r.body
                );
                check_shape(door, r);
            }
        }
    }
    (door.after)(b, &s, &answers);
    let reuse = b.mock.stats().spent_refresh_reuse;
    assert_eq!(reuse, 0, "a spent refresh token was presented again");
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Runs every cell of `name`'s row; fails naming each door × fault that broke
/// the promise (all of them, not only the first).
fn run_door(b: &Broker, name: &str) {
    let fb = faulty(b);
    let door = door_named(name);
    let mut failures = Vec::new();
    for fault in FAULTS {
        let cell = (door.cells)(fault);
        let (expect, broken) = match cell {
            Skip(why) => {
                println!("    {name} × {fault:?}: skip ({why})");
                continue;
            }
            Run(expect) => (expect, None),
            Broken(expect, why) => (expect, Some(why)),
        };
        let t = Instant::now();
        // The cell's panic message is printed below, naming door and fault;
        // the default hook's backtrace would only bury it.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = catch_unwind(AssertUnwindSafe(|| run_cell(&fb, door, fault, expect)));
        std::panic::set_hook(hook);
        let took = t.elapsed().as_secs_f64();
        match (outcome, broken) {
            (Ok(()), None) => println!("    {name} × {fault:?}: ok ({took:.1} s)"),
            (Err(e), None) => {
                let why = panic_text(&*e);
                println!("    {name} × {fault:?}: FAILED: {why}");
                failures.push(format!("{name} × {fault:?}: {why}"));
            }
            (Err(e), Some(known)) => println!(
                "    {name} × {fault:?}: KNOWN BROKEN ({known}); seen: {}",
                panic_text(&*e)
            ),
            (Ok(()), Some(known)) => failures.push(format!(
                "{name} × {fault:?}: the promise holds now; make the cell Run (was: {known})"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
