//! `POST /v1/chat/completions`: OpenAI's body as `cfgate/chat` params (unknown fields pass
//! through to the gateway, as `cfgate/chat`'s do), answered as a `chat.completion` object
//! or a stream of `chat.completion.chunk` events made from the `$/progress` pieces.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use jsonrpsee::server::HttpResponse;
use serde_json::{Map, Value, json};

use super::errors::{bad_request, error_body, error_response, json_response};
use super::{
    add_gateway_headers, answer_id, gateway_options, include_usage, now_secs, session_header, sse,
    wants_stream,
};
use crate::config::Layer;
use crate::protocol::{ChatParams, ChatResult, Piece};
use crate::service::{Chat, Service};

/// What every chunk of one answer repeats.
struct Stamp {
    id: String,
    created: u64,
    model: String,
}

impl Stamp {
    fn chunk(&self, delta: Value, finish_reason: Value) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}],
        })
    }
}

pub async fn chat_completions(
    service: Arc<Service>,
    headers: &HeaderMap,
    mut body: Map<String, Value>,
) -> HttpResponse {
    // cfgate reads one choice; asking for more would be billed and thrown away.
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return bad_request("n > 1 is not served: cfgate answers with one choice");
    }
    let stream = wants_stream(&body);
    let usage_chunk = include_usage(&body);
    // cfgate asks the gateway for a stream (with usage) itself when it streams.
    body.remove("stream");
    body.remove("stream_options");
    let mut params: ChatParams = match serde_json::from_value(Value::Object(body)) {
        Ok(params) => params,
        Err(e) => return bad_request(format!("invalid request body: {e}")),
    };
    params.work_done_token = None;
    match gateway_options(headers) {
        Ok(None) => {}
        Ok(Some(Value::Object(from_headers))) => {
            let mut merged = match params.gateway.take() {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            merged.extend(from_headers);
            params.gateway = Some(Value::Object(merged));
        }
        Ok(Some(_)) => {}
        Err(e) => return bad_request(e),
    }
    match session_header(headers) {
        Ok(Some(name)) => params.session = Some(name),
        Ok(None) => {}
        Err(e) => return bad_request(e),
    }
    let chat = match service.chat(&Layer::default(), params, stream).await {
        Ok(chat) => chat,
        Err(err) => return error_response(&err),
    };
    let stamp = Stamp {
        id: answer_id("chatcmpl"),
        created: now_secs(),
        model: chat.model().to_string(),
    };
    let gateway = chat.gateway().clone();
    let mut response = if stream {
        // The first piece before the status line: a failure before any of the answer
        // (a stall, a cut, a refusal in the stream) is then an HTTP error the client's
        // SDK raises as what it is, and the headers leave with the first chunk.
        let mut chat = chat;
        match chat.next_piece().await {
            Ok(first) => streamed(chat, first, stamp, usage_chunk),
            Err(err) => error_response(&err),
        }
    } else {
        whole(chat, stamp).await
    };
    // The gateway's own headers (log id, cache status ...), as a direct call would get them.
    if response.status().is_success() {
        add_gateway_headers(&mut response, &gateway);
    }
    response
}

async fn whole(mut chat: Chat, stamp: Stamp) -> HttpResponse {
    let result = async {
        while chat.next_piece().await?.is_some() {}
        chat.finish().await
    }
    .await;
    match result {
        Ok(result) => json_response(StatusCode::OK, &completion_object(&stamp, &result)),
        Err(err) => error_response(&err),
    }
}

fn completion_object(stamp: &Stamp, result: &ChatResult) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), Value::from("assistant"));
    let content = if result.content.is_empty() && result.tool_calls.is_some() {
        Value::Null
    } else {
        Value::from(result.content.clone())
    };
    message.insert("content".into(), content);
    if let Some(calls) = &result.tool_calls {
        message.insert("tool_calls".into(), Value::Array(calls.clone()));
    }
    if let Some(reasoning) = &result.reasoning {
        message.insert("reasoning_content".into(), Value::from(reasoning.clone()));
    }
    json!({
        "id": stamp.id, "object": "chat.completion", "created": stamp.created,
        "model": stamp.model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": finish_reason(result), "logprobs": null}],
        "usage": result.usage,
    })
}

fn finish_reason(result: &ChatResult) -> Value {
    match &result.finish_reason {
        Some(reason) => Value::from(reason.clone()),
        None if result.tool_calls.is_some() => Value::from("tool_calls"),
        None => Value::from("stop"),
    }
}

/// The `delta` of one piece, as OpenAI streams it.
fn delta_of(piece: Piece) -> Map<String, Value> {
    let mut delta = Map::new();
    match piece {
        Piece::Content(text) => {
            delta.insert("content".into(), Value::from(text));
        }
        Piece::Reasoning(text) => {
            delta.insert("reasoning_content".into(), Value::from(text));
        }
        Piece::ToolCalls(calls) => {
            // Clients assemble tool calls by `index`; a vendor that leaves it out sends
            // one call per chunk, in order.
            let calls = calls
                .into_iter()
                .enumerate()
                .map(|(i, mut call)| {
                    if let Some(map) = call.as_object_mut() {
                        map.entry("index").or_insert(Value::from(i));
                    }
                    call
                })
                .collect();
            delta.insert("tool_calls".into(), Value::Array(calls));
        }
    }
    delta
}

/// The SSE answer: a chunk per piece (the first with the role), a last chunk with the
/// finish reason, the usage chunk when asked, `[DONE]`. An error after the start is an
/// `{"error": ...}` event, as OpenAI sends it, and no `[DONE]`.
fn streamed(
    chat: Chat,
    first_piece: Option<Piece>,
    stamp: Stamp,
    usage_chunk: bool,
) -> HttpResponse {
    // The chat while it is open (with the piece already read, if any), whether no chunk
    // went yet, what every chunk repeats.
    let start = (Some((chat, first_piece)), true, stamp);
    let events = futures_util::stream::unfold(start, move |(open, first, stamp)| async move {
        let (mut chat, read) = open?;
        let next = match read {
            Some(piece) => Ok(Some(piece)),
            None if first => Ok(None),
            None => chat.next_piece().await,
        };
        match next {
            Ok(Some(piece)) => {
                let mut delta = delta_of(piece);
                if first {
                    delta.insert("role".into(), Value::from("assistant"));
                }
                let event = sse::event(&stamp.chunk(Value::Object(delta), Value::Null));
                Some((Bytes::from(event), (Some((chat, None)), false, stamp)))
            }
            Ok(None) => {
                let mut out = Vec::new();
                match chat.finish().await {
                    Ok(result) => {
                        let delta = if first {
                            json!({"role": "assistant"})
                        } else {
                            json!({})
                        };
                        out.extend(sse::event(&stamp.chunk(delta, finish_reason(&result))));
                        if usage_chunk {
                            let mut chunk = stamp.chunk(json!({}), Value::Null);
                            chunk["choices"] = json!([]);
                            chunk["usage"] = json!(result.usage);
                            out.extend(sse::event(&chunk));
                        }
                        out.extend_from_slice(sse::DONE);
                    }
                    Err(err) => out.extend(sse::event(&error_body(&err))),
                }
                Some((Bytes::from(out), (None, false, stamp)))
            }
            Err(err) => Some((
                Bytes::from(sse::event(&error_body(&err))),
                (None, false, stamp),
            )),
        }
    });
    sse::response(events)
}
