//! `cfgate/complete`: a chat with the completion prompt, whose answer is cleaned into the
//! text to insert at the cursor as it streams.

use serde_json::{Map, Value};

use super::{Chat, Service};
use crate::complete::{self, InsertionCleaner};
use crate::config::Layer;
use crate::error::Error;
use crate::gateway::budget::Priority;
use crate::protocol::{ChatParams, CompleteParams, CompleteResult, Piece};

/// A completion on its way: only the cleaned insertion is ever shown.
pub struct Completion {
    chat: Chat,
    cleaner: InsertionCleaner,
}

impl Completion {
    /// The gateway's `cf-aig-*` response headers, as [`Chat::gateway`].
    pub fn gateway(&self) -> &Map<String, Value> {
        self.chat.gateway()
    }

    /// The routed model id that was sent.
    pub fn model(&self) -> &str {
        self.chat.model()
    }

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
            .or(max_tokens_setting(client, &self.base))
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
            .chat_as(
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
                Priority::Completion,
            )
            .await?;
        Ok(Completion { chat, cleaner })
    }
}

/// The `max_tokens` setting: the client's, else the base layer's.
fn max_tokens_setting(client: &Layer, base: &Layer) -> Option<u32> {
    client.max_tokens.or(base.max_tokens)
}
