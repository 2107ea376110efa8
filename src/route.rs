//! Routes as data: what a route table row says and how a request finds its row.
//!
//! The shell's table (`src/shell/routes/mod.rs`) is the one place that states a
//! route's path, methods, surface, rate limit and gate; the router, the 405
//! answer (with its `Allow` header), the gate, the limits and the choice of an
//! HTML page or JSON for errors all read that row. This module holds the rules
//! of that reading, generic over the handler type so they are tested natively.

use crate::error::BrokerError;

/// The methods the broker routes. Anything else is [`Method::Other`] and
/// always a 405 on a known path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

impl Method {
    /// Parses an HTTP method name (case-sensitive, as RFC 9110 §9.1 says).
    pub fn parse(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Other => "OTHER",
        }
    }
}

/// Who reads a route's answers: errors are HTML pages on browser routes and
/// JSON (`{"error", "error_description"}`) on API routes. Both carry the same
/// status, `X-Error-Code` and `X-Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Page,
    Api,
    /// The standard OAuth 2.0 front door: JSON errors shaped as RFC 6749 §5.2
    /// says (`crate::oauth2::error_for`), with `Pragma: no-cache`.
    OAuth,
    /// A page for a browser, JSON for a machine that names its authid in
    /// `X-AuthID` (`/status`): [`Surface::for_request`].
    PageOrApi,
}

impl Surface {
    /// The surface one request is answered on: a [`Surface::PageOrApi`]
    /// row answers JSON when the request carries `X-AuthID`.
    pub fn for_request(self, authid_header: bool) -> Surface {
        match (self, authid_header) {
            (Surface::PageOrApi, true) => Surface::Api,
            (Surface::PageOrApi, false) => Surface::Page,
            (s, _) => s,
        }
    }
}

/// How a row matches a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathPattern {
    Exact(&'static str),
    /// The path starts with this and the rest is one path segment (non-empty,
    /// no `/`): `/callback/<provider>`. So `/callback//callback/demo` or
    /// `/callback/demo/x` match no row, instead of reaching a handler that reads
    /// its own meaning into the rest.
    Prefix(&'static str),
    /// The path starts with this and the rest is non-empty, slashes allowed:
    /// for a client that sends a request target only its handler can read.
    /// Akeeba Backup's Box connector requests the refresh URL's path followed
    /// by the whole refresh URL (`/akeeba/box/refreshhttps://host/akeeba/box/refresh`),
    /// see `crate::akeeba`; the handler checks the rest and refuses anything else.
    Tail(&'static str),
}

impl PathPattern {
    /// The path's remainder after the pattern (`""` for an exact match), or
    /// `None` when the path does not match.
    pub fn matches<'p>(&self, path: &'p str) -> Option<&'p str> {
        match *self {
            PathPattern::Exact(p) => (path == p).then_some(""),
            PathPattern::Prefix(p) => path
                .strip_prefix(p)
                .filter(|rest| !rest.is_empty() && !rest.contains('/')),
            PathPattern::Tail(p) => path.strip_prefix(p).filter(|rest| !rest.is_empty()),
        }
    }

    /// The pattern as written, for logs (`/callback/*`).
    pub fn name(&self) -> String {
        match *self {
            PathPattern::Exact(p) => p.to_string(),
            PathPattern::Prefix(p) => format!("{p}*"),
            PathPattern::Tail(p) => format!("{p}**"),
        }
    }
}

/// One row of the route table.
#[derive(Debug)]
pub struct Route<H> {
    pub path: PathPattern,
    pub methods: &'static [Method],
    pub surface: Surface,
    /// Counted against the per-client-address limit (`RL_PER_IP`): routes that
    /// cost a D1 write, an upstream call or a secret comparison.
    pub ip_limited: bool,
    /// Behind the operator's access gate (`ACCESS_KEYS`).
    pub gated: bool,
    pub handler: H,
}

