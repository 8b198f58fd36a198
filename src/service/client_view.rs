//! The service as one client of the shared daemon sees it: that client's own settings in
//! place of the daemon's, everything else shared; and the daemon's stop, which every
//! client's requests in flight are answered with.

use std::sync::Arc;

use super::Service;
use crate::config::{ConfigError, Layer};
use crate::error::Error;
use crate::protocol::DaemonFacts;

impl Service {
    /// This service as one client of a shared daemon sees it: that client's own settings
    /// (its environment over its config file, or its config file's error) in place of the
    /// daemon's, and everything else shared: the connection pool and its cap, the request
    /// counts, the connected clients, the sessions, the model lists and the completions in
    /// flight.
    pub fn for_client(&self, base: Layer, config_error: Option<&ConfigError>) -> Service {
        Service {
            gateway: self.gateway.clone(),
            base,
            started: self.started,
            counters: self.counters.clone(),
            models: Arc::clone(&self.models),
            sessions: self.sessions.clone(),
            completions: self.completions.clone(),
            config_error: config_error.map(Error::from),
            stopping: self.stopping.clone(),
            daemon: self.daemon.clone(),
            watching_cool_downs: self.watching_cool_downs.clone(),
        }
    }

    /// What `cfgate/status` says of the shared daemon serving this client.
    pub fn with_daemon_facts(mut self, facts: DaemonFacts) -> Service {
        self.daemon = Some(facts);
        self
    }

    /// The shared daemon is stopping: answer every request in flight `daemon_stopped`.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Turns true when [`Service::stop`] is called.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }
}
