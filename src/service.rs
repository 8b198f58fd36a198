//! What cfgate does, apart from how it is reached: chat, complete, status.
//!
//! Every front end (the stdio server, the one-shot CLI) calls the same [`Service`], so a
//! behaviour is written once. Work flows one way: front end → service → gateway, and back
//! as a stream of pieces that the front end forwards as it likes. Nothing here blocks and
//! no lock is held across an `.await`: the settings a request uses are resolved into an
//! owned value before anything is sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::clients::{ClientHandle, Clients, ConnectedClient};
use crate::complete::{self, InsertionCleaner};
use crate::config::{self, Endpoint, Layer, Settings};
use crate::error::{Error, ErrorKind};
use crate::gateway::models::{ModelInfo, ModelSource, ModelsRequest, merge_catalog};
use crate::gateway::options::GatewayOptions;
use crate::gateway::{Gateway, Reply, RetryPolicy, UpstreamRequest};
use crate::protocol::{
    ChatParams, ChatResult, CompleteParams, CompleteResult, ModelsParams, ModelsResult, Piece,
    RequestCounts, StatusResult,
};
use crate::route::{route_model, same_model};
use crate::sessions::{self, SessionResult, SessionStore, SessionSummary, Turn};

const RETRY_BASE_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
const RETRY_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(8);

const JSON_INSTRUCTION: &str =
    "Respond only with one valid JSON object: no text before or after it, and no code fences.";

/// How long a model list is served from the cache.
pub const MODELS_TTL: Duration = Duration::from_secs(600);

/// Fields of the OpenAI body that cfgate itself sets.
const OWN_FIELDS: &[&str] = &["model", "messages", "stream"];

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
    /// The config file could not be used: every request fails with this, naming it.
    config_error: Option<Error>,
    /// Set once when the shared daemon is stopped: every request in flight is answered
    /// `daemon_stopped` (see `server/answer_on_stop.rs`). Shared with [`Service::for_client`].
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// On the shared daemon, what `cfgate/status` tells this client of the daemon.
    daemon: Option<crate::protocol::DaemonFacts>,
}

