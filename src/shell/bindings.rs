//! The Worker's bindings read into a [`Config`]: the one place the shell
//! turns `env` vars and secrets into configuration (`config.rs` decides what
//! they mean).

use worker::Env;

use super::clock;
use crate::config::Config;

/// The configuration for a request from `origin` (empty for the Cron
/// Trigger, which has none), at the runtime's current time.
pub fn config(env: &Env, origin: String) -> Config {
    let env = env.clone();
    Config::from_bindings(
        move |name: &str| env.var(name).ok().map(|v| v.to_string()),
        origin,
        clock::now(),
    )
}
