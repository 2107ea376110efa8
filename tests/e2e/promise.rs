//! Every door keeps the promise: no grant lost, no authid to the wrong party.
//! The OAuth 2.0 doors (authorization code, device code, refresh at the token
//! endpoint) against the real worker, each under the fault that used to break
//! it: a redemption is failure-atomic, only a second *successful* presentation
//! is a replay, a refresh is bound to its client's provider, and a login whose
//! authid goes to another party asks the provider for consent.

use mock_provider::Config;
use oauth_broker::digest::sha256_hex;

use crate::device::{approve, device_start, link, poll, post_device};
use crate::harness::{
    enc, mock_account, param, query_of, refresh_at_token_endpoint, request, through_login,
    token_endpoint, token_post, Broker, Jar, Options, Resp, CLIENT_ID, CLIENT_SECRET, LOOPBACK,
};

pub const TESTS: &[crate::Test] = tests![
    promise_a_code_redemption_answers_from_its_login_when_the_provider_fails_after_the_spend,
    promise_a_device_poll_answers_from_its_login_when_the_provider_fails_after_the_take,
    promise_a_presentation_refused_for_the_clients_own_mistake_spends_nothing,
    promise_an_expired_code_is_plain_invalid_grant_and_revokes_nothing,
    promise_a_true_replay_deletes_the_grant_and_calls_the_provider_only_where_that_ends_this_grant_alone,
    promise_a_refresh_naming_another_providers_client_id_is_invalid_grant,
    promise_every_login_whose_authid_goes_to_another_party_asks_the_provider_for_consent,
    promise_the_device_page_says_when_and_warns_and_its_confirmation_decides_only_its_own_code,
    promise_revoking_a_pass_through_token_revokes_it_at_the_provider_or_says_it_cannot,
    promise_akeeba_gets_a_new_authid_on_every_refresh_and_a_logged_one_dies_once_its_successor_is_used,
];

/// A fresh authorization code for `client_id` at the loopback client.
pub(crate) fn code_at(b: &Broker, client_id: &str) -> String {
    let r = through_login(
        b,
        &mut Jar::default(),
        &format!(
            "/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}",
            enc(LOOPBACK)
        ),
    );
    assert_eq!(r.status, 302, "callback: {}", r.body);
    let to = r.header("Location").expect("Location").to_string();
    let code = param(&query_of(&to), "code").expect("code").to_string();
    b.remember(&code);
    code
}

fn redeem_as(b: &Broker, code: &str, client_id: &str, redirect_uri: &str) -> Resp {
    token_post(
        b,
        &format!(
            "grant_type=authorization_code&code={}&client_id={client_id}&redirect_uri={}",
            enc(code),
            enc(redirect_uri)
        ),
    )
}

fn redeem(b: &Broker, code: &str) -> Resp {
    redeem_as(b, code, "demo", LOOPBACK)
}

/// The tokens of a 200 answer; the authid remembered for the leak scans.
fn tokens_of(b: &Broker, r: &Resp, what: &str) -> (String, String, i64) {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{what}");
    let t = r.json();
    let authid = b.remember_refresh_token(&t);
    (
        t["access_token"]
            .as_str()
            .expect("access_token")
            .to_string(),
        authid,
        t["expires_in"].as_i64().expect("expires_in"),
    )
}