/// Model lists by the URL they came from, with when they were fetched.
type ModelCache = HashMap<String, (Instant, Arc<Vec<ModelInfo>>, &'static str)>;

/// How long a compat listing waits for the catalog's details before going without.
const CATALOG_DETAILS_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Counters {
    total: AtomicU64,
    in_flight: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    clients: Arc<Clients>,
}

/// Counts a request as in flight until dropped, whether it finished, failed or was cancelled.
/// The first in flight turns the status busy; the last to end settles it by how it ended.
struct InFlight {
    counters: Arc<Counters>,
    failed: Option<(ErrorKind, String)>,
}

impl InFlight {
    fn start(counters: &Arc<Counters>) -> InFlight {
        counters.total.fetch_add(1, Ordering::Relaxed);
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        counters.clients.request_started();
        InFlight {
            counters: counters.clone(),
            failed: None,
        }
    }

    fn fail<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &result {
            if self.failed.is_none() {
                self.failed = Some((e.kind, e.message.clone()));
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.counters.clients.request_ended(self.failed.take());
    }
}

/// A chat answer on its way: pieces while it streams, then the whole.
pub struct Chat {
    reply: Reply,
    model: String,
    in_flight: InFlight,
    /// JSON was asked for: the answer's content must parse.
    expect_json: bool,
    /// Where this turn is stored once answered.
    turn: Option<PendingTurn>,
}

struct PendingTurn {
    store: Arc<SessionStore>,
    session: String,
    messages: Vec<Map<String, Value>>,
}

impl Chat {
    pub async fn next_piece(&mut self) -> Result<Option<Piece>, Error> {
        let result = self.reply.next_piece().await;
        self.in_flight.fail(result)
    }

    pub async fn finish(mut self) -> Result<ChatResult, Error> {
        let result = self.reply.finish().await;
        let (answer, gateway) = self.in_flight.fail(result)?;
        if self.expect_json && answer.tool_calls.is_empty() {
            self.in_flight.fail(check_json(&answer.content))?;
        }
        let result = ChatResult {
            tool_calls: answer.tool_calls_value(),
            content: answer.content,
            reasoning: answer.reasoning,
            finish_reason: answer.finish_reason,
            model: self.model,
            usage: answer.usage,
            gateway,
        };
        if let Some(turn) = self.turn.take() {
            let stored = store_turn(turn, &result).await;
            self.in_flight.fail(stored)?;
        }
        Ok(result)
    }
}

/// A completion on its way: only the cleaned insertion is ever shown.
pub struct Completion {
    chat: Chat,
    cleaner: InsertionCleaner,
}

impl Completion {
    /// The next certain part of the insertion; `None` at the end.
    pub async fn next_text(&mut self) -> Result<Option<String>, Error> {
        while let Some(piece) = self.chat.next_piece().await? {
            if let Piece::Content(text) = piece {
                if let Some(clean) = self.cleaner.push(&text) {
                    return Ok(Some(clean));
                }
            }
        }
        Ok(None)
    }

    /// The whole insertion, and its last part if not yet shown.
    pub async fn finish(self) -> Result<(CompleteResult, Option<String>), Error> {
        let Completion { chat, mut cleaner } = self;
        let result = chat.finish().await?;
        if !result.content.is_empty() && cleaner.is_empty() {
            // The answer came whole (not streamed): clean it in one go.
            cleaner.push(&result.content);
        }
        let (text, rest) = cleaner.finish();
        Ok((
            CompleteResult {
                text,
                finish_reason: result.finish_reason,
                model: result.model,
                usage: result.usage,
            },
            rest,
        ))
    }
}

impl Service {
    pub fn new(base: Layer) -> Result<Service, Error> {
        Ok(Service {
            gateway: Gateway::new(base.process_settings())?,
            base,
            started: Instant::now(),
            counters: Arc::default(),
            models: Arc::default(),
            sessions: Arc::new(SessionStore::from_env()),
            config_error: None,
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            daemon: None,
        })
    }

    /// A service whose config file could not be used: it still starts (a daemon must answer
    /// `initialize` and `cfgate/status` to say why), but every request fails with the error.
    pub fn with_config_error(mut self, error: &config::ConfigError) -> Service {
        self.config_error = Some(Error::from(error));
        self
    }

    /// This service as one client of a shared daemon sees it: that client's own settings
    /// (its environment over its config file, or its config file's error) in place of the
    /// daemon's, and everything else shared: the connection pool and its cap, the request
    /// counts, the connected clients, the sessions and the model lists.
    pub fn for_client(&self, base: Layer, config_error: Option<&config::ConfigError>) -> Service {
        Service {
            gateway: self.gateway.clone(),
            base,
            started: self.started,
            counters: self.counters.clone(),
            models: self.models.clone(),
            sessions: self.sessions.clone(),
            config_error: config_error.map(Error::from),
            stopping: self.stopping.clone(),
            daemon: self.daemon.clone(),
        }
    }

    /// What `cfgate/status` says of the shared daemon serving this client.
    pub fn with_daemon_facts(mut self, facts: crate::protocol::DaemonFacts) -> Service {
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

    /// Why nothing can be sent: the config file could not be used.
    pub fn config_error(&self) -> Option<&Error> {
        self.config_error.as_ref()
    }

    /// Registers a connection (with the queue of its frames) for `cfgate/status` and
    /// `cfgate/didChangeStatus`, while the handle lives.
    pub fn register_client(&self, outbox: crate::server::connection::Outbox) -> ClientHandle {
        self.counters.clients.register(outbox)
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

    /// `cfgate/status` with the stored sessions, as every front end answers it.
    pub async fn full_status(&self, client: &Layer) -> StatusResult {
        let mut status = self.status(client);
        match self.sessions().await {
            Ok(sessions) => status.sessions = sessions,
            Err(e) => tracing::warn!("status without sessions: {e}"),
        }
        status
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

    /// Starts a chat. With `stream`, pieces arrive as the model writes them.
    pub async fn chat(
        &self,
        client: &Layer,
        params: ChatParams,
        stream: bool,
    ) -> Result<Chat, Error> {
        let mut in_flight = InFlight::start(&self.counters);
        let mut params = params;
        let turn = match params.session.take() {
            Some(session) => {
                let with_history = self
                    .with_history(client, &session, params.model.as_deref(), &params.messages)
                    .await;
                let history = in_flight.fail(with_history)?;
                let own = std::mem::replace(&mut params.messages, history);
                Some(PendingTurn {
                    store: self.sessions.clone(),
                    session,
                    messages: own,
                })
            }
            None => None,
        };
        let started = self.start_chat(client, params, stream).await;
        let (reply, model, expect_json) = in_flight.fail(started)?;
        Ok(Chat {
            reply,
            model,
            in_flight,
            expect_json,
            turn,
        })
    }

    /// A session's history, trimmed to the budget, in front of the request's messages.
    ///
    /// The budget is `session_budget_tokens` when set; else half the model's context window
    /// when a model list already fetched (`cfgate/models`) gives it, leaving the other half
    /// to the new turn and the answer; else the default.
    async fn with_history(
        &self,
        client: &Layer,
        session: &str,
        model: Option<&str>,
        messages: &[Map<String, Value>],
    ) -> Result<Vec<Map<String, Value>>, Error> {
        check_messages(messages)?;
        let turns = self.sessions.load(session).await?;
        let merged = client.over(&self.base);
        let budget = merged.session_budget_tokens.unwrap_or_else(|| {
            let model = model
                .or(merged.model.as_deref())
                .unwrap_or(config::DEFAULT_MODEL);
            self.known_context_window(model)
                .map_or(sessions::DEFAULT_BUDGET_TOKENS, |window| window / 2)
        });
        Ok(sessions::with_history(&turns, messages.to_vec(), budget))
    }

    /// The context window of `model` from the model lists in memory; never fetches.
    fn known_context_window(&self, model: &str) -> Option<u64> {
        lock(&self.models)
            .values()
            .flat_map(|(_, list, _)| list.iter())
            .find(|m| same_model(&m.id, model))
            .and_then(|m| m.context_window)
    }

    async fn start_chat(
        &self,
        client: &Layer,
        params: ChatParams,
        stream: bool,
    ) -> Result<(Reply, String, bool), Error> {
        let ChatParams {
            messages,
            model,
            json_mode,
            gateway,
            body: extra,
            ..
        } = params;
        check_messages(&messages)?;
        let options = gateway
            .as_ref()
            .map(GatewayOptions::from_json)
            .transpose()
            .map_err(|e| Error::new(ErrorKind::InvalidParams, format!("invalid params: {e}")))?;
        let settings = self.settings(
            client,
            &config::request_layer(model.as_deref(), &extra, options),
        )?;
        let routed = route_model(&settings.model, settings.endpoint)?;
        let mut messages: Vec<Value> = messages.into_iter().map(Value::Object).collect();
        let mut body: Map<String, Value> = extra
            .into_iter()
            .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
            .collect();
        if json_mode {
            add_json_instruction(&mut messages);
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        let expect_json = asks_for_json(&body);
        if let Some(max) = settings.max_tokens {
            body.entry("max_tokens").or_insert(Value::from(max));
        }
        body.insert("model".into(), Value::from(routed.clone()));
        body.insert("messages".into(), Value::Array(messages));
        if stream {
            body.insert("stream".into(), Value::Bool(true));
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        }
        let mut headers = reqwest::header::HeaderMap::new();
        let options = settings
            .gateway
            .headers()
            .map_err(|e| Error::new(ErrorKind::InvalidParams, format!("invalid params: {e}")))?;
        headers.extend(options);
        if settings.endpoint == Endpoint::Rest {
            let id = reqwest::header::HeaderValue::from_str(&settings.gateway_id)
                .map_err(|_| Error::new(ErrorKind::InvalidSetting, "invalid setting gateway_id"))?;
            headers.insert("cf-aig-gateway-id", id);
        }
        let (token, gateway_token) = settings.auth_tokens();
        let request = UpstreamRequest {
            url: settings.base_url.clone(),
            token,
            gateway_token,
            auth: settings.auth_plan(),
            headers,
            body: Value::Object(body),
            stream,
            timeout: settings.timeout,
            idle_timeout: settings.idle_timeout,
            retry: RetryPolicy {
                max_attempts: settings.max_attempts,
                deadline: settings.retry_deadline,
                base_delay: RETRY_BASE_DELAY,
                max_delay: RETRY_MAX_DELAY,
            },
            model: routed.clone(),
            byok: settings.byok,
        };
        let result = self.gateway.send(&request).await;
        let attempts = match &result {
            Ok(reply) => reply.attempts,
            Err(err) => err.attempts,
        };
        self.counters
            .retries
            .fetch_add(u64::from(attempts.saturating_sub(1)), Ordering::Relaxed);
        Ok((result?, routed, expect_json))
    }

    /// Starts a completion of the text between `prefix` and `suffix`.
    pub async fn complete(
        &self,
        client: &Layer,
        params: CompleteParams,
        stream: bool,
    ) -> Result<Completion, Error> {
        let cleaner =
            InsertionCleaner::new(&params.prefix, params.suffix.as_deref().unwrap_or_default());
        let mut body = Map::new();
        let max_tokens = params
            .max_tokens
            .or(request_or_client_max_tokens(client, &self.base))
            .unwrap_or(complete::DEFAULT_MAX_TOKENS);
        body.insert("max_tokens".into(), Value::from(max_tokens));
        body.insert(
            "temperature".into(),
            Value::from(params.temperature.unwrap_or(complete::DEFAULT_TEMPERATURE)),
        );
        if let Some(stop) = &params.stop {
            body.insert("stop".into(), stop.clone());
        }
        let messages = complete::prompt(&params);
        let chat = self
            .chat(
                client,
                ChatParams {
                    messages,
                    model: params.model,
                    json_mode: false,
                    work_done_token: None,
                    gateway: params.gateway.clone(),
                    session: None,
                    body,
                },
                stream,
            )
            .await?;
        Ok(Completion { chat, cleaner })
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

    pub fn status(&self, client: &Layer) -> StatusResult {
        let merged = client.over(&self.base);
        let resolved = merged.resolve();
        let (missing, settings_error) = match &resolved {
            Err(config::SettingsError::Missing(names)) => (names.clone(), None),
            Err(e @ config::SettingsError::Invalid { .. }) => (vec![], Some(e.to_string())),
            Ok(_) => (vec![], None),
        };
        let settings_error = match &self.config_error {
            Some(err) => Some(err.message.clone()),
            None => settings_error,
        };
        StatusResult {
            version: env!("CARGO_PKG_VERSION").to_string(),
            credentials_complete: missing.is_empty(),
            missing: missing.iter().map(|m| m.to_string()).collect(),
            settings_error,
            account_id: merged.account_id.as_deref().map(config::mask),
            gateway_id: merged
                .gateway_id
                .clone()
                .unwrap_or_else(|| config::DEFAULT_GATEWAY_ID.to_string()),
            base_url: resolved.as_ref().ok().map(|s| s.base_url.clone()),
            endpoint: merged.endpoint.unwrap_or_default().name().to_string(),
            auth_headers: resolved
                .as_ref()
                .map(|s| s.auth_plan().headers())
                .unwrap_or_default(),
            model: merged
                .model
                .clone()
                .unwrap_or_else(|| config::DEFAULT_MODEL.to_string()),
            uptime_secs: self.started.elapsed().as_secs(),
            requests: RequestCounts {
                total: self.counters.total.load(Ordering::Relaxed),
                in_flight: self.counters.in_flight.load(Ordering::Relaxed),
                failed: self.counters.failed.load(Ordering::Relaxed),
                retries: self.counters.retries.load(Ordering::Relaxed),
                queued: self.gateway.queued(),
            },
            debug_tasks: if cfg!(debug_assertions) {
                tokio::runtime::Handle::try_current()
                    .ok()
                    .map(|h| h.metrics().num_alive_tasks() as u64)
            } else {
                None
            },
            clients: self.clients(),
            sessions: Vec::new(),
            daemon: self.daemon.clone(),
        }
    }
}

impl Service {
    /// The models the gateway offers, from the cache when fresh (see [`MODELS_TTL`]).
    pub async fn models(
        &self,
        client: &Layer,
        params: ModelsParams,
    ) -> Result<ModelsResult, Error> {
        let settings = self.settings(client, &Layer::default())?;
        let catalog_url = settings
            .account_id
            .as_ref()
            .map(|account| format!("{}/accounts/{account}/ai/models/search", settings.api_url));
        let url = match settings.endpoint {
            Endpoint::Compat => format!("{}/models", settings.base_url),
            Endpoint::Rest => catalog_url.clone().unwrap_or_default(),
        };
        if !params.refresh {
            let cached = lock(&self.models).get(&url).cloned();
            if let Some((at, models, source)) = cached.filter(|(at, ..)| at.elapsed() < MODELS_TTL)
            {
                return Ok(ModelsResult {
                    models: models.as_ref().clone(),
                    source: source.into(),
                    cached: true,
                    age_secs: at.elapsed().as_secs(),
                });
            }
        }
        // The catalog is the Cloudflare API's: the API token in `Authorization`, nothing else.
        let catalog = |url: String, timeout| ModelsRequest {
            url,
            source: ModelSource::CatalogSearch,
            token: Some(settings.api_token.clone()),
            gateway_token: None,
            timeout,
        };
        let (models, source) = match settings.endpoint {
            Endpoint::Rest => {
                let mut models = self
                    .gateway
                    .list_models(&catalog(url.clone(), settings.timeout))
                    .await?;
                for model in &mut models {
                    if let Ok(id) = route_model(&model.id, Endpoint::Rest) {
                        model.id = id;
                    }
                }
                (models, "catalog")
            }
            Endpoint::Compat => {
                let (token, gateway_token) = settings.auth_tokens();
                let list = ModelsRequest {
                    url: url.clone(),
                    source: ModelSource::CompatList,
                    token,
                    gateway_token,
                    timeout: settings.timeout,
                };
                // The catalog adds Workers AI details; it needs the account and the Cloudflare
                // token, and the list is worth having without it.
                let has_token = !settings.api_token.expose_secret().trim().is_empty();
                let details = catalog_url
                    .filter(|_| has_token)
                    .map(|u| catalog(u, settings.timeout.min(CATALOG_DETAILS_TIMEOUT)));
                let (list, details) =
                    futures_util::future::join(self.gateway.list_models(&list), async {
                        match &details {
                            Some(req) => Some(self.gateway.list_models(req).await),
                            None => None,
                        }
                    })
                    .await;
                let mut models = list?;
                match details {
                    Some(Ok(catalog)) => {
                        merge_catalog(&mut models, &catalog);
                        (models, "compat+catalog")
                    }
                    Some(Err(e)) => {
                        tracing::warn!("model catalog not read, listing without details: {e}");
                        (models, "compat")
                    }
                    None => (models, "compat"),
                }
            }
        };
        let models = Arc::new(models);
        lock(&self.models).insert(url, (Instant::now(), models.clone(), source));
        Ok(ModelsResult {
            models: models.as_ref().clone(),
            source: source.into(),
            cached: false,
            age_secs: 0,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `response_format` of type `json_object` or `json_schema` asks for JSON.
fn asks_for_json(body: &Map<String, Value>) -> bool {
    body.get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "json_object" || t == "json_schema")
}

/// The answer was meant to be JSON: say so plainly when it is not, with the text.
fn check_json(content: &str) -> Result<(), Error> {
    match serde_json::from_str::<serde::de::IgnoredAny>(content.trim()) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut err = Error::new(
                ErrorKind::NotJson,
                format!("JSON was asked for, but the answer is not valid JSON ({e})"),
            )
            .with_hint(
                "the model did not keep to the JSON format (Workers AI does not enforce it, and not \
                 every model supports it); the text is in data.raw_content; try again, or another model",
            );
            err.raw_content = Some(content.to_string());
            Err(err)
        }
    }
}

/// Stores a finished turn. If it cannot be stored the request fails, with the answer
/// kept in the error, so the user knows the conversation did not move on.
async fn store_turn(turn: PendingTurn, result: &ChatResult) -> Result<(), Error> {
    let mut answer = crate::protocol::message("assistant", result.content.clone());
    if let Some(calls) = &result.tool_calls {
        answer.insert("tool_calls".into(), Value::Array(calls.clone()));
    }
    let record = Turn {
        time: sessions::now_secs(),
        messages: turn.messages,
        answer,
        model: Some(result.model.clone()),
        usage: result.usage,
    };
    turn.store
        .append(&turn.session, record)
        .await
        .map_err(|mut e| {
            e.partial_content = Some(result.content.clone());
            e
        })
}

fn request_or_client_max_tokens(client: &Layer, base: &Layer) -> Option<u32> {
    client.max_tokens.or(base.max_tokens)
}

/// Each message must be an object with a string `role`; everything else is the vendor's.
fn check_messages(messages: &[Map<String, Value>]) -> Result<(), Error> {
    if messages.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidParams,
            "invalid params: messages must hold at least one message",
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        match message.get("role") {
            Some(Value::String(role)) if !role.is_empty() => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidParams,
                    format!(
                        "invalid params: messages[{i}].role must be a non-empty string (system, user, assistant or tool)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// For models without native structured output: say it in the system message as well.
fn add_json_instruction(messages: &mut Vec<Value>) {
    if let Some(Value::Object(first)) = messages.first_mut() {
        if first.get("role").and_then(Value::as_str) == Some("system") {
            if let Some(Value::String(text)) = first.get_mut("content") {
                text.push_str("\n\n");
                text.push_str(JSON_INSTRUCTION);
                return;
            }
        }
    }
    messages.insert(0, json!({"role": "system", "content": JSON_INSTRUCTION}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_instruction_joins_or_leads() {
        let mut with_system = vec![
            json!({"role":"system","content":"Be brief."}),
            json!({"role":"user","content":"hi"}),
        ];
        add_json_instruction(&mut with_system);
        assert_eq!(with_system.len(), 2);
        assert!(
            with_system[0]["content"]
                .as_str()
                .unwrap()
                .starts_with("Be brief.\n\nRespond only")
        );
        let mut without = vec![json!({"role":"user","content":"hi"})];
        add_json_instruction(&mut without);
        assert_eq!(without[0]["role"], "system");
        assert_eq!(without.len(), 2);
    }

    /// What an editor's `cfgate/status` (and the loopback endpoint's) shows when the config
    /// file could not be used, and what every request then fails with.
    #[tokio::test]
    async fn a_config_file_error_is_the_status_problem_and_every_request_error() {
        let path = std::path::Path::new("/home/me/config.toml");
        let broken = config::file::parse(path, "model = \"a/b\"\nmodle = \"x\"\n").unwrap_err();
        let env = Layer {
            api_token: Some("t".to_string().into()),
            base_url: Some("http://127.0.0.1:9/compat".into()),
            ..Layer::default()
        };
        let service = Service::new(env).unwrap().with_config_error(&broken);
        let status = service.status(&Layer::default());
        let problem = status.settings_error.unwrap_or_default();
        assert!(
            problem.starts_with("config file /home/me/config.toml, line 2, key `modle`"),
            "{problem}"
        );
        let err = service
            .models(&Layer::default(), ModelsParams::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidSetting);
        assert_eq!(err.message, problem);
    }

    #[test]
    fn messages_are_checked() {
        assert!(check_messages(&[]).is_err());
        let bad: Map<String, Value> = serde_json::from_value(json!({"content":"x"})).unwrap();
        let err = check_messages(&[bad]).unwrap_err();
        assert!(err.message.contains("messages[0].role"));
    }
}
