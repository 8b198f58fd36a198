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

pub mod answer;
pub mod models;
pub mod options;
#[cfg(test)]
mod sse_split_tests;
pub mod stream_limits;
mod tls;
pub mod upstream_error;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::auth::AuthPlan;
use crate::config::ProcessSettings;
use crate::error::{Error, ErrorKind};
use crate::protocol::Piece;
pub use answer::Answer;
use stream_limits::{Bounded, MAX_EVENT_BYTES, MAX_STREAM_BYTES, ReadError};

/// Error bodies are short; this bounds what a misbehaving upstream can make us buffer.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How long the end of a body is awaited after `data: [DONE]`.
const DRAIN_AFTER_DONE: Duration = Duration::from_millis(500);
/// A whole (non-streamed) answer larger than this is refused rather than buffered.
const MAX_WHOLE_BODY: usize = 32 * 1024 * 1024;

/// Everything needed to send one chat completion.
pub struct UpstreamRequest {
    pub url: String,
    /// Sent as `Authorization`; `None` with stored keys (BYOK) on compat, where the
    /// gateway adds the vendor's key itself.
    pub token: Option<SecretString>,
    /// Sent as `cf-aig-authorization`: the gateway's own authentication (compat).
    pub gateway_token: Option<SecretString>,
    /// Which credential each of the two carries, for the hint of a refusal.
    pub auth: AuthPlan,
    /// `cf-aig-*` options and, on the rest endpoint, `cf-aig-gateway-id`.
    pub headers: HeaderMap,
    pub body: Value,
    pub stream: bool,
    /// Until the answer's headers arrive (and, not streamed, its whole body).
    pub timeout: Duration,
    /// Longest silence allowed between two events of a stream.
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
    /// The routed model id, for hints in errors.
    pub model: String,
    /// Stored keys were asked for: tells a vendor's 401 apart in hints.
    pub byok: bool,
}

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

/// `{base}/chat/completions`, parsed once per base URL rather than by reqwest on every
/// request (docs/performance.md). A URL that does not parse is left for reqwest to report.
fn chat_url(base: &str) -> Result<reqwest::Url, String> {
    static RECENT: crate::memo::Recent<String, Result<reqwest::Url, String>> =
        crate::memo::Recent::new(8);
    RECENT.get_or(
        |k| k == base,
        || base.to_string(),
        || {
            let url = format!("{base}/chat/completions");
            reqwest::Url::parse(&url).map_err(|_| url)
        },
    )
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
}

/// Counts a request as queued while it waits for a slot (also when it is cancelled then).
struct Queued<'a>(&'a AtomicU64);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type EventStream = Pin<
    Box<
        dyn Stream<
                Item = Result<
                    eventsource_stream::Event,
                    EventStreamError<ReadError<reqwest::Error>>,
                >,
            > + Send,
    >,
>;

/// An answer being received: streamed pieces first, then the whole.
pub struct Reply {
    /// Every `cf-aig-*` response header, named without the prefix and with `_` for `-`.
    pub gateway: Map<String, Value>,
    /// How many times the request was sent.
    pub attempts: u32,
    idle_timeout: Duration,
    events: Option<EventStream>,
    queued: VecDeque<Piece>,
    answer: Answer,
    /// The request's place under the in-flight cap, given back when the reply is dropped.
    slot: Option<OwnedSemaphorePermit>,
}

