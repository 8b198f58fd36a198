//! When a failed attempt is sent again: only before any answer arrived, for failures that
//! waiting can mend (rate limits, 5xx, a network that failed before sending), within the
//! request's deadline, after `Retry-After` or a jittered backoff.

use std::time::Duration;

use reqwest::header::HeaderMap;
use tracing::warn;

use super::budget::DEFAULT_COOL_DOWN;
use super::{Gateway, Reply, UpstreamRequest};
use crate::error::{Error, ErrorKind};

/// When and how often a failed request is sent again. Only failures before any answer
/// arrived are retried: once a stream has begun, a cut is reported, never replayed.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Sends at most this many times (1 = never retry).
    pub max_attempts: u32,
    /// No retry starts after this much time since the first attempt.
    pub deadline: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: a random wait up to `base * 2^n`, capped.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }
}

/// Safe to send again: the upstream did not take the request, or said to come back.
fn worth_retrying(err: &Error) -> bool {
    // Spend limits, used-up credits and policy blocks: sending again cannot help.
    if matches!(err.kind, ErrorKind::QuotaExceeded | ErrorKind::Blocked) {
        return false;
    }
    match err.status {
        Some(status) => {
            matches!(status, 408 | 429 | 500 | 502 | 503 | 504) || err.upstream_code == Some(7009)
        }
        // A refused certificate is a network error that fails the same way every time.
        None => err.kind == ErrorKind::Network && err.retryable,
    }
}

impl Gateway {
    /// Sends a chat completion, retrying where that is safe; returns once the answer's
    /// headers are in.
    pub async fn send(&self, req: &UpstreamRequest) -> Result<Reply, Error> {
        // The retry deadline runs from the first send, not from joining the queue.
        let mut started = None;
        let mut attempt = 1;
        loop {
            // `timeout_secs` bounds each attempt from the moment it asks for a slot: a
            // request that waits its turn under `max_in_flight` does not wait forever.
            let deadline = tokio::time::Instant::now() + req.timeout;
            // The daemon's rate budget for this upstream first: a completion is refused
            // here at once, an interactive request waits out a cool-down.
            if let Err(mut err) = self
                .budgets
                .admit(
                    &req.budget,
                    req.priority,
                    req.requests_per_minute,
                    deadline,
                    req.waits.as_ref(),
                )
                .await
            {
                err.attempts = attempt;
                return Err(err);
            }
            let slot = match tokio::time::timeout_at(deadline, self.slot()).await {
                Ok(slot) => slot?,
                Err(_) => {
                    let mut err = Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "no answer within {} s: the request waited all that time for its turn (max_in_flight requests were in flight)",
                            req.timeout.as_secs()
                        ),
                    )
                    .with_hint("other requests held every slot; try again, or raise max_in_flight or timeout_secs");
                    err.attempts = attempt;
                    return Err(err);
                }
            };
            let started = *started.get_or_insert_with(tokio::time::Instant::now);
            let result = match tokio::time::timeout_at(deadline, self.send_once(req, deadline))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no answer from the gateway within {} s",
                        req.timeout.as_secs()
                    ),
                )
                .with_hint(
                    "the timeout_secs setting bounds the wait for an answer; try again or raise it",
                )),
            };
            let mut err = match result {
                Ok(mut reply) => {
                    self.budgets.succeeded(&req.budget);
                    reply.attempts = attempt;
                    reply.slot = Some(slot);
                    return Ok(reply);
                }
                Err(err) => err,
            };
            drop(slot);
            err.attempts = attempt;
            let wait = err
                .retry_after
                .unwrap_or_else(|| req.retry.backoff(attempt - 1));
            let rate_limited = err.status == Some(429) && err.kind == ErrorKind::RateLimited;
            if rate_limited {
                // The whole daemon cools down, not only this request.
                self.budgets.limited(
                    &req.budget,
                    err.retry_after.unwrap_or(DEFAULT_COOL_DOWN),
                    err.retry_after.is_none(),
                );
            }
            if attempt >= req.retry.max_attempts || !worth_retrying(&err) {
                return Err(err);
            }
            if started.elapsed() + wait > req.retry.deadline {
                return Err(err);
            }
            warn!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying after: {}",
                err.message
            );
            // After a 429 the budget's cool-down paces the next attempt (see `admit`).
            if !rate_limited {
                tokio::time::sleep(wait).await;
            }
            attempt += 1;
        }
    }
}

/// `retry-after-ms` (OpenAI's) or `Retry-After` in seconds; an HTTP date is not honoured.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let wait = get("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| get("retry-after"))?;
    (wait.is_finite() && wait >= 0.0).then(|| Duration::from_secs_f64(wait.min(3600.0)))
}
