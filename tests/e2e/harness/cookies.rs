//! One browser's cookie jar, and requests sent from it.

use super::{request, Broker, Resp};

/// One browser's cookies for the broker: kept from `Set-Cookie` answers (an
/// empty value or `Max-Age=0` deletes one), sent back as one `Cookie` header.
/// Two jars are two browsers.
#[derive(Default, Debug, Clone)]
pub struct Jar(Vec<(String, String)>);

impl Jar {
    /// Keeps the cookies `r` sets.
    pub fn keep(&mut self, r: &Resp) {
        for (k, v) in &r.headers {
            if !k.eq_ignore_ascii_case("Set-Cookie") {
                continue;
            }
            let Some((name, value)) = v.split(';').next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            self.0.retain(|(n, _)| *n != name);
            if !value.is_empty() && !v.contains("Max-Age=0") {
                self.0.push((name, value));
            }
        }
    }

    /// The `Cookie` header this browser sends (empty when it has none).
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Broker {
    /// `method` `url` from the browser `jar`: its cookies sent, the answer's kept.
    pub(super) fn in_jar(
        &self,
        jar: &mut Jar,
        method: &str,
        url: &str,
        body: Option<&str>,
    ) -> Resp {
        let cookie = jar.header();
        let mut headers = Vec::new();
        if body.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let r = request(method, url, &headers, body);
        jar.keep(&r);
        r
    }

    /// GET `path` from the browser `jar`.
    pub fn get_in(&self, jar: &mut Jar, path: &str) -> Resp {
        self.in_jar(jar, "GET", &self.url(path), None)
    }

    /// POST a form to `path` from the browser `jar` (a same-site form post).
    pub fn post_form_in(&self, jar: &mut Jar, path: &str, body: &str) -> Resp {
        self.in_jar(jar, "POST", &self.url(path), Some(body))
    }
}
