//! The OpenAI-compatible API on the loopback endpoint: `/v1/models`,
//! `/v1/chat/completions` and `/v1/completions`, so the AI tools that speak OpenAI's API
//! (editor plugins, aider, `llm`, the SDKs) share the daemon's credentials, connections,
//! routing, retries and sessions instead of each holding the Cloudflare token.
//!
//! It is a tower layer inside the endpoint's guard (so the same token and Origin rules
//! hold) and in front of jsonrpsee: `/v1/...` is answered here, everything else goes on
//! to the JSON-RPC server unchanged. Each route is a translation of the same [`Service`]
//! call the JSON-RPC methods make (`Service::chat` → `Chat::next_piece`), so the wire
//! formats cannot drift in what they do. A streamed answer is an SSE body that pulls the
//! pieces as the client reads them; a client that goes away drops the body, the chat and
//! with it the upstream request.

mod chat;
mod completions;
pub mod errors;
mod fim;
mod models;
mod sse;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use crate::service::Service;
use errors::{bad_request, refusal};

/// The largest request body read (an editor's chat with files attached stays far below).
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The header that continues a server-side conversation.
pub const SESSION_HEADER: &str = "x-cfgate-session";

/// Whether a request is the OpenAI API's rather than JSON-RPC's.
pub fn is_openai_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// Puts the OpenAI routes in front of `inner` (the JSON-RPC server).
#[derive(Clone)]
pub struct OpenAiLayer {
    service: Arc<Service>,
}

impl OpenAiLayer {
    pub fn new(service: Arc<Service>) -> OpenAiLayer {
        OpenAiLayer { service }
    }
}

impl<S> tower::Layer<S> for OpenAiLayer {
    type Service = OpenAiRoutes<S>;
    fn layer(&self, inner: S) -> OpenAiRoutes<S> {
        OpenAiRoutes {
            inner,
            service: Arc::clone(&self.service),
        }
    }
}

#[derive(Clone)]
pub struct OpenAiRoutes<S> {
    inner: S,
    service: Arc<Service>,
}

type Answer = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

impl<S> tower::Service<HttpRequest> for OpenAiRoutes<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Answer {
        if !is_openai_path(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let service = Arc::clone(&self.service);
        Box::pin(async move {
            // Method, path and status only: headers hold the token.
            let (method, path) = (request.method().clone(), request.uri().path().to_string());
            let response = route(service, request).await;
            tracing::debug!(%method, path, status = response.status().as_u16(), "openai route");
            Ok(response)
        })
    }
}

async fn route(service: Arc<Service>, request: HttpRequest) -> HttpResponse {
    let path = request.uri().path().trim_end_matches('/').to_string();
    let method = request.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/v1/models") => models::list(&service).await,
        (Method::GET, p) if p.starts_with("/v1/models/") => {
            models::one(&service, &p["/v1/models/".len()..]).await
        }
        (Method::POST, "/v1/chat/completions") => {
            let (headers, body) = match read_json(request).await {
                Ok(read) => read,
                Err(refused) => return refused,
            };
            chat::chat_completions(service, &headers, body).await
        }
        (Method::POST, "/v1/completions") => {
            let (headers, body) = match read_json(request).await {
                Ok(read) => read,
                Err(refused) => return refused,
            };
            completions::completions(service, &headers, body).await
        }
        (_, "/v1/models" | "/v1/chat/completions" | "/v1/completions") => refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "method not allowed on this route",
        ),
        _ => refusal(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            &format!(
                "unknown route {path}: cfgate serves /v1/models, /v1/chat/completions and /v1/completions"
            ),
        ),
    }
}

/// The request's headers and its body as a JSON object.
async fn read_json(request: HttpRequest) -> Result<(HeaderMap, Map<String, Value>), HttpResponse> {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes();
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok((parts.headers, map)),
        Ok(_) => Err(bad_request("the request body must be a JSON object")),
        Err(e) => Err(bad_request(format!("the request body is not JSON: {e}"))),
    }
}

/// The `cf-aig-*` request headers as a `gateway` options object (`cf-aig-cache-ttl: 60` →
/// `{"cache_ttl": 60}`), checked later exactly as `cfgate/chat`'s `gateway` is. A value
/// that reads as JSON (numbers, booleans, the metadata object) is taken as such.
/// `cf-aig-authorization` is the gateway's credential, which cfgate holds: never taken.
fn gateway_options(headers: &HeaderMap) -> Result<Option<Value>, String> {
    let mut options = Map::new();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix("cf-aig-") else {
            continue;
        };
        if key == "authorization" {
            continue;
        }
        let text = value
            .to_str()
            .map_err(|_| format!("header {name}: not visible ASCII"))?;
        let parsed = match serde_json::from_str::<Value>(text) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Object(_))) => v,
            _ => Value::from(text),
        };
        options.insert(key.replace('-', "_"), parsed);
    }
    Ok((!options.is_empty()).then_some(Value::Object(options)))
}

/// The session named by `X-Cfgate-Session`, if any.
fn session_header(headers: &HeaderMap) -> Result<Option<String>, String> {
    match headers.get(SESSION_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_string()))
            .map_err(|_| format!("header {SESSION_HEADER}: not visible ASCII")),
    }
}

/// The answer's `cf-aig-*` headers (the result's `gateway` map) back on the response.
fn add_gateway_headers(response: &mut HttpResponse, gateway: &Map<String, Value>) {
    for (key, value) in gateway {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let name = format!("cf-aig-{}", key.replace('_', "-"));
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&text),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
}

/// Seconds since the epoch, for the `created` field.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An id in OpenAI's style (`chatcmpl-…`, `cmpl-…`): unique enough to tell answers apart.
fn answer_id(prefix: &str) -> String {
    format!(
        "{prefix}-{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u32(..)
    )
}

/// `stream_options.include_usage`.
fn include_usage(body: &Map<String, Value>) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn wants_stream(body: &Map<String, Value>) -> bool {
    body.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cf_aig_headers_become_gateway_options() {
        let mut headers = HeaderMap::new();
        headers.insert("cf-aig-cache-ttl", "3600".parse().unwrap());
        headers.insert("cf-aig-skip-cache", "true".parse().unwrap());
        headers.insert("cf-aig-event-id", "ev-1".parse().unwrap());
        headers.insert("cf-aig-metadata", r#"{"user":"u1"}"#.parse().unwrap());
        headers.insert("cf-aig-authorization", "Bearer x".parse().unwrap());
        let options = gateway_options(&headers).unwrap().unwrap();
        assert_eq!(
            options,
            serde_json::json!({"cache_ttl": 3600, "skip_cache": true, "event_id": "ev-1",
                               "metadata": {"user": "u1"}})
        );
        assert!(gateway_options(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn only_v1_is_openai() {
        assert!(is_openai_path("/v1/models"));
        assert!(is_openai_path("/v1"));
        assert!(!is_openai_path("/"));
        assert!(!is_openai_path("/v10"));
    }
}
