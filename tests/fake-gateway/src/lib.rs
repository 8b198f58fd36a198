//! A faithful, scriptable stand-in for Cloudflare AI Gateway's OpenAI-compatible
//! ("compat") chat endpoint, for cfgate's integration tests, editor tests and benchmarks.
//!
//! Every wire fact it reproduces comes from `../../shared/gateway-wire.md`
//! (beside the repository, at `/work/shared/gateway-wire.md`):
//!
//! * URLs (section 2.1): `POST /v1/{account}/{gateway}/compat/chat/completions`,
//!   `GET /v1/{account}/{gateway}/compat/models`, the REST successor
//!   `POST /client/v4/accounts/{account}/ai/v1/chat/completions` (+ `cf-aig-gateway-id`), and
//!   the model catalog `GET /client/v4/accounts/{account}/ai/models/search` (section 6).
//! * Authentication (sections 2.2, 10.2): token in `Authorization` *or* `cf-aig-authorization`;
//!   gateway auth (`cf-aig-authorization` on compat, `Authorization` on REST) -> 401
//!   `AiGatewayError` 2009; provider token rejected -> 401 v4 envelope 10000.
//! * Model ids (section 2.3 / 8.3 / 10.1): each endpoint's own spellings; on compat bare
//!   `@cf/..`, `google/`, `xai/` -> 2008, on REST `workers-ai/`, `google-ai-studio/`, `grok/`
//!   -> 2008 and a hyphenated Anthropic version -> 404 7003; no `/` -> 2005;
//!   `dynamic/<route>` adds `cf-aig-model` / `cf-aig-provider`; unknown Workers AI model -> 5007.
//! * December 2026 (section 10): authentication on ([`Config::authenticated`]), buffered
//!   answers to streamed requests ([`Config::buffer_streams`], [`Script::buffered`]), the
//!   refusals of Guardrails, DLP, spend and rate limits ([`Script::guardrails_block`] and its
//!   siblings), lowercase UUIDv7 log ids.
//! * Headers and caching (section 3): `cf-aig-log-id`, `cf-aig-event-id`, `cf-aig-request-id`,
//!   `cf-aig-step`, `cf-aig-cache-status`; `cf-aig-cache-ttl` / `cf-aig-cache-key` /
//!   `cf-aig-skip-cache`; streams are never cached.
//! * Streaming (section 4): OpenAI `chat.completion.chunk` SSE ending in `data: [DONE]`, and on
//!   request ([`Script::workers_ai_style`]) the Workers AI quirks (padding `p`, incremental usage,
//!   `{"choices":[],"usage":..}` chunk, native `{"response":"","usage":..}` trailer, `-external`
//!   model echo, CRLF framing, null tool-call finalisation delta).
//! * Error bodies (section 5): the `AiGatewayError` shape and the Cloudflare v4 envelope.
//! * Non-streamed success shape (section 8.7).
//!
//! Tests drive it either through this crate's API ([`FakeGateway::push_script`],
//! [`FakeGateway::requests`], ...) or over HTTP through the control endpoints
//! (`POST /__fake/script`, `POST /__fake/reset`, `GET /__fake/requests`, `GET /__fake/stats`),
//! which the `fake-gateway` binary exposes to non-Rust tests.

mod answer;
mod hostile;
mod naming;
mod refusals;
mod server;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How the fake behaves when no [`Script`] is queued.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// If `Some`: requests must carry `Authorization: Bearer <t>` or
    /// `cf-aig-authorization: Bearer <t>`, else 401 with the Cloudflare v4 envelope
    /// code 10000 "Authentication error".
    pub api_token: Option<String>,
    /// If `Some`: the gateway has authentication on and this token (beside `api_token`)
    /// has AI Gateway permission; see `authenticated`.
    pub gateway_token: Option<String>,
    /// Authentication on (every gateway created since 2026-11-03, section 10.2): compat
    /// needs `cf-aig-authorization: Bearer <t>`, REST `Authorization: Bearer <t>`, with `t`
    /// the `gateway_token` or the `api_token` (any non-empty token when neither is set);
    /// else 401 `AiGatewayError` 2009 "Unauthorized". Implied by `gateway_token`.
    pub authenticated: bool,
    /// Guardrails or DLP response scanning on (sections 10.3, 10.4): a streamed request
    /// gets the whole answer as one `chat.completion` JSON body, not an event stream.
    pub buffer_streams: bool,
    /// The gateway's own rate limit (section 10.5): past `requests` chat requests in a
    /// fixed window, 429 `AiGatewayError` 2003 "Rate limited", with `Retry-After` (seconds
    /// left in the window, rounded up) when `retry_after` is set.
    pub rate_limit: Option<RateLimit>,
    /// `None`: any gateway id is accepted; `Some(list)`: other ids get 400 `AiGatewayError`
    /// 2001 "Please configure AI Gateway in the Cloudflare dashboard".
    pub known_gateways: Option<Vec<String>>,
    /// Default delay between the content pieces of a stream.
    pub chunk_delay: Duration,
    /// If `Some`: the gateway holds stored keys (BYOK) under these aliases; a request whose
    /// `cf-aig-byok-alias` names another gets 400 `AiGatewayError` 2040 (section 5.2).
    pub byok_aliases: Option<Vec<String>>,
}

