//! One request as the handlers see it: the runtime request, the configuration
//! built once from the bindings, the parsed query, and the storage it may use.

use std::rc::Rc;

use futures_util::StreamExt;
use worker::{Context, Env, Request};

use super::faults::Faults;
use super::store::shards;
use super::store::vault::Vault;
use super::store::{D1Work, Db};
use crate::authid::AuthId;
use crate::config::Config;
use crate::error::BrokerError;
use crate::request::{admit_declared_length, parse_params, single, CappedBody, Params, BAD_BODY};

pub struct Call {
    pub req: Request,
    pub env: Env,
    /// For work that must outlive the client's connection (`wait_until`).
    pub ctx: Context,
    /// Shared with such work.
    pub cfg: Rc<Config>,
    pub query: Params,
    /// What a prefix route matched after its prefix (`/callback/<rest>`).
    pub rest: String,
    /// The key of a `/k/<key>/` path prefix (`crate::access::split_key_prefix`).
    pub path_key: Option<String>,
    /// That prefix as the request spelled it (`/k/<key>`), or empty: links and
    /// redirects to the broker's gated routes start with it.
    pub base: String,
    /// The D1 statements this request sent, on every shard (`Server-Timing`).
    pub d1_work: Rc<D1Work>,
    /// The D1 faults this request asks for (test builds only: `super::faults`).
    pub faults: Faults,
    /// Where an error page's *Try again* leads, when the handler knows better
    /// than the request's path (`crate::next_step::restart_href`): a failed
    /// re-authorization is tried again as one, not as a new login.
    pub restart: Option<String>,
}

impl Call {
    pub fn new(req: Request, env: Env, ctx: Context, cfg: Config, query: Params) -> Call {
        Call {
            faults: Faults::from_request(&req),
            req,
            env,
            ctx,
            cfg: Rc::new(cfg),
            query,
            rest: String::new(),
            path_key: None,
            base: String::new(),
            d1_work: Rc::default(),
            restart: None,
        }
    }

    /// The single value of query parameter `name` (a repeated one is refused).
    pub fn query(&self, name: &str) -> Result<Option<&str>, BrokerError> {
        single(&self.query, name)
    }

    /// A request header, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.req.headers().get(name).ok().flatten()
    }

    /// The body, at most `MAX_FORM_BYTES`: refused on its declared
    /// `Content-Length` before any of it is read, and otherwise (chunked)
    /// streamed and refused as soon as it passes the cap.
    pub async fn body(&mut self) -> Result<Vec<u8>, BrokerError> {
        // Judged before a byte is read. The unread body is left to the runtime
        // (cancelling it made `wrangler dev`'s proxy fail the next request on
        // the same connection); note that `wrangler dev` also drains an unread
        // body before passing the answer on, which Cloudflare does not.
        admit_declared_length(self.header("Content-Length").as_deref())?;
        if self.req.inner().body().is_none() {
            return Ok(Vec::new());
        }
        // Dropping the stream early (over the cap) cancels the rest of the body.
        let mut stream = self.req.stream().map_err(|_| BAD_BODY)?;
        let mut body = CappedBody::default();
        while let Some(chunk) = stream.next().await {
            body.push(&chunk.map_err(|_| BAD_BODY)?)?;
        }
        Ok(body.into_bytes())
    }

    /// The body as `application/x-www-form-urlencoded` pairs.
    pub async fn form(&mut self) -> Result<Params, BrokerError> {
        let text = String::from_utf8(self.body().await?).map_err(|_| BrokerError::BadRequest {
            code: "bad_body",
            what: "the request body is not UTF-8 form data",
        })?;
        Ok(parse_params(&text))
    }

    /// Shard 1's database: logins, hand-offs, codes (`store` says why).
    pub fn db(&self) -> Result<Db, BrokerError> {
        shards::first(&self.env, &self.cfg, &self.d1_work, self.faults.clone())
    }

    /// The grants on every shard, opened with the server keys.
    pub fn vault(&self) -> Result<Vault, BrokerError> {
        Ok(Vault::new(
            self.env.clone(),
            self.cfg.clone(),
            self.d1_work.clone(),
            self.cfg.keys()?.clone(),
            self.faults.clone(),
        ))
    }

    /// The per-IP rate-limit key of the client (`crate::access::client_key`).
    pub fn client_key(&self) -> Result<String, BrokerError> {
        crate::access::client_key(self.header("CF-Connecting-IP").as_deref())
    }

    /// The rate-limit key of the client's network (`crate::access::network_key`).
    pub fn network_key(&self) -> Result<String, BrokerError> {
        crate::access::network_key(self.header("CF-Connecting-IP").as_deref())
    }

    /// The stored (v1) authid in the `X-AuthID` header (operator tools).
    pub fn authid_header(&self) -> Result<AuthId, BrokerError> {
        let raw = self.header("X-AuthID").unwrap_or_default();
        crate::request::stored_authid(&raw)
    }
}