impl Gateway {
    pub fn new(settings: ProcessSettings) -> Result<Gateway, Error> {
        let gateway = Gateway {
            http: Arc::new(OnceCell::new()),
            connect_timeout: settings.connect_timeout,
            slots: Arc::new(Semaphore::new(settings.max_in_flight)),
            queued: Arc::default(),
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
                    reply.attempts = attempt;
                    reply.slot = Some(slot);
                    return Ok(reply);
                }
                Err(err) => err,
            };
            drop(slot);
            err.attempts = attempt;
            if attempt >= req.retry.max_attempts || !worth_retrying(&err) {
                return Err(err);
            }
            let wait = err
                .retry_after
                .unwrap_or_else(|| req.retry.backoff(attempt - 1));
            if started.elapsed() + wait > req.retry.deadline {
                return Err(err);
            }
            warn!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying after: {}",
                err.message
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn send_once(
        &self,
        req: &UpstreamRequest,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, Error> {
        let url = chat_url(&req.url);
        let mut headers = req.headers.clone();
        if let Some(token) = &req.token {
            headers.insert(AUTHORIZATION, bearer(token)?);
        }
        if let Some(token) = &req.gateway_token {
            headers.insert("cf-aig-authorization", bearer(token)?);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let accept = if req.stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static(accept));
        let body = serde_json::to_vec(&req.body)
            .map_err(|e| Error::internal(format!("cannot encode the request: {e}")))?;
        let client = self.http().await?;
        let request = match url {
            Ok(url) => client.post(url),
            Err(unparsed) => client.post(unparsed),
        };
        let mut request = request.headers(headers).body(body);
        if !req.stream {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            request = request.timeout(left);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&e, &req.url))?;

        let status = response.status();
        let gateway = gateway_headers(response.headers());
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let body = read_limited(response, MAX_ERROR_BODY, req.idle_timeout)
                .await
                .unwrap_or_default();
            let mut err = upstream_error::from_response(status.as_u16(), &body, &req.model);
            upstream_error::refine_auth_hint(&mut err, &body, req.byok, &req.auth);
            if let Some(findings) = gateway.get("dlp").and_then(Value::as_str) {
                upstream_error::add_dlp_findings(&mut err, findings);
            }
            err.retry_after = retry_after;
            if let Some(log_id) = gateway.get("log_id").and_then(Value::as_str) {
                err.message.push_str(&format!(" [cf-aig-log-id {log_id}]"));
            }
            return Err(err);
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if req.stream && is_sse {
            let bytes = Bounded::new(response.bytes_stream(), MAX_STREAM_BYTES, MAX_EVENT_BYTES);
            let events = bytes.eventsource();
            return Ok(Reply {
                gateway,
                attempts: 1,
                idle_timeout: req.idle_timeout,
                events: Some(Box::pin(events)),
                queued: VecDeque::new(),
                answer: Answer::default(),
                slot: None,
            });
        }
        // Not a stream (asked for so, or a model that answers streams with plain JSON).
        let (text, cut) = read_bounded(response, MAX_WHOLE_BODY, req.idle_timeout).await?;
        if cut {
            let mib = MAX_WHOLE_BODY / (1024 * 1024);
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("the gateway's answer passed cfgate's bound of {mib} MiB for one answer"),
            )
            .with_hint("ask for a shorter answer (max_tokens)"));
        }
        let json: Value = serde_json::from_str(&text).map_err(|e| {
            let shown: String = text.chars().take(200).collect();
            Error::new(
                ErrorKind::BadResponse,
                format!("the gateway's answer is not JSON ({e}): {shown}"),
            )
        })?;
        let answer = Answer::from_completion(&json)?;
        // A streaming caller asked for pieces: Guardrails and DLP response scanning buffer
        // the answer and send it whole (wire notes 10.3, 10.4), so give them in one go.
        let queued = if req.stream {
            whole_answer_pieces(&answer)
        } else {
            VecDeque::new()
        };
        Ok(Reply {
            gateway,
            attempts: 1,
            idle_timeout: req.idle_timeout,
            events: None,
            queued,
            answer,
            slot: None,
        })
    }
}