/// A fixed-window rate limit ([`Config::rate_limit`]).
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub requests: usize,
    pub window: Duration,
    pub retry_after: bool,
}

/// One request the fake received (control endpoints excluded).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lower-case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Null` if empty or not JSON.
    pub body: serde_json::Value,
    /// The body as (lossy UTF-8) text.
    pub raw_body: String,
    /// When it arrived, in milliseconds since the fake started.
    #[serde(default)]
    pub at_ms: u64,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted answer for the next chat request(s). Scripts are consumed FIFO by chat
/// requests (either chat endpoint) that passed the gateway checks (route, gateway id,
/// gateway auth, token) and were not served from the cache; a scripted request skips
/// body/model validation.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Script {
    /// HTTP status of the reply. With `body`: that body with this status. Without `body`:
    /// overrides the status of whatever the script would otherwise send.
    pub status: Option<u16>,
    /// Raw body sent verbatim (Content-Type `application/json` unless `headers` say otherwise).
    pub body: Option<String>,
    /// Extra response headers (e.g. `retry-after`); a name given here replaces the fake's own.
    pub headers: Vec<(String, String)>,
    /// Assistant text (default: `"echo: " + <last user message text>`).
    pub content: Option<String>,
    /// Explicit stream content pieces (overrides splitting `content`).
    pub chunks: Option<Vec<String>>,
    /// Reasoning pieces streamed before the content as `delta.reasoning_content`
    /// (`message.reasoning_content` when not streamed).
    pub reasoning: Option<Vec<String>>,
    /// OpenAI `tool_calls` array for the answer.
    pub tool_calls: Option<serde_json::Value>,
    /// Default `"stop"` (`"tool_calls"` when `tool_calls` is given, `"length"` on `max_tokens`).
    pub finish_reason: Option<String>,
    /// Default computed: prompt = word count of all message contents, completion = number of
    /// content pieces.
    pub usage: Option<serde_json::Value>,
    /// Stream these exact bytes as the SSE body, ignoring content/chunks.
    pub raw_sse: Option<String>,
    /// With `raw_sse`: cut it into separate body frames at these byte offsets, flushed
    /// separately and paced (at least 2 ms apart) so the client sees separate reads.
    pub split_raw_at: Option<Vec<usize>>,
    /// The stream ends without `data: [DONE]`.
    pub omit_done: bool,
    /// The stream has no finish chunk (no `finish_reason`).
    pub omit_finish: bool,
    /// Overrides [`Config::chunk_delay`].
    pub chunk_delay_ms: Option<u64>,
    /// After the pieces, keep the stream open forever (no finish chunk, no `[DONE]`).
    pub hold_open: bool,
    pub fault: Option<Fault>,
    /// Reproduce the Workers AI stream quirks of wire notes section 4.
    pub workers_ai_style: bool,
    /// Answer this many subsequent chat requests with the script (0 or 1 = once).
    pub repeat: u32,
    /// Answer a streamed request with the whole `chat.completion` JSON, as Guardrails and
    /// DLP response scanning do (sections 10.3, 10.4).
    pub buffered: bool,
    /// A streamed answer shaped to hurt the client (overrides everything but `fault`
    /// before headers, `status` and `headers`).
    pub hostile: Option<Hostile>,
    /// Answer only once [`FakeGateway::release`] is called (the request is recorded at
    /// once): a test can act while the request is surely in flight.
    pub held: bool,
}

/// Streamed answers no real gateway sends, that a client must survive.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hostile {
    /// One piece of text, then a tool-call delta with this `index` (any JSON: `1e12`
    /// written out, negative, fractional), then a finish chunk and `[DONE]`.
    ToolCallIndex(serde_json::Value),
    /// Content events of this many bytes of text each, forever.
    EndlessStream(usize),
    /// One piece of text, then one `data:` line that never ends.
    EndlessLine,
    /// One piece of text, then one-character events in Workers AI's native form (the
    /// smallest an event can be: `data:{"response":"x"}`), forever.
    EndlessTinyEvents,
}

impl Hostile {
    /// The text every hostile answer starts with, so a test can see what came before the cut.
    pub const OPENING: &str = "before the cut ";
}

/// Transport-level misbehaviour.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Read the request, then abort the TCP connection (RST) without answering.
    ResetBeforeHeaders,
    /// Send the headers and this many body frames (SSE events), then abort the connection
    /// (no terminating chunk).
    ResetAfterChunks(usize),
    /// Never answer (until the client goes away).
    StallBeforeHeaders,
    /// Send the headers and this many body frames, then nothing more.
    StallAfterChunks(usize),
    /// Send the body one byte per write.
    DripBytes,
}

struct QueuedScript {
    script: Script,
    remaining: u32,
}

