//! What `cfgate/status` counts and `cfgate/didChangeStatus` tells: requests in flight,
//! failed and retried, and the connected clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clients::Clients;
use crate::error::{Error, ErrorKind};

#[derive(Default)]
pub(super) struct Counters {
    pub(super) total: AtomicU64,
    pub(super) in_flight: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) clients: Arc<Clients>,
}

/// Counts a request as in flight until dropped, whether it finished, failed or was cancelled.
/// The first in flight turns the status busy; the last to end settles it by how it ended.
pub(super) struct CountedRequest {
    counters: Arc<Counters>,
    pub(super) failed: Option<(ErrorKind, String)>,
}

impl CountedRequest {
    pub(super) fn start(counters: &Arc<Counters>) -> CountedRequest {
        counters.total.fetch_add(1, Ordering::Relaxed);
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        counters.clients.request_started();
        CountedRequest {
            counters: counters.clone(),
            failed: None,
        }
    }

    pub(super) fn fail<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &result {
            if self.failed.is_none() {
                self.failed = Some((e.kind, e.message.clone()));
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

impl Drop for CountedRequest {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.counters.clients.request_ended(self.failed.take());
    }
}
