//! cfgate: one daemon between editors (or scripts) and Cloudflare AI Gateway.
//!
//! Module map, in the direction data flows: [`server`] (LSP framing over stdio) →
//! [`service`] (chat, complete, status) → [`gateway`] (the pooled HTTP client and the
//! reader of answers). [`config`] resolves settings, [`route`] turns model ids into what the
//! gateway routes, [`protocol`] holds the wire types documented in `docs/protocol.md`.

// `Error` carries everything a plugin shows (hint, partial content); it is built once per
// failed request, so its size is not worth boxing.
#![allow(clippy::result_large_err)]

pub mod complete;
pub mod config;
pub mod error;
pub mod gateway;
pub mod hardening;
pub mod logging;
pub mod protocol;
pub mod route;
pub mod server;
pub mod service;