impl Reply {
    /// The next piece of a streamed answer; `None` once the answer is complete.
    /// A stream that stops before it says it is complete is an error, never a short answer.
    pub async fn next_piece(&mut self) -> Result<Option<Piece>, Error> {
        loop {
            if let Some(piece) = self.queued.pop_front() {
                return Ok(Some(piece));
            }
            let Some(events) = self.events.as_mut() else {
                return Ok(None);
            };
            if self.answer.done {
                // Read the body to its end so the connection goes back to the pool; a
                // server that keeps talking after `[DONE]` is not waited for long.
                if let Some(mut events) = self.events.take() {
                    let drain = async { while events.next().await.is_some() {} };
                    let _ = tokio::time::timeout(DRAIN_AFTER_DONE, drain).await;
                }
                return Ok(None);
            }
            let next = match tokio::time::timeout(self.idle_timeout, events.next()).await {
                Ok(next) => next,
                Err(_) => {
                    self.events = None;
                    let err = Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the answer was cut off: the stream stalled (nothing for {} s)",
                            self.idle_timeout.as_secs()
                        ),
                    )
                    .with_hint("the upstream stopped sending; try again (idle_timeout_secs sets how long to wait)");
                    return Err(self.with_partial(err));
                }
            };
            match next {
                Some(Ok(event)) => match self.answer.feed_event(&event.data) {
                    Ok(pieces) => self.queued.extend(pieces),
                    Err(err) => {
                        self.events = None;
                        let shown: String = event.data.chars().take(4096).collect();
                        debug!(event = %shown, "the gateway sent an event cfgate cannot use");
                        return Err(err);
                    }
                },
                Some(Err(e)) => {
                    self.events = None;
                    let mut err = match e {
                        EventStreamError::Transport(ReadError::Transport(e)) => {
                            transport_error(&e, "")
                        }
                        EventStreamError::Transport(ReadError::TooLarge(err)) => {
                            warn!("{}", err.message);
                            return Err(self.with_partial(err));
                        }
                        other => {
                            Error::new(ErrorKind::BadResponse, format!("bad event stream: {other}"))
                        }
                    };
                    err.message = format!("the answer was cut off: {}", err.message);
                    return Err(self.with_partial(err));
                }
                None => {
                    self.events = None;
                    if self.answer.is_complete() {
                        return Ok(None);
                    }
                    let err = Error::new(
                        ErrorKind::StreamCut,
                        "the answer was cut off: the gateway closed the stream before it finished",
                    )
                    .with_hint("try again; what had arrived is in data.partial_content");
                    return Err(self.with_partial(err));
                }
            }
        }
    }

    fn with_partial(&self, mut err: Error) -> Error {
        if !matches!(err.kind, ErrorKind::Timeout | ErrorKind::TooLarge) {
            err.kind = ErrorKind::StreamCut;
        }
        // Asking again for an answer too large gets one too large again.
        err.retryable = err.kind != ErrorKind::TooLarge;
        err.partial_content = Some(self.answer.content.clone());
        err
    }

    /// Reads to the end and returns the whole answer.
    pub async fn finish(mut self) -> Result<(Answer, Map<String, Value>), Error> {
        while self.next_piece().await?.is_some() {}
        Ok((self.answer, self.gateway))
    }
}

/// The pieces a stream of `answer` would have carried: reasoning, content, tool calls.
fn whole_answer_pieces(answer: &Answer) -> VecDeque<Piece> {
    let mut pieces = VecDeque::new();
    if let Some(r) = &answer.reasoning {
        pieces.push_back(Piece::Reasoning(r.clone()));
    }
    if !answer.content.is_empty() {
        pieces.push_back(Piece::Content(answer.content.clone()));
    }
    if !answer.tool_calls.is_empty() {
        let calls = answer
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let mut call = call.clone();
                call.insert("index".into(), Value::from(i));
                Value::Object(call)
            })
            .collect();
        pieces.push_back(Piece::ToolCalls(calls));
    }
    pieces
}

/// `retry-after-ms` (OpenAI's) or `Retry-After` in seconds; an HTTP date is not honoured.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let wait = get("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| get("retry-after"))?;
    (wait.is_finite() && wait >= 0.0).then(|| Duration::from_secs_f64(wait.min(3600.0)))
}

fn bearer(token: &SecretString) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret().trim()))
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidSetting,
                "invalid setting api_token: it holds characters that cannot go in an HTTP header",
            )
        })?;
    // Keeps the value out of reqwest's and hyper's Debug output.
    value.set_sensitive(true);
    Ok(value)
}

