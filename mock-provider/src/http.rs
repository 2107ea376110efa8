//! A minimal HTTP/1.1 server side: one request per connection, `Connection: close`.
//! Bounded: 64 KiB of headers, 1 MiB of body, 10 s read timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// A parsed request.
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The target up to `?`.
    pub path: String,
    /// The target after `?` (raw, still encoded).
    pub query: String,
    /// Headers in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The de-chunked body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response to write.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers (e.g. `Location`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body and no extra headers.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response::new(status, "application/json", v.to_string())
    }

    /// A 302 to `location`.
    pub fn redirect(location: &str) -> Response {
        let mut r = Response::new(302, "text/plain", "");
        r.headers.push(("Location".into(), location.into()));
        r
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Why a request could not be read (answered with the status). Status
/// [`NO_REQUEST`]: the connection closed or stayed idle before a request
/// began, which is answered with nothing (RFC 9112 §9.6: a server closes an
/// idle connection; a browser's speculative preconnect is one, and a 400
/// written to it would be read as the answer to the request it later sends).
pub struct BadRequest(pub u16);

/// [`BadRequest`] for a connection that never began a request.
pub const NO_REQUEST: u16 = 0;

fn read_line(r: &mut impl BufRead, budget: &mut usize) -> Result<String, BadRequest> {
    let mut line = Vec::new();
    let n = r
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|_| BadRequest(400))?;
    if n == 0 {
        return Err(BadRequest(400));
    }
    if n > *budget {
        return Err(BadRequest(431));
    }
    *budget -= n;
    let s = String::from_utf8(line).map_err(|_| BadRequest(400))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one request from the stream.
pub fn read_request(stream: &TcpStream) -> Result<Request, BadRequest> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(stream);
    let mut budget = MAX_HEAD;
    if r.fill_buf().map_or(true, |b| b.is_empty()) {
        return Err(BadRequest(NO_REQUEST));
    }
    let first = read_line(&mut r, &mut budget)?;
    let mut parts = first.split(' ');
    let (method, target) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") && !m.is_empty() => (m, t),
        _ => return Err(BadRequest(400)),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut r, &mut budget)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').ok_or(BadRequest(400))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    };
    if let Some(te) = req.header("Transfer-Encoding") {
        // Only plain `chunked` is understood; anything else cannot be framed (RFC 9112 §6.3).
        if !te.eq_ignore_ascii_case("chunked") {
            return Err(BadRequest(400));
        }
        req.body = read_chunked(&mut r)?;
    } else if let Some(len) = req.header("Content-Length") {
        let len: usize = len.parse().map_err(|_| BadRequest(400))?;
        if len > MAX_BODY {
            return Err(BadRequest(413));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).map_err(|_| BadRequest(400))?;
        req.body = body;
    }
    Ok(req)
}

/// Reads a `Transfer-Encoding: chunked` body (trailers are read and dropped).
fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, BadRequest> {
    let mut body = Vec::new();
    loop {
        // Each framing line gets its own small budget: the body cap bounds their number.
        let size_line = read_line(r, &mut 1024).map_err(|_| BadRequest(400))?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| BadRequest(400))?;
        if size == 0 {
            let mut budget = MAX_HEAD;
            while !read_line(r, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        if size > MAX_BODY - body.len() {
            return Err(BadRequest(413));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])
            .map_err(|_| BadRequest(400))?;
        if !read_line(r, &mut 2)
            .map_err(|_| BadRequest(400))?
            .is_empty()
        {
            return Err(BadRequest(400));
        }
    }
}

/// Writes a response and closes the exchange.
pub fn write_response(mut stream: &TcpStream, resp: &Response) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&resp.body);
    let _ = stream.flush();
    // Lingering close: a client still sending (say, a refused oversized body) would
    // otherwise get a reset instead of the answer. Clients close at once after
    // `Connection: close`, so this normally ends on the first read.
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = std::io::copy(&mut stream.take(2 * MAX_BODY as u64), &mut std::io::sink());
}

/// Decodes `application/x-www-form-urlencoded` (`+` is space, `%XX` escapes).
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes a value for a query string.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form("a=1+2%3A3&b=&c&d=%zz&e=%4"),
            vec![
                ("a".into(), "1 2:3".into()),
                ("b".into(), "".into()),
                ("c".into(), "".into()),
                ("d".into(), "%zz".into()),
                ("e".into(), "%4".into()),
            ]
        );
    }

    #[test]
    fn encoding_round_trips() {
        let v = "a b/c?d=e&f:g";
        assert_eq!(parse_form(&format!("k={}", encode(v)))[0].1, v);
    }
}
