//! The one HTTP client to the gateway, and the reader of its answers.
//!
//! A [`Gateway`] is built once per process and shared: reqwest keeps a keep-alive pool (and
//! HTTP/2 where the gateway offers it), so a warm request costs one write and one read, not
//! a TLS handshake. Nothing here holds a lock; a [`Reply`] is owned by the one request that
//! reads it, and dropping it drops the upstream connection's request at once (that is how
//! `$/cancelRequest` reaches the gateway).
//!
//! The gateway also holds the cap on upstream requests in flight (`max_in_flight`): an
//! editor that fires a completion per keystroke, or many clients at once, must not open
//! hundreds of connections and meet 429s; the rest wait their turn. A request holds its
//! slot from the moment it is sent until its [`Reply`] is dropped (a stream counts while it
//! streams), and gives it back while it waits to retry.
//!
//! One file per concern: [`request`] sends one attempt and reads its headers, [`retry`]
//! decides when to send again, [`reply`] reads the answer piece by piece, [`http`] holds the
//! small HTTP helpers (bearer headers, bounded body reads, transport errors).

pub mod answer;
pub mod budget;
mod http;
pub mod models;
pub use crate::config::options;
mod reply;
mod request;
mod retry;
#[cfg(test)]
mod sse_split_tests;
pub mod stream_limits;
mod tls;
pub mod upstream_error;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::config::ProcessSettings;
use crate::error::Error;
pub use answer::Answer;
use budget::Budgets;
pub use reply::{Reply, pieces_from_chunks};
pub use request::UpstreamRequest;
pub use retry::RetryPolicy;

#[derive(Clone)]
pub struct Gateway {
    /// Built beside start-up (loading the root certificates takes milliseconds that
    /// `initialize` should not wait for); the first request waits for it if it must.
    http: Arc<OnceCell<reqwest::Client>>,
    connect_timeout: Duration,
    /// One permit per upstream request allowed in flight.
    slots: Arc<Semaphore>,
    /// Requests waiting for a slot.
    queued: Arc<AtomicU64>,
    /// The rate budget of each upstream, shared by every client of the process.
    budgets: Budgets,
}

/// Counts a request as queued while it waits for a slot (also when it is cancelled then).
struct Queued<'a>(&'a AtomicU64);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gateway {
    pub fn new(settings: ProcessSettings) -> Result<Gateway, Error> {
        let gateway = Gateway {
            http: Arc::new(OnceCell::new()),
            connect_timeout: settings.connect_timeout,
            slots: Arc::new(Semaphore::new(settings.max_in_flight)),
            queued: Arc::default(),
            budgets: Budgets::default(),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (cell, timeout) = (gateway.http.clone(), gateway.connect_timeout);
            runtime.spawn(async move {
                let _ = cell.get_or_try_init(|| build_client(timeout)).await;
            });
        }
        Ok(gateway)
    }

    /// The one pooled client, once built.
    pub(crate) async fn http(&self) -> Result<&reqwest::Client, Error> {
        let timeout = self.connect_timeout;
        self.http.get_or_try_init(|| build_client(timeout)).await
    }

    /// The rate budgets, for `cfgate/status` and `cfgate/didChangeStatus`.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Requests waiting for a slot under the `max_in_flight` cap.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Waits for a slot under the in-flight cap.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, Error> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _queued = Queued(&self.queued);
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::internal("the request queue is closed"))
    }
}

/// Builds the pooled client on the blocking pool: reading the system's root certificates
/// is file I/O.
async fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, Error> {
    let built = tokio::task::spawn_blocking(move || {
        // One process-wide crypto provider; a second install (tests, embedders) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .user_agent(concat!("cfgate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
    })
    .await;
    match built {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(Error::internal(format!(
            "cannot build the HTTP client: {e}"
        ))),
        Err(e) => Err(Error::internal(format!(
            "cannot build the HTTP client: {e}"
        ))),
    }
}
