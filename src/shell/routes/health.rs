//! `GET /healthz`: liveness, no work and no limits.

use crate::shell::call::Call;
use crate::shell::respond::{text, Out};

pub async fn get(_: &mut Call) -> Out {
    text("ok")
}
