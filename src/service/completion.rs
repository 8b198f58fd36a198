//! `cfgate/complete`: a chat with the completion prompt, whose answer is cleaned into the
//! text to insert at the cursor as it streams.

use serde_json::{Map, Value};

use super::coalesce::{CompletionKey, Lead, Role, tell_failure};
use super::counters::CountedRequest;
use super::prepare::Sending;
use super::{Chat, Service};
use crate::complete::{self, InsertionCleaner};
use crate::config::Layer;
use crate::error::Error;
use crate::gateway::budget::Priority;
use crate::protocol::{ChatParams, CompleteParams, CompleteResult, Piece};

/// A completion on its way: only the cleaned insertion is ever shown.
pub struct Completion {
    source: Source,
    cleaner: InsertionCleaner,
}

// One per request in flight, never in a collection: the size of its variants matters less
// than not allocating on the way of every completion.
#[allow(clippy::large_enum_variant)]
enum Source {
    /// Sent upstream by this request; identical requests that came meanwhile hear how
    /// it ended through `lead`.
    Answering { chat: Chat, lead: Option<Lead> },
    /// An identical request in flight answered for this one.
    Answered(Answered),
}

struct Answered {
    result: CompleteResult,
    gateway: Map<String, Value>,
    _in_flight: CountedRequest,
}

impl Completion {
    /// The gateway's `cf-aig-*` response headers, as [`Chat::gateway`].
    pub fn gateway(&self) -> &Map<String, Value> {
        match &self.source {
            Source::Answering { chat, .. } => chat.gateway(),
            Source::Answered(answered) => &answered.gateway,
        }
    }

    /// The routed model id that was sent.
    pub fn model(&self) -> &str {
        match &self.source {
            Source::Answering { chat, .. } => chat.model(),
            Source::Answered(answered) => &answered.result.model,
        }
    }

    /// The next certain part of the insertion; `None` at the end.
    pub async fn next_text(&mut self) -> Result<Option<String>, Error> {
        let Source::Answering { chat, lead } = &mut self.source else {
            // The whole text comes with `finish`.
            return Ok(None);
        };
        while let Some(piece) = tell_failure(lead, chat.next_piece().await)? {
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
        let Completion {
            source,
            mut cleaner,
        } = self;
        let (chat, mut lead) = match source {
            Source::Answering { chat, lead } => (chat, lead),
            Source::Answered(answered) => {
                let result = answered.result;
                let rest = (!result.text.is_empty()).then(|| result.text.clone());
                return Ok((result, rest));
            }
        };
        let result = tell_failure(&mut lead, chat.finish().await)?;
        if !result.content.is_empty() && cleaner.is_empty() {
            // The answer came whole (not streamed): clean it in one go.
            cleaner.push(&result.content);
        }
        let (text, rest) = cleaner.finish();
        let completion = CompleteResult {
            text,
            finish_reason: result.finish_reason,
            model: result.model,
            usage: result.usage,
        };
        if let Some(lead) = lead {
            lead.tell(Ok((completion.clone(), result.gateway)));
        }
        Ok((completion, rest))
    }
}

impl Service {
    /// Starts a completion of the text between `prefix` and `suffix`. An identical
    /// completion already in flight (any client's) answers this one too.
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
        if let Some(stop) = params.stop.as_ref().and_then(complete::chat_stop) {
            body.insert("stop".into(), stop);
        }
        let messages = complete::prompt(&params);
        let mut in_flight = CountedRequest::start(&self.counters);
        let prepared = self.prepare_chat(
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
            Sending {
                stream,
                priority: Priority::Completion,
                waits: None,
            },
        );
        let prepared = in_flight.fail(prepared)?;
        let key = CompletionKey::of(&prepared.request);
        loop {
            let follower = match self.completions.join_or_lead(key) {
                Role::Lead(lead) => {
                    let mut lead = Some(lead);
                    let chat = tell_failure(&mut lead, self.send_chat(prepared, in_flight).await)?;
                    let source = Source::Answering { chat, lead };
                    return Ok(Completion { source, cleaner });
                }
                Role::Follow(follower) => follower,
            };
            // The leader was cancelled before it had an answer: try again, maybe leading.
            let Some(outcome) = follower.outcome().await else {
                continue;
            };
            let (result, gateway) = in_flight.fail(outcome.as_ref().clone())?;
            let source = Source::Answered(Answered {
                result,
                gateway,
                _in_flight: in_flight,
            });
            return Ok(Completion { source, cleaner });
        }
    }
}

/// The `max_tokens` setting: the client's, else the base layer's.
fn max_tokens_setting(client: &Layer, base: &Layer) -> Option<u32> {
    client.max_tokens.or(base.max_tokens)
}
