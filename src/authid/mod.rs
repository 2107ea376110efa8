//! Authids: what a user pastes into the backup client instead of a provider
//! token. One file per concern:
//!
//! - `v1.rs`: a stored grant's `<keyid>:<secret>`, in our spelling and in
//!   those of Duplicati's two services (whose grants move here unchanged);
//! - `shard_tag.rs`: `s<k>:` before our spelling names its grant's shard;
//! - `v2.rs`: a pass-through `v2:<provider-id>:<refresh_token>` (nothing
//!   stored), its one spelling of every token;
//! - `mint.rs`: a fresh v1 authid; `strength.rs`: whether a secret looks random;
//! - `parse.rs`: an authid as a client sent it; `error.rs`: why one is refused.
//!
//! Every spelling contains `:` because Duplicati treats an authid without one
//! as a raw access token (duplicati/duplicati
//! `Duplicati/Library/Backend/Dropbox/DropboxHelper.cs` L45). Parse errors
//! never contain the input. The spellings, and why every client carries a
//! tagged one unchanged: `docs/reference.md`, "Authids".

mod error;
mod mint;
mod parse;
mod shard_tag;
mod strength;
mod v1;
mod v2;

pub use error::AuthIdError;
pub use mint::redacted_in_urls;
pub use parse::{parse_authid, ParsedAuthId};
pub use strength::{plausible_refresh_token, WEAK_AUTHID};
pub use v1::{AuthId, AuthIdFormat};
pub use v2::{next_v2_authid, v2_authid, MAX_AUTHID_LEN};
