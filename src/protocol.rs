//! The wire types of cfgate's own methods: the code side of `docs/protocol.md`.
//!
//! They live here rather than in an LSP types crate because they are cfgate's contract
//! with its plugins, and one file that mirrors the doc is easier to keep honest than
//! types spread over handlers. Field names follow the doc exactly: OpenAI's snake_case for
//! what mirrors the OpenAI body, LSP's `workDoneToken` where LSP defines the parameter.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `workDoneToken`: LSP's `integer | string`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProgressToken {
    Number(i64),
    String(String),
}

/// One OpenAI chat message, `{"role", "content"}`.
pub fn message(role: &str, content: impl Into<String>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("role".into(), Value::from(role));
    m.insert("content".into(), Value::from(content.into()));
    m
}

/// Params of `cfgate/chat`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ChatParams {
    pub messages: Vec<Map<String, Value>>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub json_mode: bool,
    #[serde(default, rename = "workDoneToken")]
    pub work_done_token: Option<ProgressToken>,
    /// AI Gateway options (`cf-aig-*` headers), over the `[gateway]` settings; checked by
    /// `gateway::options`, not here, so that its errors name the key.
    #[serde(default)]
    pub gateway: Option<Value>,
    /// A conversation kept by the daemon: its history goes first, this turn is stored.
    #[serde(default)]
    pub session: Option<String>,
    /// Every other OpenAI chat-completions field, passed through unchanged.
    #[serde(flatten)]
    pub body: Map<String, Value>,
}

/// Params of `cfgate/complete`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CompleteParams {
    pub prefix: String,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub stop: Option<Value>,
    #[serde(default, rename = "workDoneToken")]
    pub work_done_token: Option<ProgressToken>,
    /// AI Gateway options, as for chat.
    #[serde(default)]
    pub gateway: Option<Value>,
}

/// Token counts as the gateway reported them (the last, cumulative report of a stream).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// Result of `cfgate/chat`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatResult {
    pub content: String,
    pub reasoning: Option<String>,
    pub tool_calls: Option<Vec<Value>>,
    pub finish_reason: Option<String>,
    /// The routed id that was sent, e.g. `workers-ai/@cf/...`.
    pub model: String,
    pub usage: Option<Usage>,
    /// Every `cf-aig-*` response header, without the prefix and with `_` for `-`.
    pub gateway: Map<String, Value>,
}

/// Result of `cfgate/complete`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompleteResult {
    pub text: String,
    pub finish_reason: Option<String>,
    pub model: String,
    pub usage: Option<Usage>,
}

/// One piece of an answer as it streams.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Content(String),
    Reasoning(String),
    /// The tool-call deltas of one chunk, as the gateway sent them.
    ToolCalls(Vec<Value>),
}

/// `$/progress` params.
#[derive(Clone, Debug, Serialize)]
pub struct ProgressParams<'a> {
    pub token: &'a ProgressToken,
    pub value: ProgressValue,
}

/// The `value` of a `$/progress` notification: LSP work-done progress with cfgate's pieces.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProgressValue {
    Begin {
        title: &'static str,
    },
    Report {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reasoning: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<Value>>,
        /// LSP's own report message: what the request is waiting for, e.g.
        /// `rate limited: waiting 3 s`. Not part of the answer.
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    End {},
}

impl From<Piece> for ProgressValue {
    fn from(piece: Piece) -> Self {
        let (mut content, mut reasoning, mut tool_calls) = (None, None, None);
        match piece {
            Piece::Content(text) => content = Some(text),
            Piece::Reasoning(text) => reasoning = Some(text),
            Piece::ToolCalls(calls) => tool_calls = Some(calls),
        }
        ProgressValue::Report {
            content,
            reasoning,
            tool_calls,
            message: None,
        }
    }
}

impl ProgressValue {
    /// A report that says why nothing comes yet: the request waits `wait` for the
    /// gateway's rate budget.
    pub fn rate_limited(wait: std::time::Duration) -> ProgressValue {
        ProgressValue::Report {
            content: None,
            reasoning: None,
            tool_calls: None,
            message: Some(rate_limited_message(wait)),
        }
    }
}

/// `rate limited: waiting N s`, in whole seconds rounded up ("waiting 0 s" would say
/// nothing).
pub fn rate_limited_message(wait: std::time::Duration) -> String {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    format!("rate limited: waiting {} s", secs.max(1))
}

/// Result of `cfgate/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusResult {
    pub version: String,
    pub credentials_complete: bool,
    /// Environment variable names of what is missing.
    pub missing: Vec<String>,
    /// First problem with the settings other than a missing value, if any.
    pub settings_error: Option<String>,
    pub account_id: Option<String>,
    pub gateway_id: String,
    pub base_url: Option<String>,
    /// `compat` or `rest`.
    pub endpoint: String,
    /// Which credential each authorization header carries (empty while settings are
    /// incomplete): what a request would send, never the secret.
    #[serde(default)]
    pub auth_headers: Vec<AuthHeader>,
    pub model: String,
    /// Chars of a document to send around the cursor for a completion (the
    /// `completion_context_chars` setting): plugins that send `cfgate/complete` size their
    /// context with it, so every editor sends the same amount.
    #[serde(default)]
    pub completion_context_chars: usize,
    pub uptime_secs: u64,
    pub requests: RequestCounts,
    /// Debug builds only: tasks alive on the runtime, for leak tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_tasks: Option<u64>,
    /// Every client connected to this daemon (one for a private daemon).
    #[serde(default)]
    pub clients: Vec<ConnectedClient>,
    /// Every stored session with its summed usage.
    #[serde(default)]
    pub sessions: Vec<SessionSummary>,
    /// The daemon's rate budget of each gateway it sent to.
    #[serde(default)]
    pub budgets: Vec<BudgetStatus>,
    /// On the shared daemon: the daemon's own facts, beside this client's settings above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonFacts>,
}

