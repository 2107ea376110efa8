// A Tail Worker for the e2e suite: prints every trace event the broker's
// requests produce, as `TAIL <json>` lines, into wrangler's output. Tail
// events are what `wrangler tail`, Tail Workers and Logpush receive: the full
// request URL, query string included, and the worker's console lines. The
// leak scans read them (tests/e2e/leaks.rs) as the log that keeps query strings.
export default {
  async tail(events) {
    for (const e of events) {
      const request = e.event && e.event.request;
      const logs = (e.logs || []).map((l) => l.message);
      console.log("TAIL " + JSON.stringify({ url: request ? request.url : null, logs }));
    }
  },
};