impl<H> Route<H> {
    /// The `Allow` header of a 405 (RFC 9110 §15.5.6): the row's methods.
    pub fn allow(&self) -> String {
        self.methods
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the table says about a request.
#[derive(Debug)]
pub enum Resolved<'t, 'p, H> {
    /// Run this row's handler; `rest` is the path after a prefix pattern.
    Found { route: &'t Route<H>, rest: &'p str },
    /// The path exists but not with this method: 405 on the row's surface, with `Allow`.
    WrongMethod(&'t Route<H>),
    /// No row: 404 (JSON).
    NoRoute,
}

/// Finds the first row whose path matches; then checks the method.
pub fn resolve<'t, 'p, H>(
    table: &'t [Route<H>],
    path: &'p str,
    method: Method,
) -> Resolved<'t, 'p, H> {
    for route in table {
        if let Some(rest) = route.path.matches(path) {
            return if route.methods.contains(&method) {
                Resolved::Found { route, rest }
            } else {
                Resolved::WrongMethod(route)
            };
        }
    }
    Resolved::NoRoute
}

impl<H> Resolved<'_, '_, H> {
    /// The error a miss answers with and the surface it is shown on.
    pub fn miss(&self) -> Option<(BrokerError, Surface)> {
        match self {
            Resolved::Found { .. } => None,
            Resolved::WrongMethod(route) => Some((BrokerError::MethodNotAllowed, route.surface)),
            Resolved::NoRoute => Some((BrokerError::NotFound, Surface::Api)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Method::*;

    const TABLE: &[Route<u8>] = &[
        Route {
            path: PathPattern::Exact("/"),
            methods: &[Get, Head],
            surface: Surface::Page,
            ip_limited: false,
            gated: false,
            handler: 1,
        },
        Route {
            path: PathPattern::Exact("/refresh"),
            methods: &[Get, Post],
            surface: Surface::Api,
            ip_limited: true,
            gated: true,
            handler: 2,
        },
        Route {
            path: PathPattern::Prefix("/callback/"),
            methods: &[Get],
            surface: Surface::Page,
            ip_limited: false,
            gated: false,
            handler: 3,
        },
    ];

    fn found(path: &str, method: Method) -> Option<(u8, String)> {
        match resolve(TABLE, path, method) {
            Resolved::Found { route, rest } => Some((route.handler, rest.to_string())),
            _ => None,
        }
    }

    #[test]
    fn a_request_runs_the_handler_of_the_row_that_matches_path_and_method() {
        assert_eq!(found("/", Get), Some((1, String::new())));
        assert_eq!(found("/", Head), Some((1, String::new())));
        assert_eq!(found("/refresh", Post), Some((2, String::new())));
        assert_eq!(found("/callback/demo", Get), Some((3, "demo".into())));
    }

    #[test]
    fn a_known_path_with_another_method_is_a_405_on_the_rows_surface_with_its_allow_list() {
        let r = resolve(TABLE, "/refresh", Other);
        let Resolved::WrongMethod(route) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(route.allow(), "GET, POST");
        assert_eq!(
            r.miss(),
            Some((BrokerError::MethodNotAllowed, Surface::Api))
        );
        let r = resolve(TABLE, "/", Post);
        assert_eq!(
            r.miss(),
            Some((BrokerError::MethodNotAllowed, Surface::Page))
        );
        let r = resolve(TABLE, "/callback/demo", Post);
        assert_eq!(
            r.miss(),
            Some((BrokerError::MethodNotAllowed, Surface::Page))
        );
    }

    #[test]
    fn an_unknown_path_is_a_json_404() {
        for p in [
            "/nope",
            "/refresh/",
            "/callback/",
            "/callback",
            "",
            "/REFRESH",
        ] {
            let r = resolve(TABLE, p, Get);
            assert_eq!(r.miss(), Some((BrokerError::NotFound, Surface::Api)), "{p}");
        }
    }

    #[test]
    fn a_prefix_rows_remainder_is_one_path_segment() {
        assert_eq!(found("/callback/box.com", Get), Some((3, "box.com".into())));
        // Percent-encoding stays encoded in the path: still one segment.
        assert_eq!(found("/callback/a%2Fb", Get), Some((3, "a%2Fb".into())));
        for p in [
            "/callback//callback/demo",
            "/callback/demo/",
            "/callback/demo/extra",
            "/callback//",
            "/callback/../refresh",
        ] {
            let r = resolve(TABLE, p, Get);
            assert_eq!(r.miss(), Some((BrokerError::NotFound, Surface::Api)), "{p}");
        }
    }

    #[test]
    fn a_page_or_api_row_answers_json_to_a_request_that_names_its_authid() {
        assert_eq!(Surface::PageOrApi.for_request(true), Surface::Api);
        assert_eq!(Surface::PageOrApi.for_request(false), Surface::Page);
        assert_eq!(Surface::Page.for_request(true), Surface::Page);
        assert_eq!(Surface::OAuth.for_request(true), Surface::OAuth);
    }

    #[test]
    fn methods_parse_case_sensitively() {
        assert_eq!(Method::parse("GET"), Get);
        assert_eq!(Method::parse("get"), Other);
        assert_eq!(Method::parse("PUT"), Other);
        assert_eq!(PathPattern::Prefix("/callback/").name(), "/callback/*");
        assert_eq!(PathPattern::Tail("/akeeba/").name(), "/akeeba/**");
    }

    #[test]
    fn the_path_inserted_metadata_location_is_a_prefix_row_whose_remainder_is_the_key() {
        // RFC 8414 §3.1 for the issuer `<origin>/k/<key>`
        // (`oauth2::METADATA_PATH_INSERTED_KEY`).
        let p = PathPattern::Prefix("/.well-known/oauth-authorization-server/k/");
        assert_eq!(
            p.matches("/.well-known/oauth-authorization-server/k/K%2B1"),
            Some("K%2B1")
        );
        for miss in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-authorization-server/k/",
            "/.well-known/oauth-authorization-server/k/K/",
            "/.well-known/oauth-authorization-server/k/K/oauth/token",
            "/.well-known/oauth-authorization-server/K",
        ] {
            assert_eq!(p.matches(miss), None, "{miss}");
        }
        let exact = PathPattern::Exact("/.well-known/oauth-authorization-server");
        assert_eq!(
            exact.matches("/.well-known/oauth-authorization-server/k/K"),
            None
        );
    }

    #[test]
    fn a_tail_rows_remainder_may_hold_slashes_but_not_be_empty() {
        let t = PathPattern::Tail("/akeeba/");
        assert_eq!(t.matches("/akeeba/box/refresh"), Some("box/refresh"));
        assert_eq!(
            t.matches("/akeeba/box/refreshhttps://h/akeeba/box/refresh"),
            Some("box/refreshhttps://h/akeeba/box/refresh")
        );
        assert_eq!(t.matches("/akeeba/"), None);
        assert_eq!(t.matches("/akeebax/box"), None);
    }
}
