//! Who is connected, and the one status every client shows.
//!
//! On the shared daemon several editors share one core; each should be able to show the
//! same status icon and `cfgate/status` should say who else is there. The registry is the
//! single place both live: a connection registers itself (with the queue its frames go
//! through) for as long as it is open, and the daemon's state changes are sent to every
//! registered client as `cfgate/didChangeStatus`. Sending never waits (`try_notify`): a
//! client that does not read must not stall the others, and state changes are noticed in
//! `Drop` paths that cannot await. The lock guards plain data and is never held across
//! an `.await`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::error::ErrorKind;
pub use crate::protocol::{ConnectedClient, DID_CHANGE_STATUS, State, StatusChange};

/// Where a connection's notifications go. Each front end implements it for its own queue
/// (the stdio outbox, the endpoint's subscriptions), so the registry never names a
/// transport. It must never wait: it is called under the registry's lock and from `Drop`.
pub trait Notifier: Send + Sync {
    fn notify(&self, method: &str, params: &Value);
}

struct Entry {
    info: ConnectedClient,
    notifier: Arc<dyn Notifier>,
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<u64, Entry>,
    state: Option<State>,
    /// Counted here, under the same lock as the state, so that busy and ready cannot be
    /// sent out of order by two requests starting and ending at once.
    in_flight: u64,
}

#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
}

/// A connection's place in the registry; leaving it (drop) unregisters the client.
pub struct ClientHandle {
    id: u64,
    clients: Arc<Clients>,
}

impl Clients {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    pub fn register(self: &Arc<Self>, notifier: Arc<dyn Notifier>) -> ClientHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            info: ConnectedClient {
                name: None,
                version: None,
            },
            notifier,
        };
        self.lock().entries.insert(id, entry);
        ClientHandle {
            id,
            clients: self.clone(),
        }
    }

    pub fn list(&self) -> Vec<ConnectedClient> {
        self.lock()
            .entries
            .values()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Tells every client, if the state changed.
    fn set_state(inner: &mut Inner, state: State, message: Option<String>) {
        if inner.state == Some(state) {
            return;
        }
        inner.state = Some(state);
        let change = StatusChange { state, message };
        let change_json = serde_json::to_value(&change).unwrap_or(Value::Null);
        for entry in inner.entries.values() {
            entry.notifier.notify(DID_CHANGE_STATUS, &change_json);
        }
    }

    /// A gateway's budget started (`true`) or ended (`false`) its cool-down after a 429.
    pub fn cooling(&self, on: bool) {
        let mut inner = self.lock();
        if on {
            let message = "a gateway answered 429: chat waits, completions are shed";
            Self::set_state(&mut inner, State::RateLimited, Some(message.into()));
        } else if inner.state == Some(State::RateLimited) {
            let state = if inner.in_flight > 0 {
                State::Busy
            } else {
                State::Ready
            };
            Self::set_state(&mut inner, state, None);
        }
    }

    /// A request started: the first one in flight makes the daemon busy.
    pub fn request_started(&self) {
        let mut inner = self.lock();
        inner.in_flight += 1;
        if inner.in_flight == 1 {
            Self::set_state(&mut inner, State::Busy, None);
        }
    }

    /// A request ended: when it was the last in flight, the state says how it ended.
    pub fn request_ended(&self, failure: Option<(ErrorKind, String)>) {
        let mut inner = self.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        if inner.in_flight > 0 {
            return;
        }
        let (state, message) = match failure {
            Some((kind, message)) => match state_after(kind) {
                State::Ready => (State::Ready, None),
                state => (state, Some(message)),
            },
            None => (State::Ready, None),
        };
        Self::set_state(&mut inner, state, message);
    }
}

/// The state a request that failed with `kind` leaves, when it was the last in flight:
/// `unauthorized` for credentials, `error` for what the user must act on or wait out
/// (docs/protocol.md, `cfgate/didChangeStatus`), `ready` where the request itself was at
/// fault and the daemon is fine. Exhaustive, so a new kind must be placed here.
pub fn state_after(kind: ErrorKind) -> State {
    match kind {
        ErrorKind::Unauthorized | ErrorKind::MissingCredentials => State::Unauthorized,
        ErrorKind::InvalidSetting
        | ErrorKind::Upstream
        | ErrorKind::RateLimited
        | ErrorKind::QuotaExceeded
        | ErrorKind::Blocked
        | ErrorKind::Unavailable
        | ErrorKind::Network
        | ErrorKind::Timeout
        | ErrorKind::StreamCut
        | ErrorKind::BadResponse
        | ErrorKind::TooLarge
        | ErrorKind::Internal => State::Error,
        ErrorKind::InvalidParams | ErrorKind::InvalidModel | ErrorKind::NotJson => State::Ready,
    }
}

impl ClientHandle {
    /// Records the client's `clientInfo` from `initialize`.
    pub fn set_info(&self, name: String, version: Option<String>) {
        if let Some(entry) = self.clients.lock().entries.get_mut(&self.id) {
            entry.info = ConnectedClient {
                name: Some(name),
                version,
            };
        }
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.clients.lock().entries.remove(&self.id);
    }
}
