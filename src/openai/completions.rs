//! `POST /v1/completions`: `prompt` (and `suffix`, for fill-in-the-middle) as
//! `cfgate/complete`'s prefix and suffix, so OpenAI completion clients get cfgate's
//! completion prompt and cleaning over a chat-only gateway; answered as a
//! `text_completion` object or a stream of them. A `prompt` that is a FIM template the
//! client filled in itself (Continue's autocomplete does) is taken apart first ([`fim`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use jsonrpsee::server::HttpResponse;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::errors::{bad_request, error_body, error_response, json_response};
use super::{
    add_gateway_headers, answer_id, fim, gateway_options, include_usage, now_secs, sse,
    wants_stream,
};
use crate::config::Layer;
use crate::protocol::{CompleteParams, CompleteResult};
use crate::service::{Completion, Service};

/// The fields of OpenAI's completions body cfgate uses; others are ignored (the prompt
/// cfgate sends is its own).
#[derive(Deserialize)]
struct CompletionsBody {
    #[serde(default)]
    model: Option<String>,
    prompt: Value,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    stop: Option<Value>,
}

struct Stamp {
    id: String,
    created: u64,
    model: String,
}

impl Stamp {
    fn object(&self, text: &str, finish_reason: Value) -> Value {
        json!({
            "id": self.id, "object": "text_completion", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": null}],
        })
    }
}

pub async fn completions(
    service: Arc<Service>,
    headers: &HeaderMap,
    body: Map<String, Value>,
) -> HttpResponse {
    let stream = wants_stream(&body);
    let usage_chunk = include_usage(&body);
    let request: CompletionsBody = match serde_json::from_value(Value::Object(body)) {
        Ok(request) => request,
        Err(e) => return bad_request(format!("invalid request body: {e}")),
    };
    let prefix = match request.prompt {
        Value::String(text) => text,
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        _ => {
            return bad_request(
                "prompt must be one string (token arrays and batches are not served)",
            );
        }
    };
    // A client that rendered a FIM template itself (Continue) sent both sides in `prompt`.
    let (prefix, suffix) = match request.suffix {
        Some(suffix) => (prefix, Some(suffix)),
        None => match fim::split_templated(&prefix) {
            Some((before, after)) => (before, Some(after)),
            None => (prefix, None),
        },
    };
    let gateway = match gateway_options(headers) {
        Ok(options) => options,
        Err(e) => return bad_request(e),
    };
    let params = CompleteParams {
        prefix,
        suffix,
        model: request.model,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        stop: request.stop,
        gateway,
        ..CompleteParams::default()
    };
    let completion = match service.complete(&Layer::default(), params, stream).await {
        Ok(completion) => completion,
        Err(err) => return error_response(&err),
    };
    let stamp = Stamp {
        id: answer_id("cmpl"),
        created: now_secs(),
        model: completion.model().to_string(),
    };
    let gateway = completion.gateway().clone();
    let mut response = if stream {
        streamed(completion, stamp, usage_chunk)
    } else {
        whole(completion, stamp).await
    };
    if response.status().is_success() {
        add_gateway_headers(&mut response, &gateway);
    }
    response
}

async fn whole(mut completion: Completion, stamp: Stamp) -> HttpResponse {
    let result = async {
        while completion.next_text().await?.is_some() {}
        completion.finish().await
    }
    .await;
    match result {
        Ok((result, _)) => {
            let mut object = stamp.object(&result.text, finish_reason(&result));
            object["usage"] = json!(result.usage);
            json_response(StatusCode::OK, &object)
        }
        Err(err) => error_response(&err),
    }
}

fn finish_reason(result: &CompleteResult) -> Value {
    Value::from(
        result
            .finish_reason
            .clone()
            .unwrap_or_else(|| "stop".into()),
    )
}

/// A chunk per certain part of the insertion, the rest with the finish reason, the usage
/// chunk when asked, `[DONE]`.
fn streamed(completion: Completion, stamp: Stamp, usage_chunk: bool) -> HttpResponse {
    let start = (Some(completion), stamp);
    let events = futures_util::stream::unfold(start, move |(completion, stamp)| async move {
        let mut completion = completion?;
        match completion.next_text().await {
            Ok(Some(text)) => {
                let event = sse::event(&stamp.object(&text, Value::Null));
                Some((Bytes::from(event), (Some(completion), stamp)))
            }
            Ok(None) => {
                let mut out = Vec::new();
                match completion.finish().await {
                    Ok((result, rest)) => {
                        let rest = rest.unwrap_or_default();
                        out.extend(sse::event(&stamp.object(&rest, finish_reason(&result))));
                        if usage_chunk {
                            let mut chunk = stamp.object("", Value::Null);
                            chunk["choices"] = json!([]);
                            chunk["usage"] = json!(result.usage);
                            out.extend(sse::event(&chunk));
                        }
                        out.extend_from_slice(sse::DONE);
                    }
                    Err(err) => out.extend(sse::event(&error_body(&err))),
                }
                Some((Bytes::from(out), (None, stamp)))
            }
            Err(err) => Some((Bytes::from(sse::event(&error_body(&err))), (None, stamp))),
        }
    });
    sse::response(events)
}
