//! The pages a person reads, in headless Chromium at a desktop width (1280 CSS
//! px) and a phone's (390): every authid and ready-to-paste line shows every
//! character (underscores included) without being cut off, no page scrolls
//! sideways, each copy button puts exactly its value on the real clipboard
//! (read back with the `clipboard-read` permission granted through
//! WebDriver), the rclone line copied from the page works with Debian's
//! rclone, and an error page offers the one next step that helps.

use std::process::Command;
use std::time::{Duration, Instant};

use mock_provider::Config;
use serde_json::{json, Value};

use crate::browser::{wait_until, Driver};
use crate::harness::Broker;

pub const TESTS: &[crate::Test] = tests![
    pages_authid_fields_show_every_character_and_underscores_at_1280_and_390_px,
    pages_copy_buttons_copy_exactly_the_authid_and_each_paste_line_and_the_rclone_line_works,
    pages_akeeba_helper_page_and_every_form_fit_390_px_without_sideways_scrolling,
    pages_an_error_page_names_what_happened_its_code_and_the_one_next_step,
];

/// A desktop window and a phone held upright (as `gate.rs`).
const WIDTHS: [(u32, u32); 2] = [(1280, 900), (390, 844)];

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The longest authid spelling the broker mints (shard tag, 32 hex, 43
/// base64url characters), full of underscores.
const LONG_AUTHID: &str =
    "s12:0123456789abcdef0123456789abcdef:a_b_c_d_e_f_g_h_i_j_k_l_m_n_o_p_q_r_s_t_u_v_w";

fn element(driver: &Driver, css: &str) -> String {
    driver.call(
        "POST",
        "/element",
        Some(json!({"using": "css selector", "value": css})),
    )[ELEMENT]
        .as_str()
        .unwrap_or_else(|| panic!("no element {css}"))
        .to_string()
}

fn exec(driver: &Driver, script: &str, args: Value) -> Value {
    driver.call(
        "POST",
        "/execute/sync",
        Some(json!({ "script": script, "args": args })),
    )
}

/// Opens `url` and waits until the page holds `marker`.
fn open(driver: &Driver, url: &str, marker: &str) {
    driver.goto(url);
    wait_until(&format!("{url} shows {marker}"), || {
        driver.source().contains(marker).then_some(())
    });
}

/// Every shown or typed value (`.authid`, `.paste`) whose content is wider
/// or taller than its box (cut off or hidden behind a scroll bar), and the
/// page itself if it is wider than the window (sideways scrolling).
fn overflowing(driver: &Driver) -> Vec<String> {
    let v = exec(
        driver,
        "var out = [];\
         document.querySelectorAll('.authid,.paste').forEach(function (e) {\
           if (e.scrollWidth > e.clientWidth || e.scrollHeight > e.clientHeight)\
             out.push((e.id || e.tagName) + ' ' + e.scrollWidth + 'x' + e.scrollHeight +\
               ' in ' + e.clientWidth + 'x' + e.clientHeight);\
         });\
         var w = document.documentElement.scrollWidth;\
         if (w > window.innerWidth) out.push('the page: ' + w + ' px in ' + window.innerWidth);\
         return out;",
        json!([]),
    );
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The field at `css` shows `LONG_AUTHID` whole, and an underscore is drawn
/// at all: its picture holding only underscores differs from its empty
/// picture (at `line-height: normal` the glyph fell below the box, and the
/// two were the same). Restores the field's value.
fn assert_shows_underscores_and_long_authids(driver: &Driver, css: &str, what: &str) {
    let e = element(driver, css);
    let el = json!({ ELEMENT: e });
    let before = exec(
        driver,
        "var v = arguments[0].value; arguments[0].blur(); \
         window.getSelection().removeAllRanges(); return v;",
        json!([el]),
    );
    let shot = |value: &str| {
        exec(
            driver,
            "arguments[0].value = arguments[1];",
            json!([el, value]),
        );
        driver.call("GET", &format!("/element/{e}/screenshot"), None)
    };
    let empty = shot("");
    let underscores = shot("__________");
    assert_ne!(
        empty, underscores,
        "{what}: underscores are invisible in {css}"
    );
    shot(LONG_AUTHID);
    let cut = overflowing(driver);
    assert!(cut.is_empty(), "{what}: cut off: {cut:?}");
    let style = exec(
        driver,
        "var s = getComputedStyle(arguments[0]);\
         return [parseFloat(s.lineHeight) || 0, parseFloat(s.fontSize)];",
        json!([el]),
    );
    let (line, font) = (
        style[0].as_f64().unwrap_or(0.0),
        style[1].as_f64().unwrap_or(1.0),
    );
    assert!(
        line >= 1.4 * font,
        "{what}: {css} line-height {line} px for a {font} px font"
    );
    exec(
        driver,
        "arguments[0].value = arguments[1];",
        json!([el, before]),
    );
}

/// Logs in at `provider` in the browser and returns the authid the result
/// page shows.
fn browser_login(driver: &Driver, b: &Broker, provider: &str) -> String {
    driver.goto(&b.url(&format!("/login?id={provider}")));
    driver.wait_for_url(&format!("/callback/{provider}"));
    let authid = driver.value("#authid");
    b.remember(&authid);
    assert!(authid.contains(':'), "an authid: {authid}");
    authid
}

fn pages_authid_fields_show_every_character_and_underscores_at_1280_and_390_px(b: &Broker) {
    let driver = Driver::start(&b.dir);
    for (width, height) in WIDTHS {
        driver.set_window_size(width, height);
        let what = format!("{width} px");
        // Shown: the result page's authid and its paste lines.
        let authid = browser_login(&driver, b, "box.com");
        assert_eq!(driver.inner_width(), u64::from(width));
        let cut = overflowing(&driver);
        assert!(cut.is_empty(), "{what}: the result page cuts off {cut:?}");
        for css in ["#authid", "#paste-duplicati", "#paste-rclone"] {
            assert_shows_underscores_and_long_authids(&driver, css, &what);
        }
        assert_eq!(driver.value("#authid"), authid, "{what}: restored");
        // Typed: the revoke form's field, as a person types it.
        open(&driver, &b.url("/revoke"), "id=\"authid\"");
        driver.type_into("#authid", LONG_AUTHID);
        assert_eq!(driver.value("#authid"), LONG_AUTHID);
        let cut = overflowing(&driver);
        assert!(cut.is_empty(), "{what}: the revoke form cuts off {cut:?}");
        assert_shows_underscores_and_long_authids(&driver, "#authid", &what);
    }
}

/// The clipboard's text, read the way a page reads it (the `clipboard-read`
/// permission is granted to the broker's origin).
fn clipboard(driver: &Driver) -> String {
    let v = driver.call(
        "POST",
        "/execute/async",
        Some(json!({
            "script": "var done = arguments[arguments.length - 1];\
                       navigator.clipboard.readText().then(done,\
                         function (e) { done('clipboard unreadable: ' + e); });",
            "args": []
        })),
    );
    v.as_str().unwrap_or_default().to_string()
}

fn set_clipboard(driver: &Driver, text: &str) {
    let v = driver.call(
        "POST",
        "/execute/async",
        Some(json!({
            "script": "var done = arguments[arguments.length - 1];\
                       navigator.clipboard.writeText(arguments[0]).then(\
                         function () { done('ok'); }, function (e) { done('' + e); });",
            "args": [text]
        })),
    );
    assert_eq!(v, json!("ok"), "the test can write the clipboard");
}

/// Grants the current page's origin the clipboard (W3C Permissions
/// "Set Permission", which ChromeDriver implements).
fn grant_clipboard(driver: &Driver) {
    for name in ["clipboard-read", "clipboard-write"] {
        driver.call(
            "POST",
            "/permissions",
            Some(json!({"descriptor": {"name": name}, "state": "granted"})),
        );
    }
}

/// Clicks `button` and returns what it put on the clipboard (a sentinel
/// first, so a button that copies nothing is caught).
fn copied_by(driver: &Driver, button: &str) -> String {
    set_clipboard(driver, "nothing was copied");
    driver.click(button);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = clipboard(driver);
        if got != "nothing was copied" || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pages_copy_buttons_copy_exactly_the_authid_and_each_paste_line_and_the_rclone_line_works(
    b: &Broker,
) {
    let driver = Driver::start(&b.dir);
    let mut rclone_line = String::new();
    let mut last_authid = String::new();
    for (width, height) in WIDTHS {
        driver.set_window_size(width, height);
        let authid = browser_login(&driver, b, "box.com");
        grant_clipboard(&driver);
        assert_eq!(
            copied_by(&driver, "#copy"),
            authid,
            "{width} px: the authid"
        );
        assert_eq!(
            copied_by(&driver, "#copy-paste-duplicati"),
            format!("--authid={authid} --oauth-url={}/refresh", b.base),
            "{width} px: Duplicati's options"
        );
        let rclone = copied_by(&driver, "#copy-paste-rclone");
        assert_eq!(
            rclone,
            format!(
                "rclone config create box box client_id=box.com token_url={}/oauth/token \
                 token='{{\"access_token\":\"x\",\"token_type\":\"Bearer\",\
                 \"refresh_token\":\"{authid}\",\"expiry\":\"2000-01-01T00:00:00Z\"}}' \
                 --non-interactive",
                b.base
            ),
            "{width} px: the rclone line"
        );
        assert_eq!(driver.text("#copy"), "Copied");
        rclone_line = rclone;
        last_authid = authid;
    }
    // No rclone line where rclone cannot use the authid (the demo provider
    // has no rclone backend; pCloud's "authid" is its access token).
    for provider in ["demo", "pcloud"] {
        driver.goto(&b.url(&format!("/login?id={provider}")));
        driver.wait_for_url(&format!("/callback/{provider}"));
        b.remember(&driver.value("#authid"));
        let page = driver.source();
        assert!(page.contains("id=\"paste-duplicati\""), "{provider}");
        assert!(!page.contains("paste-rclone"), "{provider}: no rclone line");
    }
    // The copied rclone line, run by a shell with Debian's rclone, makes a
    // remote whose first use refreshes the authid at the broker.
    let dir = b.dir.join("pages-rclone");
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = dir.join("rclone.conf");
    let (ok, log) = run(crate::rclone::without_proxy("sh")
        .args(["-c", &rclone_line])
        .env("RCLONE_CONFIG", &conf));
    assert!(ok, "the copied line runs: {log}");
    b.expire_access_token(&last_authid);
    let (_, log) = crate::rclone::lsjson_offline(&conf, "box:", &[]);
    let saved =
        crate::rclone::saved_token(&std::fs::read_to_string(&conf).expect("rclone.conf"), "box")
            .unwrap_or_else(|| panic!("no token for [box]:\n{log}"));
    let access = saved["access_token"].as_str().unwrap_or("");
    assert!(
        b.provider_issued(access),
        "rclone saved an access token the provider issued:\n{log}"
    );
    assert_eq!(saved["refresh_token"], last_authid.as_str());
}

/// Runs `cmd` for at most two minutes; whether it exited 0, and its output.
fn run(cmd: &mut Command) -> (bool, String) {
    let (status, text) = crate::rclone::run_bounded(cmd, Duration::from_secs(120));
    (status == Some(0), text)
}

fn pages_akeeba_helper_page_and_every_form_fit_390_px_without_sideways_scrolling(b: &Broker) {
    let driver = Driver::start(&b.dir);
    for (width, height) in WIDTHS {
        driver.set_window_size(width, height);
        // Akeeba's helper page: both tokens whole, nothing sideways.
        driver.goto(&b.url("/akeeba/box"));
        driver.wait_for_url("/callback/box.com");
        b.remember(&driver.value("#refresh-token"));
        assert_eq!(driver.inner_width(), u64::from(width));
        let cut = overflowing(&driver);
        assert!(cut.is_empty(), "{width} px: Akeeba's page: {cut:?}");
        for css in ["#access-token", "#refresh-token"] {
            assert_shows_underscores_and_long_authids(&driver, css, &format!("{width} px"));
        }
        // Every form: nothing sideways, and every field has a visible label.
        for (path, marker) in [
            ("/", "id=\"login-demo\""),
            ("/revoke", "id=\"authid\""),
            ("/device", "id=\"user_code\""),
            ("/cli-token?id=jottacloud", "id=\"token\""),
            ("/admin", "id=\"key\""),
            ("/status", "id=\"authid\""),
            ("/reauthorize", "id=\"authid\""),
            ("/login?id=nope", "id=\"error-code\""),
        ] {
            open(&driver, &b.url(path), marker);
            let cut = overflowing(&driver);
            assert!(cut.is_empty(), "{width} px: {path}: {cut:?}");
            let unlabelled = exec(
                &driver,
                "var out = [];\
                 document.querySelectorAll('input:not([type=hidden]),textarea').forEach(\
                   function (e) {\
                     var l = e.labels && e.labels[0];\
                     if (!l || !l.offsetWidth || !l.textContent.trim()) out.push(e.name || e.id);\
                   });\
                 return out;",
                json!([]),
            );
            assert_eq!(
                unlabelled,
                json!([]),
                "{width} px: {path}: fields without a label"
            );
        }
    }
}

/// Runs `f` with the mock set to `cfg`, then puts the mock back.
fn with_mock(b: &Broker, cfg: Config, f: impl FnOnce()) {
    struct Reset<'a>(&'a Broker);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            self.0.reset_mock();
        }
    }
    b.mock.set_config(cfg);
    let _reset = Reset(b);
    f();
}

