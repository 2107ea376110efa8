//! oauth-broker: an OAuth2 token broker for unattended backup software.
//!
//! Functional core, thin shell: every module except `shell` is plain Rust that
//! compiles and is unit-tested natively. `shell` (wasm32 only) wires routes to
//! the core and touches the Workers runtime (D1, fetch, secrets).

pub mod access;
pub mod account;
pub mod akeeba;
pub mod authid;
pub mod authorize;
pub mod cli_token;
pub mod config;
pub mod cookie;
pub mod d1work;
pub mod device;
pub mod digest;
pub mod doctor;
pub mod error;
pub mod grant;
pub mod handler_move;
pub mod handoff;
pub mod headers;
pub mod ids;
pub mod login;
pub mod memo;
pub mod next_step;
pub mod oauth2;
pub mod opener;
pub mod pages;
pub mod pkce;
pub mod providers;
pub mod random;
pub mod reauthorize;
pub mod redeem;
pub mod refresh;
pub mod request;
pub mod route;
pub mod seal;
pub mod secret;
pub mod status;
pub mod storage;
pub mod upstream;

#[cfg(target_arch = "wasm32")]
mod shell;
