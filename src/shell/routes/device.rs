//! The device authorization grant (RFC 8628) and the redemption of its device
//! codes at the token endpoint.
//! (Placeholder until the device flow lands: every device code is unknown.)

use crate::error::BrokerError;
use crate::redeem::Redeemed;
use crate::request::Params;
use crate::shell::call::Call;

/// Redeems `device_code` from the token endpoint's form for `client_id`.
pub async fn redeem_device_code(
    _c: &Call,
    _form: &Params,
    _client_id: Option<&str>,
) -> Result<Redeemed, BrokerError> {
    Ok(Redeemed::Invalid("unknown device code"))
}
