//! The OAuth 2.0 authorization endpoint for native apps (RFC 6749 §4.1,
//! RFC 8252) and the redemption of its codes at the token endpoint.
//! (Placeholder until the authorization endpoint lands: every code is unknown.)

use crate::error::BrokerError;
use crate::redeem::Redeemed;
use crate::request::Params;
use crate::shell::call::Call;

/// Redeems `code` from the token endpoint's form for `client_id`.
pub async fn redeem_code(
    _c: &Call,
    _form: &Params,
    _client_id: Option<&str>,
) -> Result<Redeemed, BrokerError> {
    Ok(Redeemed::Invalid("unknown authorization code"))
}