fn gateway_headers(headers: &HeaderMap) -> Map<String, Value> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix("cf-aig-")?;
            let value = value.to_str().ok()?;
            Some((key.replace('-', "_"), Value::from(value)))
        })
        .collect()
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

/// Reads a body up to `limit` bytes (the rest is not read); a body that stalls for `idle` is
/// an error, as a stream's would be, rather than a wait for the whole `timeout_secs`.
async fn read_limited(
    response: reqwest::Response,
    limit: usize,
    idle: Duration,
) -> Result<String, Error> {
    Ok(read_bounded(response, limit, idle).await?.0)
}

/// [`read_limited`], also telling whether the body was longer than `limit`.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
    idle: Duration,
) -> Result<(String, bool), Error> {
    let mut cut = false;
    // Sized once when the length is announced (a whole answer usually is), not regrown;
    // only up to 256 KiB in advance, so that a length announced and never sent costs little.
    let announced = usize::try_from(response.content_length().unwrap_or(0)).unwrap_or(0);
    let mut buf: Vec<u8> = Vec::with_capacity(announced.min(limit).min(256 * 1024));
    loop {
        let chunk = match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(transport_error(&e, "")),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the answer stalled: nothing for {} s while reading its body",
                        idle.as_secs()
                    ),
                )
                .with_hint("the upstream stopped sending; try again (idle_timeout_secs sets how long to wait)"));
            }
        };
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            cut = true;
            break;
        }
    }
    // Valid UTF-8 (as JSON is) becomes the String without a copy.
    let text = String::from_utf8(buf)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
    Ok((text, cut))
}

/// A failure before or while reading the answer, without the URL's query or any header.
fn transport_error(err: &reqwest::Error, base: &str) -> Error {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    let mut detail = Vec::new();
    while let Some(e) = source {
        let text = e.to_string();
        if !detail.iter().any(|d: &String| d.contains(&text)) {
            detail.push(text);
        }
        source = e.source();
    }
    let detail = detail.join(": ");
    if let Some(problem) = tls::certificate_refused(err) {
        warn!("the gateway's TLS certificate was refused: {detail}");
        let mut refused = Error::new(
            ErrorKind::Network,
            format!("cannot connect to the gateway at {base}: its TLS certificate is not trusted ({problem})"),
        )
        .with_hint(
            "not retried: it fails the same way each time. A proxy or antivirus that intercepts TLS \
             needs its root certificate in the system's store (or SSL_CERT_FILE); else check base_url",
        );
        refused.retryable = false;
        return refused;
    }
    // A connect that timed out is a connection failure (nothing was sent): retried.
    if err.is_connect() {
        return Error::new(
            ErrorKind::Network,
            format!("cannot connect to the gateway at {base}: {detail}"),
        )
        .with_hint("check the network and base_url (connect_timeout_secs bounds each try)");
    }
    if err.is_timeout() {
        return Error::new(
            ErrorKind::Timeout,
            format!("no answer from the gateway in time ({detail})"),
        )
        .with_hint("the request timeout is the timeout_secs setting; try again or raise it");
    }
    Error::new(
        ErrorKind::Network,
        format!("connection to the gateway failed: {detail}"),
    )
}

/// Splits SSE bytes into pieces exactly as [`Reply`] does, without a network: the stream
/// reader's behaviour for a byte stream cut anywhere. Public for the fuzz targets in
/// `fuzz/` (and property tests); not meant for other callers.
pub async fn pieces_from_chunks(chunks: Vec<Bytes>) -> Result<(Vec<Piece>, Answer), Error> {
    let stream =
        futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>));
    let mut events = Bounded::new(stream, MAX_STREAM_BYTES, MAX_EVENT_BYTES).eventsource();
    let mut answer = Answer::default();
    let mut pieces = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => pieces.extend(answer.feed_event(&event.data)?),
            Err(e) => return Err(Error::new(ErrorKind::BadResponse, e.to_string())),
        }
        if answer.done {
            break;
        }
    }
    Ok((pieces, answer))
}
