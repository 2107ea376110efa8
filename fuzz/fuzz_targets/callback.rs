//! Callback parameters and cookies against a real started login: never panics,
//! and nothing but the login's own state and cookie passes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth_broker::login;
use oauth_broker::providers::Catalogue;
use oauth_broker::request;
use oauth_broker::secret::StateToken;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let (query, cookie) = s.split_once('\n').unwrap_or((&s, ""));
    let json = r#"[{"id":"demo","name":"D","authorize_url":"https://a.example/auth",
        "token_url":"https://a.example/token","scopes":"x","client_id":"c"}]"#;
    let Ok(cat) = Catalogue::load(Some(json)) else {
        return;
    };
    let Some(p) = cat.get("demo") else { return };
    let Ok(started) = login::start(p, "https://broker.example", 1, None, login::LoginEnding::ResultPage, 0) else {
        return;
    };
    let params = request::parse_params(query);
    let state = match request::single(&params, "state") {
        Ok(Some(v)) => StateToken::new(v.to_string()),
        _ => return,
    };
    let cookie = login::cookie_from_header(cookie);
    let ok = login::verify_callback(Some(&started.record), "demo", &state, cookie.as_ref(), 1);
    if ok.is_ok() {
        assert_eq!(cookie.as_ref(), Some(&started.binding));
    }
});
