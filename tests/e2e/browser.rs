//! A real browser: headless Chromium (Debian's, driven through ChromeDriver's
//! W3C WebDriver HTTP API) clicks through index → demo provider → result page,
//! reads the authid off the page and refreshes with it; and plays Duplicati's
//! old UI: a popup, the "Send to Duplicati" click, and the JSONP poll.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{duplicati_token, free_port, request, Broker};

pub const TESTS: &[crate::Test] = tests![
    browser_clicks_through_login_and_the_authid_refreshes,
    browser_popup_on_a_non_default_loopback_port_receives_the_authid,
    browser_popup_posts_pcloud_access_token_to_a_loopback_opener,
    browser_popup_from_a_non_loopback_opener_receives_nothing,
    browser_old_ui_popup_hands_the_authid_to_fetch_after_the_users_click,
    browser_device_login_clicks_through_to_the_provider_and_the_device_collects_the_authid,
];

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Driver {
    child: Child,
    base: String,
    session: Option<String>,
    profile: std::path::PathBuf,
}

impl Driver {
    pub(crate) fn start(dir: &std::path::Path) -> Driver {
        Driver::start_with(dir, &[])
    }

    /// Like [`Driver::start`], with extra Chromium arguments.
    fn start_with(dir: &std::path::Path, extra_args: &[&str]) -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/setup.sh --test installs Debian's chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        wait_until("chromedriver answered", || {
            ureq::get(&format!("{base}/status"))
                .timeout(Duration::from_secs(1))
                .call()
                .ok()
        });
        let profile = dir.join("chromium-profile");
        let mut d = Driver {
            child,
            base,
            session: None,
            profile,
        };
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", d.profile.display()),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args
            }
        }}});
        let v = d.call("POST", "/session", Some(caps));
        d.session = Some(
            v["sessionId"]
                .as_str()
                .expect("WebDriver session id")
                .to_string(),
        );
        d
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = match &self.session {
            Some(s) if path != "/session" => format!("{}/session/{s}{path}", self.base),
            _ => format!("{}{path}", self.base),
        };
        let body = body.map(|b| b.to_string());
        let r = request(
            method,
            &url,
            &[("Content-Type", "application/json")],
            body.as_deref(),
        );
        let v: Value = serde_json::from_str(&r.body).expect("WebDriver JSON");
        assert!(
            r.status < 400,
            "WebDriver {method} {path}: {}",
            v["value"]["message"]
        );
        v["value"].clone()
    }

    /// Opens `url` in the current window.
    pub(crate) fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Sets the window's size in CSS pixels (W3C WebDriver "Set Window
    /// Rect"); the page's layout viewport follows it (headless Chromium has
    /// no window frame).
    pub(crate) fn set_window_size(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// `window.innerWidth` of the current page.
    pub(crate) fn inner_width(&self) -> u64 {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": "return window.innerWidth;", "args": [] })),
        )
        .as_u64()
        .expect("a width")
    }

    /// The current page's HTML as the browser holds it.
    pub(crate) fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Types `text` into the element at `css` (W3C WebDriver "Element Send Keys").
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().expect("element id").to_string()
    }

    pub(crate) fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    pub(crate) fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The `value` property of the element at `css` (what an input shows).
    pub(crate) fn value(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &format!("/element/{e}/property/value"), None)
            .as_str()
            .expect("a value property")
            .to_string()
    }

    /// Runs `script` asynchronously in the current page (WebDriver "Execute
    /// Async Script"): it gets `args` and, last, the callback that ends it.
    fn execute_async(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    fn handles(&self) -> Vec<String> {
        self.call("GET", "/window/handles", None)
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn switch_to(&self, handle: &str) {
        self.call("POST", "/window", Some(json!({ "handle": handle })));
    }

    pub(crate) fn wait_for_url(&self, part: &str) {
        wait_until(&format!("the browser reached {part}"), || {
            self.current_url().contains(part).then_some(())
        });
    }

    pub(crate) fn current_url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Polls `f` every 100 ms for up to 90 s (chromium starting, or a login hopping
/// through the worker and the mock, can take tens of seconds on a loaded machine);
/// panics naming `what` if it never yields.
pub(crate) fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.call("DELETE", "", None)
            }));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The person approves a device login in `driver`, on the page that names
