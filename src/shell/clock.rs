//! The runtime's clock: the one place the shell reads the time.

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// Unix seconds.
pub fn now() -> i64 {
    (now_ms() / 1000) as i64
}
