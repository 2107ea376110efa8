//! Counted D1 work: how many statements one request sent to a read replica,
//! to the primary, and how many of them wrote. The shell's `Db` counts every
//! statement here; with `SERVER_TIMING=1` the answer carries the counts in a
//! `Server-Timing` header (`d1;desc="r=1 p=0 w=0"`), which the e2e tests and
//! the bench (`bench/load.rs`) read. Off by default: it tells a client nothing
//! secret, but nothing it needs either.

use std::cell::Cell;

use crate::refresh::ReadFrom;

/// One request's D1 statements. A write counts when it changed a row (a
/// conditional UPDATE that lost, e.g. a lease claim another request won, is a
/// primary statement but no write).
#[derive(Debug, Default)]
pub struct D1Work {
    replica: Cell<u32>,
    primary: Cell<u32>,
    writes: Cell<u32>,
}

impl D1Work {
    /// (replica reads, primary statements (reads and writes), writes that changed rows).
    pub fn counts(&self) -> (u32, u32, u32) {
        (self.replica.get(), self.primary.get(), self.writes.get())
    }

    /// Counts `statements` statements sent to `from`.
    pub fn sent(&self, from: ReadFrom, statements: u32) {
        let cell = match from {
            ReadFrom::Replica => &self.replica,
            ReadFrom::Primary => &self.primary,
        };
        cell.set(cell.get().saturating_add(statements));
    }

    /// Counts `statements` writes that changed rows.
    pub fn wrote(&self, statements: u32) {
        self.writes
            .set(self.writes.get().saturating_add(statements));
    }

    /// The `Server-Timing` value: `d1;desc="r=<replica> p=<primary> w=<writes>"`.
    pub fn server_timing(&self) -> String {
        let (r, p, w) = self.counts();
        format!("d1;desc=\"r={r} p={p} w={w}\"")
    }
}

/// Whether the `SERVER_TIMING` variable turns the header on (`1` or `true`).
pub fn enabled(var: Option<&str>) -> bool {
    matches!(var.map(str::trim), Some("1" | "true"))
}

/// Anything but a `SELECT` changes rows (`DELETE … RETURNING` included).
pub fn is_write(sql: &str) -> bool {
    !sql.trim_start()
        .get(..6)
        .is_some_and(|k| k.eq_ignore_ascii_case("select"))
}

/// Reads `(r, p, w)` back from a `Server-Timing` header value (for the tests
/// and the bench).
pub fn parse(header: &str) -> Option<(u32, u32, u32)> {
    let desc = header
        .split(',')
        .map(str::trim)
        .find_map(|m| m.strip_prefix("d1;desc=\""))?
        .strip_suffix('"')?;
    let mut r = None;
    let mut p = None;
    let mut w = None;
    for part in desc.split(' ') {
        let (k, v) = part.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        match k {
            "r" => r = Some(v),
            "p" => p = Some(v),
            "w" => w = Some(v),
            _ => return None,
        }
    }
    Some((r?, p?, w?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_but_a_select_counts_as_a_write() {
        assert!(!is_write("SELECT key_hash FROM grants"));
        assert!(!is_write("  select 1"));
        assert!(is_write("DELETE FROM login_states WHERE x RETURNING y"));
        assert!(is_write("UPDATE grants SET lease_until = ?1"));
        assert!(is_write("INSERT INTO grants"));
        assert!(is_write(""));
    }

    #[test]
    fn work_is_counted_by_where_it_ran_and_reported_as_server_timing() {
        let w = D1Work::default();
        assert_eq!(w.server_timing(), "d1;desc=\"r=0 p=0 w=0\"");
        w.sent(ReadFrom::Replica, 1);
        w.sent(ReadFrom::Primary, 1);
        w.sent(ReadFrom::Primary, 1);
        w.wrote(1);
        w.sent(ReadFrom::Primary, 2);
        w.wrote(2);
        assert_eq!(w.counts(), (1, 4, 3));
        assert_eq!(w.server_timing(), "d1;desc=\"r=1 p=4 w=3\"");
        assert_eq!(parse(&w.server_timing()), Some((1, 4, 3)));
    }

    #[test]
    fn the_header_is_off_unless_asked_for() {
        assert!(!enabled(None));
        assert!(!enabled(Some("0")));
        assert!(!enabled(Some("")));
        assert!(enabled(Some("1")));
        assert!(enabled(Some(" true ")));
    }

    #[test]
    fn a_foreign_or_broken_server_timing_value_is_not_read_as_counts() {
        assert_eq!(parse("cache;desc=\"hit\""), None);
        assert_eq!(parse("d1;desc=\"r=x p=0 w=0\""), None);
        assert_eq!(parse("db;dur=53, d1;desc=\"r=1 p=0 w=0\""), Some((1, 0, 0)));
    }
}
