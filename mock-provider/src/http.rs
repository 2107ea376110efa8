//! A minimal HTTP/1.1 server side: one request per connection, `Connection: close`.
//! Bounded: 64 KiB of headers, 1 MiB of body, 10 s read timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// A parsed request.
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response to write.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response::new(status, "application/json", v.to_string())
    }

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

/// Why a request could not be read (answered with the status).
pub struct BadRequest(pub u16);

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
    let mut r = BufReader::new(stream);
    let mut budget = MAX_HEAD;
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
    if req
        .header("Transfer-Encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size_line = read_line(&mut r, &mut budget)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| BadRequest(400))?;
            if size == 0 {
                let _ = read_line(&mut r, &mut budget);
                break;
            }
            if req.body.len() + size > MAX_BODY {
                return Err(BadRequest(413));
            }
            let mut chunk = vec![0u8; size];
            r.read_exact(&mut chunk).map_err(|_| BadRequest(400))?;
            req.body.extend_from_slice(&chunk);
            let _ = read_line(&mut r, &mut budget)?;
        }
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