fn assert_invalid_grant(r: &Resp, what: &str) -> String {
    assert_eq!(r.status, 400, "{what}: {}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant", "{what}: {}", r.body);
    r.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Access tokens the mock issued for code exchanges and refreshes, in order.
fn last_issued_access_token(b: &Broker) -> String {
    b.mock
        .stats()
        .issued_access_tokens
        .last()
        .expect("an access token was issued")
        .clone()
}

fn promise_a_code_redemption_answers_from_its_login_when_the_provider_fails_after_the_spend(
    b: &Broker,
) {
    // The login's access token has 30 s left: not enough for the cache (60 s),
    // so answering through a refresh would call the provider, which now fails.
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let code = code_at(b, "demo");
    let first = last_issued_access_token(b);
    let refreshes = b.mock.stats().refresh_calls;
    b.mock.set_config(Config {
        fail_status: Some(503),
        access_token_ttl: 30,
        ..Config::default()
    });
    let r = redeem(b, &code);
    let (access, authid, expires_in) = tokens_of(b, &r, "redeemed while the provider fails");
    assert_eq!(access, first, "the login's own access token");
    assert!(
        (1..=30).contains(&expires_in),
        "what it has left: {expires_in}"
    );
    assert_eq!(
        b.mock.stats().refresh_calls,
        refreshes,
        "the redemption made no provider call"
    );
    // Once the provider is back, the grant refreshes.
    b.mock.set_config(Config::default());
    let again = refresh_at_token_endpoint(b, &authid);
    assert_eq!(again.status, 200, "{}", again.body);
}

fn promise_a_device_poll_answers_from_its_login_when_the_provider_fails_after_the_take(b: &Broker) {
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let token = token_endpoint(b);
    let v = device_start(b);
    let device_code = v["device_code"].as_str().expect("device_code");
    let done = approve(
        b,
        "198.51.100.31",
        v["user_code"].as_str().expect("user_code"),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    let first = last_issued_access_token(b);
    b.mock.set_config(Config {
        fail_status: Some(503),
        access_token_ttl: 30,
        ..Config::default()
    });
    let got = poll(&token, device_code, "demo");
    let (access, authid, _) = tokens_of(b, &got, "collected while the provider fails");
    assert_eq!(access, first, "the login's own access token");
    b.mock.set_config(Config::default());
    let again = refresh_at_token_endpoint(b, &authid);
    assert_eq!(again.status, 200, "{}", again.body);
}

fn promise_a_presentation_refused_for_the_clients_own_mistake_spends_nothing(b: &Broker) {
    let code = code_at(b, "demo");
    let revokes = b.mock.stats().revoke_calls;
    assert_invalid_grant(
        &redeem_as(b, &code, "demo", "http://127.0.0.1:53682/other"),
        "another redirect_uri",
    );
    assert_invalid_grant(
        &redeem_as(b, &code, "box.com", LOOPBACK),
        "another client_id",
    );
    // The client corrects itself: its first successful presentation is the
    // redemption, not a replay.
    let r = redeem(b, &code);
    let (_, authid, _) = tokens_of(b, &r, "the corrected presentation");
    let refreshed = refresh_at_token_endpoint(b, &authid);
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(b.mock.stats().revoke_calls, revokes, "nothing revoked");
}

fn promise_an_expired_code_is_plain_invalid_grant_and_revokes_nothing(b: &Broker) {
    let code = code_at(b, "demo");
    let (_, authid, _) = tokens_of(b, &redeem(b, &code), "redeemed");
    let revokes = b.mock.stats().revoke_calls;
    // The row outlives its expiry until the purge: presented again then, it
    // is expired, not replayed.
    let h = sha256_hex(&format!("oauth-broker/v1/authorization-code|{code}"));
    b.d1(&format!(
        "UPDATE authorization_codes SET expires_at = 1 WHERE code_hash = '{h}'"
    ));
    let why = assert_invalid_grant(&redeem(b, &code), "expired code");
    assert!(why.contains("expired") && !why.contains("revoked"), "{why}");
    let still = refresh_at_token_endpoint(b, &authid);
    assert_eq!(still.status, 200, "the grant is kept: {}", still.body);
    assert_eq!(b.mock.stats().revoke_calls, revokes, "nothing revoked");
}

/// Replays a redeemed code of `client_id` on `b`: the grant is gone; the
/// provider's revocation calls the replay made.
fn replay_costs(b: &Broker, client_id: &str) -> u64 {
    let code = code_at(b, client_id);
    let (_, authid, _) = tokens_of(b, &redeem_as(b, &code, client_id, LOOPBACK), "redeemed");
    let revokes = b.mock.stats().revoke_calls;
    let why = assert_invalid_grant(&redeem_as(b, &code, client_id, LOOPBACK), "replayed");
    assert!(why.contains("revoked"), "{why}");
    assert_invalid_grant(
        &refresh_at_token_endpoint(b, &authid),
        "the replayed code's grant is deleted",
    );
    b.mock.stats().revoke_calls - revokes
}

fn promise_a_true_replay_deletes_the_grant_and_calls_the_provider_only_where_that_ends_this_grant_alone(
    b: &Broker,
) {
    // The mock's revocation ends one grant (RFC 7009 §2.1), the default for a
    // provider the operator adds.
    assert_eq!(replay_costs(b, "demo"), 1, "revoked at the provider");
    // Google's ends every grant the user gave the broker: never called on a
    // replay. (Its endpoints pointed at the mock, its revocation kept.)
    let g = Broker::start_with(
        &b.mock,
        Options {
            extra_providers: vec![format!(
                r#"{{"id":"googledrive","authorize_url":"{{m}}/authorize","token_url":"{{m}}/token","revoke_url":"{{m}}/revoke","client_id":"{CLIENT_ID}",{}}}"#,
                mock_account("googledrive")
            )],
            extra_vars: vec![("CLIENT_SECRET_GOOGLEDRIVE".into(), CLIENT_SECRET.into())],
            ..Options::default()
        },
    );
    assert_eq!(
        replay_costs(&g, "googledrive"),
        0,
        "never revoked at Google"
    );
}

fn promise_a_refresh_naming_another_providers_client_id_is_invalid_grant(b: &Broker) {
    let code = code_at(b, "demo");
    let (_, authid, _) = tokens_of(b, &redeem(b, &code), "redeemed");
    let refresh_as = |client_id: &str| {
        token_post(
            b,
            &format!(
                "grant_type=refresh_token&refresh_token={}&client_id={client_id}",
                enc(&authid)
            ),
        )
    };
    let why = assert_invalid_grant(
        &refresh_as("box.com"),
        "box.com's client with demo's authid",
    );
    assert!(why.contains("client_id"), "{why}");
    assert_eq!(refresh_as("demo").status, 200, "its own client_id");
    assert_eq!(
        refresh_at_token_endpoint(b, &authid).status,
        200,
        "no client_id: not needed on refresh"
    );
}

/// Whether a provider authorize URL asks for the consent page (the demo
/// provider's consent parameter is OpenID Connect's `prompt=consent`).
fn asks_consent(authorize_url: &str) -> bool {
    param(&query_of(authorize_url), "prompt") == Some("consent")
}

fn promise_every_login_whose_authid_goes_to_another_party_asks_the_provider_for_consent(
    b: &Broker,
) {
    // The browser's own login: no consent page forced.
    let own = b.get("/login?id=demo");
    assert_eq!(own.status, 302, "{}", own.body);
    assert!(!asks_consent(own.header("Location").expect("Location")));
    // The authorization endpoint: the authid goes to a client.
    let authorize = b.get(&format!(
        "/oauth/authorize?response_type=code&client_id=demo&redirect_uri={}",
        enc(LOOPBACK)
    ));
    assert_eq!(authorize.status, 302, "{}", authorize.body);
    assert!(asks_consent(
        authorize.header("Location").expect("Location")
    ));
    // The device flow: the authid goes to a device (RFC 8628 §5.4).
    let v = device_start(b);
    let ip = "198.51.100.32";
    let mut jar = Jar::default();
    let user_code = v["user_code"].as_str().expect("user_code");
    let ask = post_device(b, &mut jar, ip, &format!("user_code={user_code}"));
    let go = request(
        "GET",
        &b.url(&link(&ask.body, "approve")),
        &[("CF-Connecting-IP", ip), ("Cookie", &jar.header())],
        None,
    );
    assert_eq!(go.status, 302, "{}", go.body);
    assert!(asks_consent(go.header("Location").expect("Location")));
    // The old UI's hand-off already did.
    let token = crate::harness::duplicati_token();
    let mut handoff = Jar::default();
    let index = b.get_in(&mut handoff, &format!("/?token={token}"));
    assert_eq!(index.status, 200);
    let start = b.get_in(&mut handoff, &format!("/login?id=demo&token={token}"));
    assert_eq!(start.status, 302, "{}", start.body);
    assert!(asks_consent(start.header("Location").expect("Location")));
}

fn promise_the_device_page_says_when_and_warns_and_its_confirmation_decides_only_its_own_code(
    b: &Broker,
) {
    let ip = "198.51.100.33";
    let a = device_start(b);
    let bee = device_start(b);
    let code_a = a["user_code"].as_str().expect("user_code");
    let code_b = bee["user_code"].as_str().expect("user_code");
    let mut jar = Jar::default();
    let ask = post_device(b, &mut jar, ip, &format!("user_code={code_a}"));
    assert_eq!(ask.status, 200, "{}", ask.body);
    assert!(
        ask.body.contains("The code was requested at") && ask.body.contains(" UTC</strong>"),
        "says when: {}",
        ask.body
    );
    assert!(
        ask.body.contains("If someone sent you this code"),
        "warns against sent codes"
    );
    // The confirmation made for A, used for B in the same browser: refused,
    // and B is neither started nor denied.
    let approve_a = link(&ask.body, "approve");
    let shown_a = enc(code_a);
    assert!(approve_a.contains(&shown_a), "{approve_a}");
    for decision in ["approve", "deny"] {
        let for_b = approve_a
            .replace(&shown_a, &enc(code_b))
            .replace("decision=approve", &format!("decision={decision}"));
        let r = request(
            "GET",
            &b.url(&for_b),
            &[("CF-Connecting-IP", ip), ("Cookie", &jar.header())],
            None,
        );
        assert_eq!(
            r.status, 403,
            "{decision} B with A's confirmation: {}",
            r.body
        );
        assert_eq!(r.header("X-Error-Code"), Some("confirmation_mismatch"));
    }
    let h = sha256_hex(&format!(
        "oauth-broker/v1/device-code|{}",
        bee["device_code"].as_str().expect("device_code")
    ));
    let row = b.d1(&format!(
        "SELECT status FROM device_codes WHERE device_code_hash = '{h}'"
    ));
    assert_eq!(row[0]["status"], "pending", "B is untouched");
    // A's own confirmation still works.
    let go = request(
        "GET",
        &b.url(&approve_a),
        &[("CF-Connecting-IP", ip), ("Cookie", &jar.header())],
        None,
    );
    assert_eq!(go.status, 302, "{}", go.body);
}

fn revoke_at_front_door(b: &Broker, token: &str) -> Resp {
    request(
        "POST",
        &b.url("/oauth/revoke"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!("token={}", enc(token))),
    )
}

fn promise_revoking_a_pass_through_token_revokes_it_at_the_provider_or_says_it_cannot(b: &Broker) {
    let v2 = b.login_at("/login?id=demo&tokenversion=2");
    assert!(v2.starts_with("v2:demo:"), "a pass-through authid");
    assert_eq!(refresh_at_token_endpoint(b, &v2).status, 200, "it works");
    let revokes = b.mock.stats().revoke_calls;
    let r = revoke_at_front_door(b, &v2);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        b.mock.stats().revoke_calls,
        revokes + 1,
        "revoked at the provider"
    );
    assert_invalid_grant(
        &refresh_at_token_endpoint(b, &v2),
        "a revoked pass-through token no longer refreshes",
    );
    // A provider without a revocation endpoint: the token would keep working,
    // so the answer says it cannot be revoked here (RFC 7009 §2.2.1).
    let grant = b.mock.issue_grant();
    let rt = grant["refresh_token"].as_str().expect("refresh_token");
    let v2 = oauth_broker::authid::v2_authid(
        "jottacloud",
        &oauth_broker::secret::RefreshToken::new(rt.to_string()),
    );
    b.remember(&v2);
    let r = revoke_at_front_door(b, &v2);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "unsupported_token_type", "{}", r.body);
    assert_eq!(b.mock.stats().revoke_calls, revokes + 1, "nothing called");
}

