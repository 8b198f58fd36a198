//! cfgate: one daemon between editors (or scripts) and Cloudflare AI Gateway.
//!
//! Module map, in the direction data flows: [`server`] (LSP framing over stdio) →
//! [`service`] (chat, complete, status) → [`gateway`] (the pooled HTTP client and the
//! reader of answers). [`config`] resolves settings, [`auth`] decides which credential
//! goes in which header, [`route`] turns model ids into what each endpoint routes, [`protocol`] holds the wire types documented in `docs/protocol.md`.
//! For editors with no plugin, [`documents`], [`suggest`] and [`actions`] make the LSP
//! front end a plain language server (inline completion, code actions).
//! Around the service: [`sessions`] keeps conversations, [`clients`] knows who is
//! connected, `shared` runs the one per-user daemon that every `serve --shared` joins,
//! `endpoint` serves the same methods over loopback HTTP/WebSocket, and `shared_client`
//! is the CLI's way into the shared daemon (the last three Unix only).

// `Error` carries everything a plugin shows (hint, partial content); it is built once per
// failed request, so its size is not worth boxing.
#![allow(clippy::result_large_err)]

pub mod actions;
pub mod auth;
pub mod client_layers;
pub mod clients;
pub mod complete;
pub mod config;
pub mod documents;
#[cfg(unix)]
pub mod endpoint;
pub mod error;
pub mod gateway;
pub mod hardening;
pub mod logging;
pub mod protocol;
pub mod route;
pub mod server;
pub mod service;
pub mod sessions;
#[cfg(unix)]
pub mod shared;
#[cfg(unix)]
pub mod shared_client;
pub mod shutdown;
pub mod suggest;
