//! What cfgate does, apart from how it is reached: chat, complete, models, status.
//!
//! Every front end (the stdio server, the loopback endpoint, the one-shot CLI) calls the
//! same [`Service`], so a behaviour is written once. Work flows one way: front end →
//! service → gateway, and back as a stream of pieces that the front end forwards as it
//! likes; the service names no front end (a client's notifications go through the
//! [`Notifier`](crate::clients::Notifier) it registered). Nothing here blocks and no lock is
//! held across an `.await`: the settings a request uses are resolved into an owned value
//! before anything is sent. One file per concern: [`prepare`] (a chat's upstream request
//! built), [`chat`] (sent, and its sessions), [`completion`] (and [`coalesce`]: identical
//! ones in flight sent once), [`models`] (and their cache), [`status`] (and the counters
//! behind it).

mod chat;
mod client_view;
mod coalesce;
mod completion;
mod counters;
mod models;
mod prepare;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) use crate::sync::lock;
use std::time::Instant;

pub use chat::Chat;
pub use completion::Completion;
pub use models::MODELS_TTL;

use crate::clients::{ClientHandle, ConnectedClient, Notifier};
use crate::config::{self, Layer, Settings};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::gateway::models::ModelInfo;
use crate::sessions::{SessionResult, SessionStore, SessionSummary};
use counters::Counters;

/// About 2,000 tokens of code: enough to see the function being written and its
/// neighbours, small enough to answer quickly.
pub const DEFAULT_COMPLETION_CONTEXT_CHARS: usize = 8000;

pub struct Service {
    gateway: Gateway,
    /// Environment over config file: fixed for the life of the process.
    base: Layer,
    started: Instant,
    counters: Arc<Counters>,
    /// Model lists by URL: fetched at, list. Locked only to read or replace an entry.
    /// Shared with the views made by [`Service::for_client`].
    models: Arc<Mutex<ModelCache>>,
    sessions: Arc<SessionStore>,
    /// Completions in flight, so identical ones (any client's) share one upstream request.
    completions: Arc<coalesce::InFlightCompletions>,
    /// The config file could not be used: every request fails with this, naming it.
    config_error: Option<Error>,
    /// Started with the first client (on the runtime), see `tell_clients_of_cool_downs`;
    /// shared with every client's view, so one task watches for the whole daemon.
    watching_cool_downs: Arc<std::sync::Once>,
    /// Set once when the shared daemon is stopped: every request in flight is answered
    /// `daemon_stopped` (see `server/answer_on_stop.rs`). Shared with [`Service::for_client`].
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// On the shared daemon, what `cfgate/status` tells this client of the daemon.
    daemon: Option<crate::protocol::DaemonFacts>,
}

/// Model lists by the URL they came from, with when they were fetched.
type ModelCache = HashMap<String, (Instant, Arc<Vec<ModelInfo>>, &'static str)>;

impl Service {
    pub fn new(base: Layer) -> Result<Service, Error> {
        let service = Service {
            gateway: Gateway::new(base.process_settings())?,
            base,
            started: Instant::now(),
            counters: Arc::default(),
            models: Arc::default(),
            sessions: Arc::new(SessionStore::from_env()),
            completions: Arc::default(),
            config_error: None,
            watching_cool_downs: Arc::new(std::sync::Once::new()),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            daemon: None,
        };
        Ok(service)
    }

    /// Every client's status shows a cool-down while one runs (`rate_limited`). The task
    /// sleeps on a channel: no wake-up while nothing changes.
    fn tell_clients_of_cool_downs(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut cooling = self.gateway.budgets().cooling();
        let counters = self.counters.clone();
        runtime.spawn(async move {
            while cooling.changed().await.is_ok() {
                let on = *cooling.borrow_and_update();
                counters.clients.cooling(on);
            }
        });
    }

    /// A service whose config file could not be used: it still starts (a daemon must answer
    /// `initialize` and `cfgate/status` to say why), but every request fails with the error.
    pub fn with_config_error(mut self, error: &config::ConfigError) -> Service {
        self.config_error = Some(Error::from(error));
        self
    }

    /// Why nothing can be sent: the config file could not be used.
    pub fn config_error(&self) -> Option<&Error> {
        self.config_error.as_ref()
    }

    /// Registers a connection (with the queue of its frames) for `cfgate/status` and
    /// `cfgate/didChangeStatus`, while the handle lives.
    pub fn register_client(&self, notifier: Arc<dyn Notifier>) -> ClientHandle {
        self.watching_cool_downs
            .call_once(|| self.tell_clients_of_cool_downs());
        self.counters.clients.register(notifier)
    }

    pub fn clients(&self) -> Vec<ConnectedClient> {
        self.counters.clients.list()
    }

    /// `cfgate/sessions`.
    pub async fn sessions(&self) -> Result<Vec<SessionSummary>, Error> {
        self.sessions.list().await
    }

    /// `cfgate/session`: every stored message of one session.
    pub async fn session(&self, name: &str) -> Result<SessionResult, Error> {
        let turns = self.sessions.load(name).await?;
        Ok(SessionResult::new(name, turns))
    }

    /// `cfgate/sessionDelete`: whether there was such a session.
    pub async fn delete_session(&self, name: &str) -> Result<bool, Error> {
        self.sessions.delete(name).await
    }

    /// The settings for a request: the request's own over the client's over the base.
    fn settings(&self, client: &Layer, request: &Layer) -> Result<Settings, Error> {
        if let Some(err) = &self.config_error {
            return Err(err.clone());
        }
        Ok(request.over(&client.over(&self.base)).resolve()?)
    }

    /// Whether `initialize` offers the plain-LSP features to this client.
    pub fn language_features(&self, client: &Layer) -> bool {
        client.over(&self.base).language_features.unwrap_or(true)
    }

    /// How many chars of a document an editor's completion sends around the cursor.
    pub fn completion_context_chars(&self, client: &Layer) -> usize {
        client
            .over(&self.base)
            .completion_context_chars
            .unwrap_or(DEFAULT_COMPLETION_CONTEXT_CHARS)
    }
}