/// Akeeba's refresh URL, as its connectors call it (the token in the query):
/// the answer's access and refresh token, or the failure's status and error.
fn akeeba_refresh(b: &Broker, rt: &str) -> Result<(String, String), (u16, String)> {
    let r = request(
        "GET",
        &b.url(&format!("/akeeba/box/refresh?refresh_token={}", enc(rt))),
        &[("Authorization", "Bearer old-access-token")],
        None,
    );
    let v = r.json();
    match (
        r.status,
        v["access_token"].as_str(),
        v["refresh_token"].as_str(),
    ) {
        (200, Some(at), Some(next)) => {
            b.remember(next);
            Ok((at.to_string(), next.to_string()))
        }
        _ => Err((
            r.status,
            v["error"].as_str().unwrap_or_default().to_string(),
        )),
    }
}

fn promise_akeeba_gets_a_new_authid_on_every_refresh_and_a_logged_one_dies_once_its_successor_is_used(
    b: &Broker,
) {
    // Every refresh goes upstream and rotates Box's single-use token.
    let busy = Config {
        access_token_ttl: 30,
        rotation: mock_provider::Rotation::SingleUse,
        ..Config::default()
    };
    b.mock.set_config(busy.clone());
    let mut jar = Jar::default();
    let (page, _) = b.login_in(&mut jar, "/akeeba/box");
    assert_eq!(page.status, 200, "{}", page.body);
    let logged = crate::akeeba::input_value(&page.body, "refresh-token")
        .expect("the helper shows the refresh token");
    b.remember(&logged);
    b.mock.reset_stats();

    // The profile's first refresh: a new authid comes back.
    let (_, lost) = akeeba_refresh(b, &logged).expect("first refresh");
    assert_ne!(lost, logged, "a successor");
    // Its answer was lost: the profile presents the old one again, which
    // still works and hands out another successor.
    let (_, kept) = akeeba_refresh(b, &logged).expect("the old one still works");
    assert!(kept != logged && kept != lost);
    // The profile keeps what it got and goes on; from then on the logged URL
    // is worthless, and so is the lost answer's successor (its sibling).
    let (_, next) = akeeba_refresh(b, &kept).expect("the successor works");
    assert_eq!(
        akeeba_refresh(b, &lost),
        Err((503, "authid_replaced".to_string())),
        "a sibling of the successor that was used"
    );
    assert_eq!(
        akeeba_refresh(b, &logged),
        Err((503, "authid_replaced".to_string())),
        "the logged authid, after its successor was used"
    );
    let d = request(
        "GET",
        &b.url("/refresh"),
        &[("X-AuthID", logged.as_str())],
        None,
    );
    assert_eq!(d.status, 503, "at every door: {}", d.body);
    assert!(d
        .header("X-Reason")
        .unwrap_or_default()
        .contains("replaced"));
    let (_, after) = akeeba_refresh(b, &next).expect("the chain goes on");

    // The same authid used by a second site (Duplicati's door) between two
    // Akeeba refreshes: the grant moved on (its single-use refresh token
    // rotated), and the successor follows it: it holds no copy, so its first
    // use takes over the grant as it is then, never a spent token. From then
    // on the second site's authid is replaced: two sites cannot share one.
    let (_, moved) = akeeba_refresh(b, &after).expect("refresh");
    let other = request(
        "GET",
        &b.url("/refresh"),
        &[("X-AuthID", after.as_str())],
        None,
    );
    assert_eq!(other.status, 200, "{}", other.body);
    let shared = after;
    let (_, after) = akeeba_refresh(b, &moved).expect("the successor follows the grant");
    let second_site = request(
        "GET",
        &b.url("/refresh"),
        &[("X-AuthID", shared.as_str())],
        None,
    );
    assert_eq!(second_site.status, 503, "{}", second_site.body);
    assert!(second_site
        .header("X-Reason")
        .unwrap_or_default()
        .contains("replaced"));

    // Two refreshes at once (two backups of one profile) each hand out a
    // successor while the grant stands still (here: its cached access token
    // answers both, so nothing moves it on). The profile keeps whichever
    // answer it wrote last, so both must work until one is used; then the
    // other is replaced, as the predecessor is.
    b.mock.set_config(Config {
        access_token_ttl: 3600,
        ..busy.clone()
    });
    let (_, mut warm) = akeeba_refresh(b, &after).expect("refresh");
    for keep_first in [true, false] {
        let (_, one) = akeeba_refresh(b, &warm).expect("first of two");
        let (_, two) = akeeba_refresh(b, &warm).expect("second of two");
        assert!(one != two && one != warm && two != warm);
        let (kept, other) = if keep_first { (one, two) } else { (two, one) };
        let (_, next) = akeeba_refresh(b, &kept)
            .unwrap_or_else(|e| panic!("the kept one works (first: {keep_first}): {e:?}"));
        assert_eq!(
            akeeba_refresh(b, &other),
            Err((503, "authid_replaced".to_string())),
            "its sibling, once the kept one was used (first: {keep_first})"
        );
        assert_eq!(
            akeeba_refresh(b, &warm),
            Err((503, "authid_replaced".to_string())),
            "their predecessor"
        );
        warm = next;
    }
    akeeba_refresh(b, &warm).expect("the chain goes on");
    let s = b.mock.stats();
    assert_eq!(
        s.spent_refresh_reuse, 0,
        "no spent token ever went upstream"
    );
    b.mock.set_config(Config::default());
}
