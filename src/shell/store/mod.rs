//! D1 access: the only code that writes SQL. Every statement is prepared with
//! bound parameters. A failing statement becomes `StorageUnavailable` (500,
//! retryable) carrying the operation and D1's message for the log (D1's
//! messages name tables and columns, never bound values).
//!
//! - [`vault`]: the `grants` table behind the server keys (speaks `AuthId`/`Grant`).
//! - [`logins`]: `login_states`, logins in progress.
//! - [`handoffs`]: `fetch_tokens`, Duplicati's old-UI hand-off.
//! - [`codes`]: `authorization_codes`, the OAuth 2.0 authorization endpoint's codes.
//! - [`devices`]: `device_codes`, RFC 8628 device authorizations.

pub mod codes;
pub mod devices;
pub mod handoffs;
pub mod logins;
pub mod vault;

use std::rc::Rc;

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::error::BrokerError;

/// The `DB` binding (shared: a refresh that outlives its request keeps it).
#[derive(Clone)]
pub struct Db(Rc<D1Database>);

/// A number as D1 binds it (JavaScript has only doubles; our values are far below 2^53).
pub fn num(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

/// `StorageUnavailable` for the operation `op` that failed with `e`.
fn failed(op: &'static str) -> impl FnOnce(worker::Error) -> BrokerError {
    move |e| {
        BrokerError::storage(format!(
            "d1 {op}: {}",
            BrokerError::one_line(&e.to_string())
        ))
    }
}

impl Db {
    pub fn open(env: &Env) -> Result<Db, BrokerError> {
        env.d1("DB")
            .map(|d| Db(Rc::new(d)))
            .map_err(|_| BrokerError::Misconfigured {
                what: "the D1 binding DB is missing",
            })
    }

    fn statement(
        &self,
        op: &'static str,
        sql: &str,
        args: &[JsValue],
    ) -> Result<D1PreparedStatement, BrokerError> {
        self.0.prepare(sql).bind(args).map_err(failed(op))
    }

    /// The first row of a query (or of a `… RETURNING` write).
    async fn first<T: DeserializeOwned>(
        &self,
        op: &'static str,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Option<T>, BrokerError> {
        self.statement(op, sql, args)?
            .first(None)
            .await
            .map_err(failed(op))
    }

    /// Runs one write statement and returns how many rows it changed.
    async fn changes(
        &self,
        op: &'static str,
        sql: &str,
        args: &[JsValue],
    ) -> Result<usize, BrokerError> {
        let result = self
            .statement(op, sql, args)?
            .run()
            .await
            .map_err(failed(op))?;
        Ok(result
            .meta()
            .ok()
            .flatten()
            .and_then(|m| m.changes)
            .unwrap_or(0))
    }

    /// Runs `sql` after deleting the expired rows of `table`, in one batch (so
    /// expired single-use rows never pile up).
    async fn insert_after_gc(
        &self,
        op: &'static str,
        table: &str,
        now: i64,
        sql: &str,
        args: &[JsValue],
    ) -> Result<(), BrokerError> {
        let gc = self.statement(
            op,
            &format!("DELETE FROM {table} WHERE expires_at <= ?1"),
            &[num(now)],
        )?;
        let insert = self.statement(op, sql, args)?;
        self.0.batch(vec![gc, insert]).await.map_err(failed(op))?;
        Ok(())
    }
}
