//! The operator's log: every line the worker writes is one JSON object with an
//! `event` name and non-secret fields only (which route, provider, status, OAuth
//! error code, shard, D1 work, duration), the shape Cloudflare Workers Logs
//! indexes field by field. Never an authid, token, code, state, query string
//! or secret: the callers put in only values of those kinds (route *patterns*,
//! provider ids, error codes, counts), and the e2e leak tests read every line.
//! What each log source sees: SECURITY.md, "What is logged".

use serde_json::{Map, Value};

/// How loud a line is: `console.log`, `console.warn` or `console.error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// `{"event": <event>, …fields}` as one line (fields that are not an object
/// are ignored).
pub fn line(event: &str, fields: Value) -> String {
    let mut m = Map::new();
    m.insert("event".into(), Value::from(event));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m).to_string()
}

/// Writes one line at `level`.
pub fn write(level: Level, event: &str, fields: Value) {
    let text = line(event, fields);
    match level {
        Level::Info => worker::console_log!("{text}"),
        Level::Warn => worker::console_warn!("{text}"),
        Level::Error => worker::console_error!("{text}"),
    }
}

pub fn info(event: &str, fields: Value) {
    write(Level::Info, event, fields);
}

pub fn warn(event: &str, fields: Value) {
    write(Level::Warn, event, fields);
}

pub fn error(event: &str, fields: Value) {
    write(Level::Error, event, fields);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_is_one_json_object_led_by_its_event() {
        let l = line(
            "upstream_token",
            json!({"provider": "box.com", "status": 401}),
        );
        assert!(!l.contains('\n'));
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["event"], "upstream_token");
        assert_eq!(v["provider"], "box.com");
        assert_eq!(v["status"], 401);
        assert_eq!(line("x", json!(null)), r#"{"event":"x"}"#);
    }
}
