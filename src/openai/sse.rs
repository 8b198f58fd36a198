//! Server-sent events as OpenAI streams them: `data: {json}` events, then `data: [DONE]`.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::HeaderValue;
use http_body::Frame;
use jsonrpsee::server::{HttpBody, HttpResponse};
use serde_json::Value;

/// The event that ends a stream that went well.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// One `data:` event (serde_json writes no raw newline, so one line is one event).
pub fn event(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serialized straight into the event; writing a `Value` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    out
}

/// A 200 whose body is `events`, pulled as the client reads: when the client goes away,
/// hyper drops the body, and with it whatever the stream holds (the upstream request).
pub fn response<S>(events: S) -> HttpResponse
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let frames = events.map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    let mut response = HttpResponse::new(HttpBody::new(http_body_util::StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
}
