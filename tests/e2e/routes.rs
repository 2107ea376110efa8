//! The route table seen from outside: for every route, the methods it answers
//! (a 405 naming them in `Allow` for any other), whether its errors are HTML
//! pages or JSON, whether it counts against the per-IP rate limit, and whether
//! it sits behind the operator's access gate. One table here, mirroring the
//! worker's, so a route that drifts from its row fails by name.

use crate::harness::{in_one_rate_limit_window, request, request_bytes, Broker, Options, Resp};

pub const TESTS: &[crate::Test] = tests![
    a_wrong_method_gets_405_with_the_routes_allow_header_on_its_surface,
    only_gated_routes_ask_for_the_access_key_and_only_limited_routes_count_against_the_per_ip_limit,
    a_bad_body_on_a_page_route_gets_an_html_error_page,
];

/// Who reads a route's errors: a person in a browser (HTML) or a program (JSON).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Surface {
    Page,
    Api,
}

struct Route {
    /// The path requested (for the `/callback/<provider>` prefix: one provider).
    path: &'static str,
    /// The methods it answers, in the order `Allow` lists them.
    methods: &'static [&'static str],
    surface: Surface,
    ip_limited: bool,
    gated: bool,
}

use Surface::{Api, Page};

#[rustfmt::skip]
const ROUTES: &[Route] = &[
    Route { path: "/healthz", methods: &["GET", "HEAD"], surface: Api, ip_limited: false, gated: false },
    Route { path: "/", methods: &["GET", "HEAD"], surface: Page, ip_limited: true, gated: false },
    Route { path: "/fetch", methods: &["GET"], surface: Api, ip_limited: true, gated: false },
    Route { path: "/token-state", methods: &["GET"], surface: Api, ip_limited: true, gated: false },
    Route { path: "/login", methods: &["GET"], surface: Page, ip_limited: true, gated: true },
    Route { path: "/cli-token", methods: &["GET"], surface: Page, ip_limited: true, gated: true },
    Route { path: "/cli-token-login", methods: &["POST"], surface: Page, ip_limited: true, gated: true },
    Route { path: "/refresh", methods: &["GET", "POST"], surface: Api, ip_limited: true, gated: true },
    Route { path: "/handoff", methods: &["POST"], surface: Page, ip_limited: true, gated: false },
    Route { path: "/revoke", methods: &["GET"], surface: Page, ip_limited: false, gated: false },
    Route { path: "/revoked", methods: &["POST"], surface: Page, ip_limited: true, gated: false },
    Route { path: "/admin", methods: &["GET", "POST"], surface: Page, ip_limited: true, gated: false },
    Route { path: "/privacy", methods: &["GET"], surface: Page, ip_limited: false, gated: false },
    // A page; JSON when the request names its authid in X-AuthID (tests/e2e/grant_life.rs).
    Route { path: "/status", methods: &["GET", "POST"], surface: Page, ip_limited: true, gated: false },
    Route { path: "/reauthorize", methods: &["GET", "POST"], surface: Page, ip_limited: true, gated: false },
    Route { path: "/admin/status", methods: &["GET"], surface: Api, ip_limited: true, gated: false },
    Route { path: "/export", methods: &["GET"], surface: Api, ip_limited: true, gated: false },
    Route { path: "/import", methods: &["POST"], surface: Api, ip_limited: true, gated: false },
    Route { path: "/callback/demo", methods: &["GET"], surface: Page, ip_limited: true, gated: false },
    // The OAuth 2.0 front door: JSON. The token endpoint reads the gate itself
    // (the key may be the client_secret); see tests/e2e/oauth_token.rs and gate.rs.
    Route { path: "/.well-known/oauth-authorization-server", methods: &["GET", "HEAD"], surface: Api, ip_limited: false, gated: false },
    // RFC 8414 §3.1's location for the issuer `<origin>/k/key-one`: its key is
    // checked by the handler (the gate test's broker has `key-one`).
    Route { path: "/.well-known/oauth-authorization-server/k/key-one", methods: &["GET", "HEAD"], surface: Api, ip_limited: true, gated: false },
    // Reads the gate itself, like the token endpoint (the key may be the client_secret).
    Route { path: "/oauth/device_authorization", methods: &["POST"], surface: Api, ip_limited: true, gated: false },
    Route { path: "/oauth/token", methods: &["POST"], surface: Api, ip_limited: true, gated: false },
    Route { path: "/token", methods: &["POST"], surface: Api, ip_limited: true, gated: false },
    Route { path: "/oauth/revoke", methods: &["POST"], surface: Api, ip_limited: true, gated: false },
];

