//! Redeeming a one-time code at the token endpoint: an authorization code
//! (RFC 6749 §4.1.3) or a device code (RFC 8628 §3.4). Failure-atomic: the
//! answer is the first answer sealed with the code (`crate::redeem`), opened
//! before the code is spent. The decisions are `crate::authorize`'s and
//! `crate::device`'s.

use super::revoke::{revoke, Revoker};
use crate::authorize;
use crate::device::{self, Poll};
use crate::error::BrokerError;
use crate::redeem::{Issuance, Redeemed};
use crate::request::{single, Params};
use crate::seal::{Pending, SealError, Sealed};
use crate::shell::call::Call;
use crate::storage::{Codes as _, Devices as _};

/// Opens the first answer sealed with a code (`purpose`, under `secret`):
/// `None` if it does not open or is not one (a tampered or foreign row).
fn open_issuance(
    c: &Call,
    purpose: Pending,
    secret: &str,
    sealed: &Sealed,
) -> Result<Option<Issuance>, BrokerError> {
    match c.cfg.keys()?.open_pending(purpose, secret, sealed) {
        Ok(plain) => Ok(Issuance::from_bytes(&plain)),
        Err(SealError::Open) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Redeems `code` from the token endpoint's form for `client_id`
/// (RFC 6749 §4.1.3). The presentation is checked before anything is counted
/// (a refused one spends nothing), the first answer opened, and only then the
/// code spent: the answer is the opened one, so nothing can fail after the
/// spend. A second successful presentation is a replay: the grant is deleted
/// (§4.1.2), and revoked at the provider only where that ends this grant alone.
pub async fn redeem_code(
    c: &Call,
    form: &Params,
    client_id: Option<&str>,
) -> Result<Redeemed, BrokerError> {
    let Some(code) = single(form, "code")?.filter(|s| !s.is_empty()) else {
        return Ok(Redeemed::Invalid("code is missing"));
    };
    let hash = authorize::code_hash(code);
    let now = c.cfg.now;
    let db = c.db()?;
    let found = db.code(&hash).await?;
    let (record, sealed) = match found {
        Some((r, s)) => (Some(r), Some(s)),
        None => (None, None),
    };
    let checked = authorize::check_redemption(
        record.as_ref(),
        client_id,
        single(form, "redirect_uri")?,
        single(form, "code_verifier")?,
        now,
    );
    if let Err(why) = checked {
        return Ok(Redeemed::Invalid(why));
    }
    let unknown = Redeemed::Invalid("unknown or already used authorization code");
    let Some(sealed) = sealed else {
        return Ok(unknown);
    };
    let issuance = open_issuance(c, Pending::AuthorizationCode, code, &sealed)?;
    let Some(issuance) = issuance else {
        return Ok(unknown);
    };
    // The spend. A D1 error here is answered as transient and, the count not
    // having moved, the client's retry is a first presentation again; a spend
    // that committed with its answer lost is read back as this one's.
    let Some(count) = db.redeem_code(&hash, now).await? else {
        return Ok(Redeemed::Invalid("the authorization code has expired"));
    };
    match authorize::claimed(count) {
        Ok(()) => Ok(Redeemed::Issued(issuance)),
        Err(why) => {
            // Best effort: the answer is invalid_grant either way; a grant
            // already revoked (or one that fails to) is logged, not shown.
            if let Some(authid) = issuance.authid() {
                if let Err(e) = revoke(c, authid, Revoker::Replay).await {
                    if let Some(cause) = e.cause() {
                        crate::shell::log::warn(
                            "replay_revocation_failed",
                            serde_json::json!({ "cause": cause }),
                        );
                    }
                }
            }
            Ok(Redeemed::Invalid(why))
        }
    }
}

/// Redeems `device_code` from the token endpoint's form for `client_id`
/// (RFC 8628 §3.4, §3.5).
pub async fn redeem_device_code(
    c: &Call,
    form: &Params,
    client_id: Option<&str>,
) -> Result<Redeemed, BrokerError> {
    let Some(code) = single(form, "device_code")?.filter(|s| !s.is_empty()) else {
        return Ok(Redeemed::Invalid("device_code is missing"));
    };
    let hash = device::device_code_hash(code);
    let db = c.db()?;
    let now = c.cfg.now;
    let record = db.device(&hash).await?;
    match device::poll(record.as_ref(), client_id, now) {
        Poll::Answer(a) => Ok(a),
        Poll::Wait { answer, interval } => {
            db.record_poll(&hash, interval, now).await?;
            Ok(answer)
        }
        Poll::Take => {
            let Some(sealed) = db.take_approved_device(&hash, now).await? else {
                // Another poll took it a moment ago.
                return Ok(Redeemed::Invalid("unknown or already used device code"));
            };
            // The answer is the sealed first answer: nothing after the
            // take can fail (`crate::redeem`).
            let opened = open_issuance(c, Pending::DeviceCode, &hash, &sealed)?;
            match opened {
                Some(issuance) => Ok(Redeemed::Issued(issuance)),
                None => Ok(Redeemed::Invalid("unknown or already used device code")),
            }
        }
    }
}
