//! The HTTP client side: plain requests that never follow redirects, requests
//! with a deadline, raw bytes over a socket for requests a client library will
//! not send, and the broker's own shortcuts (`get`, `post_form`, `refresh`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::Broker;

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): status {}", self.status))
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Plain HTTP request; never follows redirects.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    request_bytes(method, url, headers, body.map(str::as_bytes))
}

/// Like [`request`], with a body of raw bytes (e.g. not UTF-8).
pub fn request_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    // Generous: on a loaded 2-core machine fifty concurrent requests to one
    // workerd (each a D1 read or more) have been seen to take over a minute.
    try_request_bytes(method, url, headers, body, Duration::from_secs(150))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`request_bytes`], but a client with `patience`: no answer in time
/// (or no connection) is an `Err` naming the request (never its query).
pub fn try_request_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    patience: Duration,
) -> Result<Resp, String> {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(patience)
        .build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        // Never `{e}`: ureq's message carries the whole URL, query and all
        // (codes, states, authids) — only its kind and transport message.
        Err(ureq::Error::Transport(t)) => {
            return Err(format!(
                "{method} {} failed: {:?} {}",
                url.split('?').next().unwrap_or(""),
                t.kind(),
                t.message().unwrap_or_default()
            ))
        }
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .flat_map(|n| {
            resp.all(&n)
                .into_iter()
                .map(|v| (n.clone(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut body = String::new();
    let _ = resp.into_reader().take(1 << 20).read_to_string(&mut body);
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Sends a GET and hangs up if no answer came within `patience`, as a client
/// with a short timeout does. True if it hung up (no answer in time).
pub fn get_and_hang_up(url: &str, headers: &[(&str, &str)], patience: Duration) -> bool {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(patience)
        .build();
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    // Dropping the call's error drops the connection.
    matches!(req.call(), Err(ureq::Error::Transport(_)))
}

/// Polls `done` every 200 ms until it holds, failing after `limit` (generous:
/// it bounds a wait for work the worker finishes on its own time).
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Broker {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> Resp {
        request("GET", &self.url(path), &[], None)
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request("GET", &self.url(path), headers, None)
    }

    pub fn post_form(&self, path: &str, body: &str) -> Resp {
        request(
            "POST",
            &self.url(path),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body),
        )
    }

    /// `GET /refresh` the way Duplicati does: header `X-AuthID`.
    pub fn refresh(&self, authid: &str) -> Resp {
        self.get_with("/refresh", &[("X-AuthID", authid)])
    }
}

/// Sends `bytes` (a whole request as it goes on the wire, or only its start) over a
/// fresh connection to `addr`, then either keeps sending open or, with `end`,
/// closes it (the request ends there, cut short if it said it was longer), and
/// returns the answer that arrived within `wait`, or `None` when none did. For
/// requests an HTTP client library will not send: a `Content-Length` larger than
/// the bytes that follow, a chunked body that never ends. Every read is bounded
/// by what is left of `wait`.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], end: bool, wait: Duration) -> Option<Resp> {
    let deadline = Instant::now() + wait;
    let mut s = TcpStream::connect_timeout(&addr, wait).ok()?;
    s.set_write_timeout(Some(wait)).ok()?;
    s.write_all(bytes).ok()?;
    if end {
        s.shutdown(std::net::Shutdown::Write).ok()?;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the head is complete and the body is as long as it says (or EOF).
    loop {
        if let Some(resp) = parse_response(&got) {
            return Some(resp);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).ok()?;
        match s.read(&mut buf) {
            Ok(0) => return parse_head(&got).map(|(resp, _)| resp),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// The status line and headers of an HTTP/1.1 answer, and where its body starts.
pub(super) fn parse_head(raw: &[u8]) -> Option<(Resp, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let resp = Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&raw[end..]).into_owned(),
    };
    Some((resp, end))
}

/// A complete answer: its head and `Content-Length` bytes of body.
pub(super) fn parse_response(raw: &[u8]) -> Option<Resp> {
    let (resp, start) = parse_head(raw)?;
    let len: usize = resp.header("Content-Length")?.parse().ok()?;
    (raw.len() >= start + len).then_some(resp)
}

/// POST a form to `url` with extra headers.
pub fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(headers);
    request("POST", url, &h, Some(body))
}

/// `application/x-www-form-urlencoded` of one value.
pub fn enc(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// `Authorization: Basic` as RFC 6749 §2.3.1 says: each half form-urlencoded first.
pub fn basic(id: &str, secret: &str) -> String {
    basic_raw(&format!("{}:{}", enc(id), enc(secret)))
}

/// `Authorization: Basic` of `pair` as it is (no form-urlencoding).
pub fn basic_raw(pair: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}
