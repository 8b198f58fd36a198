//! `cfgate/chat`: a request (built by [`prepare`](super::prepare)) sent through the gateway,
//! its answer checked (JSON when JSON was asked for) and, for a session, stored as a turn.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value};

use super::Service;
use super::counters::CountedRequest;
use super::prepare::{PreparedChat, Sending, check_messages};

use crate::config::{self, Layer};
use crate::error::{Error, ErrorKind};
use crate::gateway::Reply;
use crate::protocol::{ChatParams, ChatResult, Piece};
use crate::sessions::{self, SessionStore, Turn};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
