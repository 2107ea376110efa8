//! Work that must finish whatever the client does. A Workers request whose
//! client disconnects is cancelled together with everything it awaits; work
//! handed to `ctx.wait_until` runs on (Cloudflare allows it up to 30 s past
//! the response). The request waits for the work's result through a oneshot
//! channel, bounded by its own deadline.

use std::future::Future;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use worker::{Context, Delay};

use crate::refresh::Detach;

/// Hands work to the request's `wait_until`.
pub struct WaitUntil<'a>(pub &'a Context);

impl Detach for WaitUntil<'_> {
    async fn finish<T: 'static>(
        &self,
        work: impl Future<Output = T> + 'static,
        wait_ms: u64,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.0.wait_until(async move {
            // The request may have stopped listening; the work is done anyway.
            let _ = tx.send(work.await);
        });
        let deadline = Delay::from(Duration::from_millis(wait_ms));
        match select(rx, Box::pin(deadline)).await {
            Either::Left((Ok(result), _)) => Some(result),
            Either::Left((Err(_), _)) | Either::Right(_) => None,
        }
    }
}
