//! `cfgate/chat`: the request built from params and settings, sent through the gateway,
//! its answer checked (JSON when JSON was asked for) and, for a session, stored as a turn.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Service;
use super::counters::CountedRequest;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{self, Endpoint, Layer, Settings};
use crate::error::{Error, ErrorKind};
use crate::gateway::budget::{BudgetKey, Priority, WaitReports};
use crate::gateway::options::GatewayOptions;
use crate::gateway::{Reply, RetryPolicy, UpstreamRequest};
use crate::protocol::{ChatParams, ChatResult, Piece};
use crate::route::route_model;
use crate::sessions::{self, SessionStore, Turn};

const RETRY_BASE_DELAY: Duration = Duration::from_millis(500);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(8);

const JSON_INSTRUCTION: &str =
    "Respond only with one valid JSON object: no text before or after it, and no code fences.";

/// Fields of the OpenAI body that cfgate itself sets.
const OWN_FIELDS: &[&str] = &["model", "messages", "stream"];

/// A chat answer on its way: pieces while it streams, then the whole.
pub struct Chat {
    reply: Reply,
    model: String,
    in_flight: CountedRequest,
    /// JSON was asked for: the answer's content must parse.
    expect_json: bool,
    /// Where this turn is stored once answered.
    turn: Option<PendingTurn>,
}

/// How a chat is sent, beyond its params.
pub(super) struct Sending {
    pub(super) stream: bool,
    /// Chat goes first; completions are shed when the rate budget runs low.
    pub(super) priority: Priority,
    pub(super) waits: Option<WaitReports>,
}

impl Sending {
    fn interactive(stream: bool, waits: Option<WaitReports>) -> Sending {
        Sending {
            stream,
            priority: Priority::Interactive,
            waits,
        }
    }
}

/// A chat request built and ready to send.
pub(super) struct PreparedChat {
    pub(super) request: UpstreamRequest,
    /// The routed model id the request names.
    pub(super) model: String,
    pub(super) expect_json: bool,
}

struct PendingTurn {
    store: Arc<SessionStore>,
    session: String,
    messages: Vec<Map<String, Value>>,
}

impl Chat {
    /// The routed model id that was sent (`workers-ai/@cf/...`).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The gateway's `cf-aig-*` response headers (known once the answer has begun), named
    /// as in [`ChatResult::gateway`].
    pub fn gateway(&self) -> &Map<String, Value> {
        &self.reply.gateway
    }

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

impl Service {
    /// Starts a chat. With `stream`, pieces arrive as the model writes them.
    pub async fn chat(
        &self,
        client: &Layer,
        params: ChatParams,
        stream: bool,
    ) -> Result<Chat, Error> {
        self.chat_as(client, params, Sending::interactive(stream, None))
            .await
    }

    /// Starts a streamed chat; while it waits for the gateway's rate budget, `show` is
    /// told how long (each time the wait is known anew), so the user sees why nothing
    /// comes yet.
    pub async fn chat_showing_waits<F, Shown>(
        &self,
        client: &Layer,
        params: ChatParams,
        mut show: F,
    ) -> Result<Chat, Error>
    where
        F: FnMut(Duration) -> Shown,
        Shown: Future<Output = ()>,
    {
        let (waits, mut waiting) = tokio::sync::watch::channel(None);
        let start = self.chat_as(client, params, Sending::interactive(true, Some(waits)));
        tokio::pin!(start);
        loop {
            tokio::select! {
                chat = &mut start => return chat,
                Ok(()) = waiting.changed() => {
                    let wait = *waiting.borrow_and_update();
                    if let Some(wait) = wait {
                        show(wait).await;
                    }
                }
            }
        }
    }

    async fn chat_as(
        &self,
        client: &Layer,
        params: ChatParams,
        sending: Sending,
    ) -> Result<Chat, Error> {
        let mut in_flight = CountedRequest::start(&self.counters);
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
        let prepared = in_flight.fail(self.prepare_chat(client, params, sending))?;
        let mut chat = self.send_chat(prepared, in_flight).await?;
        chat.turn = turn;
        Ok(chat)
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

    /// The upstream request for `params`: settings resolved, model routed, body and
    /// headers built. Nothing is sent yet.
    pub(super) fn prepare_chat(
        &self,
        client: &Layer,
        params: ChatParams,
        sending: Sending,
    ) -> Result<PreparedChat, Error> {
        let Sending {
            stream,
            priority,
            waits,
        } = sending;
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
        let budget = budget_key(&settings, token.as_ref(), gateway_token.as_ref());
        let request = UpstreamRequest {
            budget,
            priority,
            requests_per_minute: settings.requests_per_minute,
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
            waits,
        };
        Ok(PreparedChat {
            request,
            model: routed,
            expect_json,
        })
    }

    /// Sends a prepared chat; the answer is counted by `in_flight` until it ends.
    pub(super) async fn send_chat(
        &self,
        prepared: PreparedChat,
        mut in_flight: CountedRequest,
    ) -> Result<Chat, Error> {
        let result = self.gateway.send(&prepared.request).await;
        let attempts = match &result {
            Ok(reply) => reply.attempts,
            Err(err) => err.attempts,
        };
        self.counters
            .retries
            .fetch_add(u64::from(attempts.saturating_sub(1)), Ordering::Relaxed);
        let reply = in_flight.fail(result)?;
        Ok(Chat {
            reply,
            model: prepared.model,
            in_flight,
            expect_json: prepared.expect_json,
            turn: None,
        })
    }
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

/// The rate budget a request spends: its gateway (URL, and the gateway id the REST
/// endpoint names in a header) and the credentials it sends, hashed.
fn budget_key(
    settings: &Settings,
    token: Option<&SecretString>,
    gateway_token: Option<&SecretString>,
) -> BudgetKey {
    let label = match settings.endpoint {
        Endpoint::Compat => settings.base_url.clone(),
        Endpoint::Rest => format!("{} (gateway {})", settings.base_url, settings.gateway_id),
    };
    let secrets: Vec<&str> = [token, gateway_token]
        .into_iter()
        .flatten()
        .map(|t| t.expose_secret())
        .collect();
    BudgetKey::new(label, &secrets)
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
            .models(&Layer::default(), crate::protocol::ModelsParams::default())
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