/// One gateway's rate budget, shared by every client of the daemon.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BudgetStatus {
    /// The gateway (its URL, and on the REST endpoint its id).
    pub gateway: String,
    /// Requests a minute allowed: the `requests_per_minute` setting, or what 429s taught.
    pub limit: Option<u32>,
    /// The limit was learned from 429s (possibly below the setting).
    pub learned: bool,
    pub used_last_minute: u32,
    /// How long the cool-down after a 429 still runs, if it does.
    pub cool_down_ms: Option<u64>,
}

/// What the shared daemon says of itself to each client.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DaemonFacts {
    pub pid: u32,
    /// When it started, in seconds since the Unix epoch.
    pub started: u64,
    /// The loopback endpoint's address, when it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// What this client asked for and did not get (e.g. `--listen` to a daemon already
    /// running without the endpoint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One authorization header and the setting whose value it carries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthHeader {
    /// `Authorization` or `cf-aig-authorization`.
    pub header: String,
    /// `api_token` or `gateway_token`.
    pub setting: String,
    /// The environment variable that sets it.
    pub env: String,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub in_flight: u64,
    pub failed: u64,
    /// Requests sent again after a retryable failure.
    pub retries: u64,
    /// Requests waiting for a slot under the `max_in_flight` cap.
    #[serde(default)]
    pub queued: u64,
}

/// Params of `cfgate/models`. Like every method's params but chat's (whose unknown keys are
/// the OpenAI body's), keys it does not know are ignored, so a newer plugin works with an
/// older daemon.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ModelsParams {
    /// Fetch again even if a cached list is fresh.
    #[serde(default)]
    pub refresh: bool,
}

/// Result of `cfgate/models`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelsResult {
    pub models: Vec<ModelInfo>,
    /// `compat` (the gateway's `/models` list) or `catalog` (Cloudflare's model search).
    pub source: String,
    /// Served from the cache rather than fetched for this request.
    pub cached: bool,
    /// How old the list is.
    pub age_secs: u64,
}

/// Methods cfgate adds to LSP, announced in `initialize`.
pub const METHODS: &[&str] = &[
    "cfgate/chat",
    "cfgate/complete",
    "cfgate/status",
    "cfgate/models",
    "cfgate/sessions",
    "cfgate/session",
    "cfgate/sessionDelete",
];

/// One model, as far as the source knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The id to send as `model`, in the endpoint's spelling (`workers-ai/@cf/...` on
    /// compat, `@cf/...` on REST; `openai/...`).
    pub id: String,
    pub owned_by: Option<String>,
    /// Tokens of context, from the catalog.
    pub context_window: Option<u64>,
    pub function_calling: Option<bool>,
    /// Price per million input tokens in USD (catalog), or the gateway's `cost_in`.
    pub cost_in: Option<f64>,
    /// Price per million output tokens in USD (catalog), or the gateway's `cost_out`.
    pub cost_out: Option<f64>,
    pub description: Option<String>,
}

/// A line of `cfgate/sessions`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionSummary {
    pub name: String,
    pub turns: usize,
    /// Unix seconds of the last stored turn.
    pub updated: u64,
    /// Tokens summed over every stored turn.
    pub usage: Usage,
}

/// Params of `cfgate/session` and `cfgate/sessionDelete`.
#[derive(Clone, Debug, Deserialize)]
pub struct SessionParams {
    pub name: String,
}

/// Result of `cfgate/sessions`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionsResult {
    pub sessions: Vec<SessionSummary>,
}

/// Result of `cfgate/session`: the summary and every message in order, each turn's
/// messages followed by its answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionResult {
    #[serde(flatten)]
    pub summary: SessionSummary,
    pub messages: Vec<Map<String, Value>>,
}

/// Result of `cfgate/sessionDelete`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionDeleteResult {
    pub deleted: bool,
}

pub const DID_CHANGE_STATUS: &str = "cfgate/didChangeStatus";

/// A connected client as `cfgate/status` lists it (from its `clientInfo`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConnectedClient {
    pub name: Option<String>,
    pub version: Option<String>,
}

/// The daemon's state as the status icon shows it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// At least one request is in flight.
    Busy,
    /// Nothing in flight; the last request went well (or failed on its own params).
    Ready,
    /// The last request was refused for its credentials.
    Unauthorized,
    /// The last request failed upstream (network, gateway, timeout).
    Error,
    /// A gateway answered 429 and its budget cools down: chat waits, completions are shed.
    RateLimited,
}

/// Params of `cfgate/didChangeStatus`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusChange {
    pub state: State,
    /// Why, for `unauthorized` and `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
