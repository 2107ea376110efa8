//! `GET /privacy`: the broker's privacy page (`pages::privacy`), for a
//! provider's consent screen; only when the operator set `PRIVACY_CONTACT`.

use crate::error::BrokerError;
use crate::pages;
use crate::shell::call::Call;
use crate::shell::respond::{html, Out};

pub async fn get(c: &mut Call) -> Out {
    match &c.cfg.privacy_contact {
        Some(contact) => Ok(html(pages::privacy(contact))),
        None => Err(BrokerError::NotFound),
    }
}
