//! Test-only D1 faults: with the cargo feature `fault-injection` (never in the
//! release build: `scripts/build.sh` builds it only into `build-faults/`), a
//! request carrying `X-Broker-Fault: d1=<op>[@after][,<op>[@after]…]` makes
//! the named D1 statements of that request, and of the work it hands to
//! `wait_until`, fail: `<op>` before the statement runs (nothing written),
//! `<op>@after` once it has run (written, but the caller sees the error: D1's
//! "committed, answer lost"). `<op>` is the operation name every statement
//! carries (`super::store::Db`). The failure is the one a real D1 error
//! becomes (`BrokerError::StorageUnavailable` through the store's `failed`).
//! The door × fault table (`tests/e2e/doors.rs`) drives it.
//!
//! Without the feature [`Faults`] is a zero-sized value that reads no header,
//! `Db` neither keeps nor checks it (its checks are compiled out), and the
//! release wasm does not contain the header's name (`scripts/size-check.sh`
//! checks that).

#[cfg(feature = "fault-injection")]
pub use injected::Faults;
#[cfg(not(feature = "fault-injection"))]
pub use none::Faults;

#[cfg(not(feature = "fault-injection"))]
mod none {
    use worker::Request;

    /// No faults: the release build.
    #[derive(Clone, Default)]
    pub struct Faults(());

    impl Faults {
        #[inline(always)]
        pub fn from_request(_: &Request) -> Faults {
            Faults(())
        }
    }
}

#[cfg(feature = "fault-injection")]
mod injected {
    use std::rc::Rc;

    use worker::Request;

    /// The request header that names the faults.
    const HEADER: &str = "X-Broker-Fault";

    /// When a named statement fails.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum When {
        /// Before it runs: nothing written.
        Before,
        /// After it ran: written, the answer lost.
        After,
    }

    /// The faults of one request, parsed once; shared by every `Db` it opens.
    #[derive(Clone, Default)]
    pub struct Faults(Option<Rc<Vec<(String, When)>>>);

    impl Faults {
        /// The plan in the request's `X-Broker-Fault` header (none when absent
        /// or not understood).
        pub fn from_request(req: &Request) -> Faults {
            let header = req.headers().get(HEADER).ok().flatten();
            Faults::parse(header.as_deref().unwrap_or(""))
        }

        /// `d1=<op>[@after][,…]`.
        fn parse(header: &str) -> Faults {
            let Some(list) = header.trim().strip_prefix("d1=") else {
                return Faults::default();
            };
            let plan: Vec<(String, When)> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match s.strip_suffix("@after") {
                    Some(op) => (op.to_string(), When::After),
                    None => (s.to_string(), When::Before),
                })
                .collect();
            if plan.is_empty() {
                Faults::default()
            } else {
                crate::shell::log::info("fault_injection", serde_json::json!({ "d1": list }));
                Faults(Some(Rc::new(plan)))
            }
        }

        fn check(&self, op: &str, when: When) -> Result<(), worker::Error> {
            let hit = self
                .0
                .as_ref()
                .is_some_and(|plan| plan.iter().any(|(o, w)| o == op && *w == when));
            if hit {
                let at = if when == When::After {
                    " after it ran"
                } else {
                    ""
                };
                Err(worker::Error::RustError(format!(
                    "D1_ERROR: injected fault{at}"
                )))
            } else {
                Ok(())
            }
        }

        /// Fails if `op` is to fail before it runs.
        pub fn before(&self, op: &str) -> Result<(), worker::Error> {
            self.check(op, When::Before)
        }

        /// Fails if `op` is to fail after it ran.
        pub fn after(&self, op: &str) -> Result<(), worker::Error> {
            self.check(op, When::After)
        }
    }
}
