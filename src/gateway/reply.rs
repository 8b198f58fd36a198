//! An answer being received: the event stream read piece by piece (bounded, with an idle
//! timeout), or a whole answer given as pieces, then the whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

use super::Answer;
use super::http::transport_error;
use super::stream_limits::{Bounded, MAX_EVENT_BYTES, MAX_STREAM_BYTES, ReadError};
use crate::error::{Error, ErrorKind};
use crate::protocol::Piece;

/// How long the end of a body is awaited after `data: [DONE]`.
const DRAIN_AFTER_DONE: Duration = Duration::from_millis(500);

pub(super) type EventStream = Pin<
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
    pub(super) idle_timeout: Duration,
    pub(super) events: Option<EventStream>,
    pub(super) queued: VecDeque<Piece>,
    pub(super) answer: Answer,
    /// The request's place under the in-flight cap, given back when the reply is dropped.
    pub(super) slot: Option<OwnedSemaphorePermit>,
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
pub(super) fn whole_answer_pieces(answer: &Answer) -> VecDeque<Piece> {
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
