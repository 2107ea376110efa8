//! The thin shell: the Workers entry point and the router. A request finds its
//! row in the route table (`routes`), passes the row's limit and gate
//! (`guard`), runs the row's handler with the request's [`call::Call`] (its
//! configuration built once), and is answered on the row's surface
//! (`respond`). Everything that can be decided without the runtime lives in
//! the core modules; see `docs/architecture.md`. The Cron Trigger's runs go
//! to `scheduled` (the purge of expired short-lived rows).

mod bindings;
mod call;
mod clock;
#[cfg(feature = "fault-injection")]
mod conformance;
mod detach;
mod faults;
mod guard;
mod handler_move;
pub(crate) mod log;
mod respond;
mod routes;
mod scheduled;
mod store;
mod tokens;
mod upstream_fetch;

use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

use crate::access;
use crate::error::BrokerError;
use crate::request::parse_params;
use crate::route::{self, Method, Resolved, Surface};

#[event(fetch)]
async fn main(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let started_ms = clock::now_ms();
    let url = match req.url() {
        Ok(url) => url,
        Err(e) => {
            let err = BrokerError::internal(format!("request url: {e}"));
            log::error(
                "request_failed",
                serde_json::json!({ "error": err.code(), "cause": err.cause() }),
            );
            return respond::finish(Err(err), Surface::Api, false, None);
        }
    };
    let https = url.scheme() == "https";
    let method = Method::parse(req.method().as_ref());
    // `/k/<key>/<route>`: the key is presented at the gate, the route resolved.
    let keyed = access::split_key_prefix(url.path());
    let path = keyed.as_ref().map_or(url.path(), |k| k.path).to_string();
    // The storage contract's checks against D1 (test build only: `conformance`).
    #[cfg(feature = "fault-injection")]
    if conformance::asks(&path, method) {
        return conformance::answer(req, env, ctx, url.origin().ascii_serialization()).await;
    }
    let (route, rest) = match route::resolve(routes::ROUTES, &path, method) {
        Resolved::Found { route, rest } => (route, rest.to_string()),
        miss => {
            let allow = match &miss {
                Resolved::WrongMethod(route) => Some(route.allow()),
                _ => None,
            };
            let (err, surface) = miss.miss().unwrap_or((BrokerError::NotFound, Surface::Api));
            return respond::finish(Err(err), surface, https, allow);
        }
    };
    let cfg = bindings::config(&env, url.origin().ascii_serialization());
    let query = parse_params(url.query().unwrap_or(""));
    let mut call = call::Call::new(req, env, ctx, cfg, query);
    call.rest = rest;
    if let Some(k) = keyed {
        call.base = k.prefix.to_string();
        call.path_key = Some(k.key);
    }
    let surface = route.surface.for_request(call.header("X-AuthID").is_some());
    let out = match guard::admit(&call, route.ip_limited, route.gated).await {
        // The key typed into the gate's form: continue by a link.
        Ok(()) => match guard::key_accepted(&call, route.gated, surface, method, &path) {
            Some(page) => Ok(respond::html(page)),
            None => (route.handler)(&mut call).await,
        },
        Err(e) => match guard::key_form(&call, &e, surface, method, &path) {
            Some(page) => return respond::finish_page(e, page, https),
            None => Err(e),
        },
    };
    if let Err(e) = &out {
        // One line per failed request: the route's pattern (never the URL:
        // its query may hold an authid), the answer's code, and, for a
        // failure inside the broker (5xx), its non-secret cause.
        let (replica, primary, writes) = call.d1_work.counts();
        let level = match e.status() {
            500.. => log::Level::Error,
            _ => log::Level::Warn,
        };
        log::write(
            level,
            "request_failed",
            serde_json::json!({
                "method": method.as_str(),
                "route": route.path.name(),
                "status": e.status(),
                "error": e.code(),
                "cause": e.cause(),
                "d1": { "replica_reads": replica, "primary": primary, "writes": writes },
                "duration_ms": clock::now_ms().saturating_sub(started_ms),
            }),
        );
    }
    let mut response = match out {
        // A page's error offers the link that starts its login again.
        Err(e) if surface == Surface::Page => {
            let restart = call.restart.clone().or_else(|| {
                crate::next_step::restart_href(&path, &call.rest, &call.base, &call.query)
            });
            let page = crate::pages::error(&e, restart.as_deref());
            respond::finish_page(e, page, https)?
        }
        out => respond::finish(out, surface, https, None)?,
    };
    if call.cfg.server_timing {
        response
            .headers_mut()
            .set("Server-Timing", &call.d1_work.server_timing())?;
    }
    Ok(response)
}

/// The Cron Trigger (`wrangler.toml` `[triggers]`): purges expired rows.
#[event(scheduled)]
async fn on_schedule(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    scheduled::run(&event.cron(), env).await;
}