fn pages_an_error_page_names_what_happened_its_code_and_the_one_next_step(b: &Broker) {
    // Without a browser: a provider's answer to a login this browser never
    // started restarts at the same provider, on a page no cache keeps.
    let r = b.get("/callback/box.com?state=not-a-login&code=c");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert!(r
        .body
        .contains("<code id=\"error-code\">invalid_state</code>"));
    assert!(r
        .body
        .contains("id=\"try-again\" href=\"/login?id=box.com\""));
    let driver = Driver::start(&b.dir);
    // A Box login in the browser while the mock plays `config`, to its error page.
    let login_to_an_error_page = |config: Config| {
        with_mock(b, config, || {
            driver.goto(&b.url("/login?id=box.com"));
            driver.wait_for_url("/callback/box.com");
            wait_until("the error page", || {
                driver.source().contains("id=\"error-code\"").then_some(())
            });
        })
    };
    for (width, height) in WIDTHS {
        driver.set_window_size(width, height);
        // The user says no at the provider: what happened, the code, and a
        // *Try again* that starts the same login; it works once they agree.
        login_to_an_error_page(Config {
            deny: true,
            ..Config::default()
        });
        assert_eq!(driver.text("#error-code"), "access_denied");
        assert_eq!(driver.text("#error-what"), "Access was not granted");
        assert!(driver.text("#error-reason").contains("not granted"));
        let href = exec(
            &driver,
            "return document.getElementById('try-again').getAttribute('href');",
            json!([]),
        );
        assert_eq!(href, json!("/login?id=box.com"), "{width} px");
        let cut = overflowing(&driver);
        assert!(cut.is_empty(), "{width} px: the error page: {cut:?}");
        driver.click("#try-again");
        wait_until("the same login ends on the result page", || {
            driver.source().contains("data-authid=").then_some(())
        });
        b.remember(&driver.value("#authid"));
        assert!(driver.current_url().contains("/callback/box.com"));

        // The broker's own credentials refused: tell the operator, no retry.
        login_to_an_error_page(Config {
            client_rejected: true,
            ..Config::default()
        });
        assert_eq!(driver.text("#error-code"), "provider_misconfigured");
        assert!(driver.text("#next-step").contains("Tell the operator"));
        assert!(!driver.source().contains("id=\"try-again\""));
    }
}