pub(crate) struct CacheEntry {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: bytes::Bytes,
    pub(crate) expires: Instant,
}

/// State shared by the server tasks and the [`FakeGateway`] handle.
pub(crate) struct Shared {
    pub(crate) config: Config,
    scripts: Mutex<VecDeque<QueuedScript>>,
    requests: Mutex<Vec<RecordedRequest>>,
    request_count: watch::Sender<usize>,
    connections: AtomicUsize,
    dropped: watch::Sender<usize>,
    pub(crate) cache: Mutex<HashMap<String, CacheEntry>>,
    pub(crate) started: Instant,
    /// The current rate-limit window: when it began, chat requests in it.
    pub(crate) window: Mutex<(Instant, usize)>,
    /// Set by [`FakeGateway::release`]: held scripts answer.
    pub(crate) released: watch::Sender<bool>,
}

/// Locks ignoring poisoning (a panicking test thread must not wedge the fake).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new(config: Config) -> Shared {
        Shared {
            config,
            scripts: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            request_count: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
            dropped: watch::Sender::new(0),
            cache: Mutex::new(HashMap::new()),
            started: Instant::now(),
            window: Mutex::new((Instant::now(), 0)),
            released: watch::Sender::new(false),
        }
    }

    pub(crate) fn push_script(&self, script: Script) {
        let remaining = script.repeat.max(1);
        lock(&self.scripts).push_back(QueuedScript { script, remaining });
    }

    pub(crate) fn next_script(&self) -> Option<Script> {
        let mut q = lock(&self.scripts);
        let front = q.front_mut()?;
        if front.remaining > 1 {
            front.remaining -= 1;
            return Some(front.script.clone());
        }
        q.pop_front().map(|s| s.script)
    }

    pub(crate) fn record(&self, req: RecordedRequest) {
        // Publish the count while holding the lock so concurrent records stay ordered.
        let mut r = lock(&self.requests);
        r.push(req);
        self.request_count.send_replace(r.len());
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    pub(crate) fn clear_requests(&self) {
        let mut r = lock(&self.requests);
        r.clear();
        self.request_count.send_replace(0);
    }

    pub(crate) fn reset(&self) {
        lock(&self.scripts).clear();
        lock(&self.cache).clear();
        self.clear_requests();
    }

    pub(crate) fn connection_accepted(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn connections_accepted(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn stream_dropped(&self) {
        self.dropped.send_modify(|n| *n += 1);
    }

    pub(crate) fn streams_dropped(&self) -> usize {
        *self.dropped.borrow()
    }

    pub(crate) fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "connections_accepted": self.connections_accepted(),
            "streams_dropped": self.streams_dropped(),
            "requests": lock(&self.requests).len(),
        })
    }
}

/// A running fake gateway on `127.0.0.1:<ephemeral>`. Dropping it stops the accept loop
/// and aborts every open connection.
pub struct FakeGateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGateway {
    /// Starts with [`Config::default`] (no auth, any gateway id, no stream pacing).
    pub async fn start() -> FakeGateway {
        FakeGateway::start_with(Config::default()).await
    }

    /// Binds `127.0.0.1:0` and starts serving. Panics if the port cannot be bound.
    pub async fn start_with(config: Config) -> FakeGateway {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("fake-gateway: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("fake-gateway: no local address");
        let shared = Arc::new(Shared::new(config));
        let task = tokio::spawn(server::accept_loop(listener, shared.clone()));
        FakeGateway { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{url}/v1/{account}/{gateway}/compat` (what Agno/OpenAI SDKs use as base URL).
    pub fn compat_base(&self, account: &str, gateway: &str) -> String {
        format!("{}/v1/{account}/{gateway}/compat", self.url())
    }

    /// Queues a script (FIFO) for the next chat request(s).
    pub fn push_script(&self, script: Script) {
        self.shared.push_script(script);
    }

    /// Every request received so far (control endpoints excluded), in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Waits until at least `n` requests were recorded; panics on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let mut rx = self.shared.request_count.subscribe();
        let reached = tokio::time::timeout(timeout, async {
            rx.wait_for(|count| *count >= n).await.is_ok()
        })
        .await;
        let requests = self.requests();
        match reached {
            Ok(true) => requests,
            _ => panic!(
                "fake-gateway: timed out after {timeout:?} waiting for {n} request(s); {} received: {:?}",
                requests.len(),
                requests
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// TCP connections accepted so far (including control-endpoint connections).
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections_accepted()
    }

    /// Streamed responses whose body was dropped before the fake finished sending it.
    pub fn streams_dropped(&self) -> usize {
        self.shared.streams_dropped()
    }

    /// `true` once [`FakeGateway::streams_dropped`] >= 1, `false` on timeout.
    pub async fn wait_for_stream_dropped(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.dropped.subscribe();
        tokio::time::timeout(timeout, async {
            rx.wait_for(|count| *count >= 1).await.is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Lets every held request (see [`Script::held`]) be answered, now and from now on.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }

    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