/// What a response's Content-Type says about its surface.
fn surface_of(r: &Resp) -> Option<Surface> {
    let ct = r.header("Content-Type").unwrap_or("");
    if ct.starts_with("text/html") {
        Some(Page)
    } else if ct.starts_with("application/json") {
        Some(Api)
    } else {
        None
    }
}

/// One request with `method` and no headers; methods that carry a body send an empty one.
fn send(b: &Broker, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let body = matches!(method, "POST" | "PUT").then_some("");
    request(method, &b.url(path), headers, body)
}

/// Panics listing every problem (so one run shows all the routes that drift).
fn assert_none(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

fn a_wrong_method_gets_405_with_the_routes_allow_header_on_its_surface(b: &Broker) {
    let mut problems = Vec::new();
    for route in ROUTES {
        let allow = route.methods.join(", ");
        for method in ["PUT", "DELETE"] {
            let what = format!("{method} {}", route.path);
            let r = send(b, method, route.path, &[]);
            if r.status != 405 {
                problems.push(format!("{what}: status {} (want 405)", r.status));
                continue;
            }
            if r.header("X-Error-Code") != Some("method_not_allowed") {
                problems.push(format!(
                    "{what}: X-Error-Code {:?}",
                    r.header("X-Error-Code")
                ));
            }
            if r.header("Allow") != Some(allow.as_str()) {
                problems.push(format!(
                    "{what}: Allow {:?} (want {allow:?})",
                    r.header("Allow")
                ));
            }
            if surface_of(&r) != Some(route.surface) {
                problems.push(format!(
                    "{what}: Content-Type {:?} (want {:?})",
                    r.header("Content-Type"),
                    route.surface
                ));
            } else if route.surface == Api && r.json()["error"] != "method_not_allowed" {
                problems.push(format!("{what}: JSON error {}", r.json()["error"]));
            }
        }
    }
    // Paths outside the table, including neighbours of its rows, stay JSON 404s.
    for path in [
        "/nope",
        "/callback",
        "/login/extra",
        "/callback/demo/extra",
        "/callback//callback/demo",
    ] {
        for method in ["GET", "PUT"] {
            let what = format!("{method} {path}");
            let r = send(b, method, path, &[]);
            if r.status != 404 || r.header("X-Error-Code") != Some("not_found") {
                problems.push(format!(
                    "{what}: {} {:?} (want 404 not_found)",
                    r.status,
                    r.header("X-Error-Code")
                ));
            } else if surface_of(&r) != Some(Api) || r.json()["error"] != "not_found" {
                problems.push(format!(
                    "{what}: not a JSON not_found: {:?}",
                    r.header("Content-Type")
                ));
            }
        }
    }
    assert_none(problems);
}

/// Gate and limit share one worker (each start costs seconds), so the order is
/// deliberate. The gate is probed first, while the limiter is fresh: the 16
/// limited probes that phase makes stay below the limit of 24, so no gate answer
/// can be a 429 instead, whichever of the two checks the worker runs first.
/// Then the limit is exhausted with /fetch and every route probed with the
/// access key, so the gate cannot answer in the limiter's place either.
fn only_gated_routes_ask_for_the_access_key_and_only_limited_routes_count_against_the_per_ip_limit(
    b: &Broker,
) {
    const KEY: &str = "key-one";
    const LIMIT: u32 = 24;
    let w = Broker::start_with(
        &b.mock,
        Options {
            extra_vars: vec![("ACCESS_KEYS".into(), KEY.into())],
            per_ip_limit: LIMIT,
            ..Default::default()
        },
    );
    let mut problems = Vec::new();

    // The gate: every route with its first method, without a key.
    for route in ROUTES {
        let method = route.methods[0];
        let what = format!("{method} {} without a key", route.path);
        let r = send(&w, method, route.path, &[]);
        let code = r.header("X-Error-Code");
        if route.gated {
            if r.status != 403 || code != Some("access_key_required") {
                problems.push(format!(
                    "{what}: {} {code:?} (want 403 access_key_required)",
                    r.status
                ));
            } else if surface_of(&r) != Some(route.surface) {
                problems.push(format!(
                    "{what}: Content-Type {:?} (want {:?})",
                    r.header("Content-Type"),
                    route.surface
                ));
            }
            // ...and the key lets the same request past the gate.
            let keyed = send(&w, method, route.path, &[("X-Access-Key", KEY)]);
            if keyed.header("X-Error-Code") == Some("access_key_required") {
                problems.push(format!("{method} {} with the key: still gated", route.path));
            }
        } else if code == Some("access_key_required") {
            problems.push(format!(
                "{what}: asks for the access key (not a gated route)"
            ));
        }
    }

    // The per-IP limit: exhaust it, then probe every route. Run in one window of
    // the local limiter, so a window that ends mid-run cannot refill the budget.
    let (exhausted, probes) = in_one_rate_limit_window(|| {
        let exhausted = (0..3 * LIMIT).any(|_| w.get("/fetch?token=abc").status == 429);
        let probes: Vec<Resp> = ROUTES
            .iter()
            .map(|route| send(&w, route.methods[0], route.path, &[("X-Access-Key", KEY)]))
            .collect();
        (exhausted, probes)
    });
    assert!(
        exhausted,
        "GET /fetch never hit the per-IP limit of {LIMIT}"
    );
    for (route, r) in ROUTES.iter().zip(&probes) {
        let what = format!("{} {} over the limit", route.methods[0], route.path);
        if route.ip_limited {
            let retry_after = r.header("Retry-After").and_then(|v| v.parse::<u32>().ok());
            if r.status != 429 || r.header("X-Error-Code") != Some("rate_limited") {
                problems.push(format!(
                    "{what}: {} {:?} (want 429 rate_limited)",
                    r.status,
                    r.header("X-Error-Code")
                ));
            } else if retry_after.is_none_or(|s| s == 0) {
                problems.push(format!("{what}: Retry-After {:?}", r.header("Retry-After")));
            } else if surface_of(r) != Some(route.surface) {
                problems.push(format!(
                    "{what}: Content-Type {:?} (want {:?})",
                    r.header("Content-Type"),
                    route.surface
                ));
            }
        } else if r.status == 429 {
            problems.push(format!("{what}: 429 (not a limited route)"));
        }
    }
    drop(w);
    assert_none(problems);
}

fn a_bad_body_on_a_page_route_gets_an_html_error_page(b: &Broker) {
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let cases: [(&str, Vec<u8>, &str); 2] = [
        ("a body that is not UTF-8", vec![0xff, 0xfe], "bad_body"),
        (
            "a 17 KiB body",
            [b"authid=".as_slice(), &[b'a'; 17 * 1024]].concat(),
            "body_too_large",
        ),
    ];
    let mut problems = Vec::new();
    for (what, body, code) in &cases {
        let r = request_bytes("POST", &b.url("/revoked"), &form, Some(body));
        if r.status != 400 || r.header("X-Error-Code") != Some(*code) {
            problems.push(format!(
                "POST /revoked with {what}: {} {:?} (want 400 {code})",
                r.status,
                r.header("X-Error-Code")
            ));
        } else if surface_of(&r) != Some(Page) {
            problems.push(format!(
                "POST /revoked with {what}: Content-Type {:?} (want an HTML page)",
                r.header("Content-Type")
            ));
        }
    }
    assert_none(problems);
}