/// the provider: *Continue*, the mock's login, "Return to your device". Then
/// the device polls `token_url` once with `client` (its client fields, e.g.
/// `client_id=demo`) and `device_code`: the answer.
pub(crate) fn approve_device_and_poll(
    driver: &Driver,
    token_url: &str,
    client: &str,
    device_code: &str,
) -> crate::harness::Resp {
    driver.click("#approve");
    driver.wait_for_url("/callback/demo");
    assert!(driver
        .text("#device-done")
        .contains("Return to your device"));
    request(
        "POST",
        token_url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&{client}\
             &device_code={device_code}"
        )),
    )
}

/// RFC 8628 in a real browser, under the pages' CSP (`form-action 'self'`,
/// which Chromium also applies to redirects after a form post): open
/// `verification_uri_complete`, submit the code, click *Continue*, log in at
/// the mock provider, read "Return to your device"; the device's poll then
/// collects an authid.
fn browser_device_login_clicks_through_to_the_provider_and_the_device_collects_the_authid(
    b: &Broker,
) {
    let started = request(
        "POST",
        &b.url("/oauth/device_authorization"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("client_id=demo"),
    );
    assert_eq!(started.status, 200, "{}", started.body);
    let v = started.json();
    let device_code = v["device_code"].as_str().expect("device_code").to_string();
    b.remember(&device_code);
    let driver = Driver::start(&b.dir);
    driver.call(
        "POST",
        "/url",
        Some(json!({"url": v["verification_uri_complete"]})),
    );
    driver.click("button[type=submit]");
    wait_until("the page names the provider and offers Continue", || {
        let source = driver.call("GET", "/source", None);
        source
            .as_str()
            .is_some_and(|s| s.contains("id=\"approve\""))
            .then_some(())
    });
    assert!(driver.text("#device-ask").contains("Demo provider"));
    let polled = approve_device_and_poll(
        &driver,
        &crate::harness::token_endpoint(b),
        "client_id=demo",
        &device_code,
    );
    assert_eq!(polled.status, 200, "{}", polled.body);
    let authid = b.remember_refresh_token(&polled.json());
    assert_eq!(b.refresh(&authid).status, 200);
}

fn browser_clicks_through_login_and_the_authid_refreshes(b: &Broker) {
    let driver = Driver::start(&b.dir);
    driver.call("POST", "/url", Some(json!({"url": b.url("/")})));
    driver.click("#login-demo");
    driver.wait_for_url("/callback/demo");
    let authid = driver.value("#authid");
    b.remember(&authid);
    assert!(authid.len() >= 65 && authid.contains(':'), "authid shape");
    let r = b.refresh(&authid);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(b.provider_issued(r.json()["access_token"].as_str().unwrap_or("")));
}

/// The mock's stand-in for Duplicati's UI at `opener_base` opens `target` in
/// a popup (the user clicks its button): the opener's window handle, with
/// the driver switched to the popup.
fn open_popup(driver: &Driver, opener_base: &str, target: &str) -> String {
    let target: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
    let opener_url = format!("{opener_base}/_mock/opener?target={target}");
    driver.call("POST", "/url", Some(json!({ "url": opener_url })));
    let opener = driver.handles();
    assert_eq!(opener.len(), 1);
    driver.click("#open");
    let popup = wait_until("a popup opened", || {
        driver.handles().into_iter().find(|h| !opener.contains(h))
    });
    driver.switch_to(&popup);
    opener[0].clone()
}

/// Plays Duplicati's new UI: the page at `opener_url` (the mock's stand-in)
/// opens `/?type=<provider>` in a popup, the user logs in, and the popup shows
/// the result page. Returns the authid and the opener's window handle, with the
/// driver switched to the popup.
fn popup_login(driver: &Driver, b: &Broker, opener_base: &str, provider: &str) -> (String, String) {
    let opener = open_popup(driver, opener_base, &b.url(&format!("/?type={provider}")));
    driver.wait_for_url(&format!("type={provider}"));
    driver.click(&format!("#login-{provider}"));
    driver.wait_for_url(&format!("/callback/{provider}"));
    let authid = driver.value("#authid");
    b.remember(&authid);
    (authid, opener)
}

/// Duplicati's new UI opens the broker in a popup and waits for
/// `window.opener.postMessage('authid:<authid>', <origin>)`. Duplicati listens
/// on 8200–8989; the mock's stand-in opener is a loopback origin on a random
/// port, in no list: the default (any loopback port) and the `Referer` of the
/// popup's first request are what let the result page post to it.
fn browser_popup_on_a_non_default_loopback_port_receives_the_authid(b: &Broker) {
    let driver = Driver::start(&b.dir);
    let (authid, opener) = popup_login(&driver, b, &b.mock.base_url(), "demo");
    assert!(!b.mock.base_url().ends_with(":8200"));
    driver.switch_to(&opener);
    let got = wait_until("the opener received a message", || {
        Some(driver.text("#got")).filter(|t| !t.is_empty())
    });
    assert_eq!(got.trim(), format!("{} authid:{authid}", b.base));
}

/// ngclient's pCloud entry relies on the message too: pCloud's authid is its
/// access token, without the `:` the page used to insist on.
fn browser_popup_posts_pcloud_access_token_to_a_loopback_opener(b: &Broker) {
    let driver = Driver::start(&b.dir);
    let (authid, opener) = popup_login(&driver, b, &b.mock.base_url(), "pcloud");
    assert!(!authid.contains(':'));
    assert!(b.provider_issued(&authid));
    driver.switch_to(&opener);
    let got = wait_until("the opener received a message", || {
        Some(driver.text("#got")).filter(|t| !t.is_empty())
    });
    assert_eq!(got.trim(), format!("{} authid:{authid}", b.base));
}

/// The same popup opened from a non-loopback origin (`opener.test`, which
/// Chromium resolves to 127.0.0.1, so nothing leaves the machine) gets nothing.
/// No waiting on a clock: after the result page has loaded (its script runs
/// while it parses), the popup posts a probe to its opener; messages from one
/// window to another arrive in order, so once the probe is there, an authid
/// posted before it would be too.
fn browser_popup_from_a_non_loopback_opener_receives_nothing(b: &Broker) {
    let driver = Driver::start_with(&b.dir, &["--host-resolver-rules=MAP opener.test 127.0.0.1"]);
    let opener_base = format!("http://opener.test:{}", b.mock.port());
    let (authid, opener) = popup_login(&driver, b, &opener_base, "demo");
    assert!(authid.contains(':'), "the login itself worked");
    let sent = driver.execute_async(
        "var done = arguments[arguments.length - 1];\
         function probe() { window.opener.postMessage('probe', '*'); done('sent'); }\
         if (document.readyState === 'complete') probe();\
         else window.addEventListener('load', probe);",
        json!([]),
    );
    assert_eq!(sent, json!("sent"));
    driver.switch_to(&opener);
    let got = wait_until("the opener received the probe", || {
        Some(driver.text("#got")).filter(|t| t.contains("probe"))
    });
    assert!(!got.contains("authid"), "{got}");
    assert!(!got.contains(&authid));
}

/// Duplicati's old (AngularJS) UI: it opens `/?type=<id>&token=<t>` in a popup
/// and polls `/fetch?callback=…&token=<t>` by JSONP from its own page. The user
/// logs in, reads the authid, and clicks "Send to Duplicati"; only then does
/// the poll get the authid, once. The mock's opener page stands in for the UI.
fn browser_old_ui_popup_hands_the_authid_to_fetch_after_the_users_click(b: &Broker) {
    let driver = Driver::start(&b.dir);
    let token = duplicati_token();
    let start = b.url(&format!("/?type=demo&token={token}"));
    let opener = open_popup(&driver, &b.mock.base_url(), &start);
    driver.wait_for_url("token=");
    driver.click("#login-demo");
    driver.wait_for_url("/callback/demo");
    let authid = driver.value("#authid");
    b.remember(&authid);
    assert!(
        authid.contains(':'),
        "the authid is on the page for copy/paste"
    );
    // Duplicati's poll (JSON here) waits until the user clicks.
    let poll = || b.get(&format!("/fetch?token={token}")).json();
    assert_eq!(poll(), json!({"wait": "Not ready"}));
    driver.click("#confirm-handoff");
    driver.wait_for_url("/handoff");
    assert!(driver.text("#handoff-sent").contains("Duplicati"));
    // The poll as the old UI makes it: a JSONP <script> from its own page.
    driver.switch_to(&opener);
    let jsonp = format!("{}/fetch?callback=oldUiPoll&token={token}", b.base);
    let got = driver.execute_async(
        "var done = arguments[arguments.length - 1];\
         window.oldUiPoll = function (d) { done(JSON.stringify(d)); };\
         var s = document.createElement('script');\
         s.src = arguments[0];\
         s.onerror = function () { done('script error'); };\
         document.head.appendChild(s);",
        json!([jsonp]),
    );
    let got: Value = serde_json::from_str(got.as_str().unwrap_or("")).expect("the JSONP answer");
    assert_eq!(got, json!({ "authid": authid }));
    assert_eq!(poll(), json!({"error": "No such entry"}), "handed out once");
}
