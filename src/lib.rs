//! cfgate: one daemon between editors (or scripts) and Cloudflare AI Gateway.
//!
//! Data flows one way: a front end ([`server`] on stdio, `endpoint` on loopback HTTP and
//! WebSocket, `shared` for the per-user daemon, the CLI) → [`service`] (chat, complete,
//! models, status; transport-free) → [`gateway`] (the pooled HTTP client and the reader of
//! answers). Nothing below names anything above it. The modules stand on floors, bottom
//! first; a module names only modules on its own floor or below, and the graph has no
//! cycle (`tests/architecture.rs` reads this list and checks both):
//!
//! 0. `error`, `protocol`, `route`, `sync`, `memo`: the error every caller sees, the wire
//!    types of `docs/protocol.md`, model id routing, the one lock helper, a tiny memo.
//! 1. `config`, `client_layers`, `auth`, `complete`, `actions`, `documents`, `suggest`,
//!    `hardening`, `shutdown`, `parent`, `logging`: settings (and the layers a shared-daemon
//!    client sends) and which credential goes in which header, the
//!    completion and code-action prompts, open documents and the context around a cursor,
//!    process-wide plumbing.
//! 2. `gateway`: the upstream client.
//! 3. `sessions`, `clients`: stored conversations; who is connected (a client's
//!    notifications go through the [`clients::Notifier`] its front end implements).
//! 4. `service`: the work, shared by every front end.
//! 5. `server`, `endpoint`, `openai`, `cors`: the stdio front end (LSP framing, plain-LSP
//!    features), the loopback HTTP/WebSocket one, the OpenAI-compatible API the latter
//!    serves, and its answers to browsers.
//! 6. `shared`, `shared_client`: the per-user shared daemon and the CLI's way into it
//!    (Unix only).

// `Error` carries everything a plugin shows (hint, partial content); it is built once per
// failed request, so its size is not worth boxing.
#![allow(clippy::result_large_err)]

pub mod actions;
pub mod auth;
pub mod client_layers;
pub mod clients;
pub mod complete;
pub mod config;
#[cfg(unix)]
pub mod cors;
pub mod documents;
#[cfg(unix)]
pub mod endpoint;
pub mod error;
pub mod gateway;
pub mod hardening;
pub mod logging;
pub mod memo;
#[cfg(unix)]
pub mod openai;
pub mod parent;
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
pub mod sync;
