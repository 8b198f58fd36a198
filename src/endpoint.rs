//! The loopback endpoint: cfgate's methods over HTTP and WebSocket JSON-RPC (jsonrpsee),
//! for tools that cannot hold a stdio pipe open (shell scripts with `curl`, browsers'
//! extensions, notebooks).
//!
//! Why it is guarded three ways: any local process, and any web page the user opens, can
//! reach a loopback port. So it binds to loopback only; every request must carry the
//! bearer token that only the user can read (0600 file in the private runtime folder), or
//! gets 401; and a request with an `Origin` header (what browsers send) is refused with
//! 403 unless that origin is in the `listen_origins` setting, which also stops DNS
//! rebinding (the rebound page's origin is its own name, not the loopback address).
//! A listed origin's preflights and answers get their CORS headers ([`crate::cors`]).
//!
//! The methods are thin: each is the same [`Service`] call the LSP front end makes, so
//! the two front ends cannot drift apart. HTTP has no streaming; a streamed chat is a
//! WebSocket subscription whose notifications are the `$/progress` report values, in
//! order, then the final answer.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use jsonrpsee::RpcModule;
use jsonrpsee::server::{
    HttpBody, HttpRequest, HttpResponse, PendingSubscriptionSink, Server, ServerHandle,
    SubscriptionMessage,
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_http::validate_request::ValidateRequestHeaderLayer;

use crate::config::Layer;
use crate::cors::{CorsLayer, origin_allowed};
use crate::error::Error;
use crate::protocol::{ChatParams, CompleteParams, ModelsParams, ProgressValue};
use crate::service::Service;
use crate::sessions::SessionParams;

pub const TOKEN_FILE: &str = "endpoint.token";
pub const ADDR_FILE: &str = "endpoint.addr";
/// The subscription of a streamed chat, its notifications, and how to stop it early.
pub const SUBSCRIBE_CHAT: &str = "cfgate/subscribeChat";
pub const CHAT_NOTIFICATION: &str = "cfgate/chatPiece";
pub const UNSUBSCRIBE_CHAT: &str = "cfgate/unsubscribeChat";

/// Refuses an address that is not loopback.
pub fn loopback_only(addr: SocketAddr) -> Result<SocketAddr, String> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!(
            "--listen {addr}: the endpoint binds to loopback only (127.0.0.1 or [::1])"
        ))
    }
}

/// Where the endpoint's key is kept across daemon starts: `endpoint.key` in the data
/// folder (`~/.local/share/cfgate`, or `$CFGATE_DATA_DIR`, beside the sessions), 0600 in a
/// 0700 folder; not beside the logs, so that nobody sending a log sends the key.
pub fn key_path() -> Option<std::path::PathBuf> {
    std::env::var_os(crate::sessions::ENV_DATA_DIR)
        .map(std::path::PathBuf::from)
        .or_else(|| crate::config::project_dirs().map(|d| d.data_dir().to_path_buf()))
        .map(|dir| dir.join(KEY_FILE))
}

pub const KEY_FILE: &str = "endpoint.key";

/// The endpoint's key: the one kept in `endpoint.key` (so the tools configured with it go
/// on working after a restart), made the first time, and copied 0600 to `dir`'s
/// `endpoint.token` for the clients that look there.
pub fn endpoint_key(dir: &Path) -> Result<SecretString, String> {
    let token = match key_path() {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().len() >= 32 => SecretString::from(text.trim().to_string()),
            _ => rotate_key(&path)?,
        },
        None => fresh_key()?,
    };
    write_private(&dir.join(TOKEN_FILE), &token)?;
    Ok(token)
}

/// Writes a new key to `path` (`cfgate endpoint --rotate`); the daemon takes it at its
/// next start.
pub fn rotate_key(path: &Path) -> Result<SecretString, String> {
    if let Some(parent) = path.parent() {
        crate::sessions::create_private_dir(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let token = fresh_key()?;
    write_private(path, &token)?;
    Ok(token)
}

fn fresh_key() -> Result<SecretString, String> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        filled +=
            rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(|e| format!("no randomness for the endpoint key: {e}"))?;
    }
    Ok(SecretString::from(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// A secret file readable by the user alone, replaced whole.
fn write_private(path: &Path, token: &SecretString) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(format!("{}\n", token.expose_secret()).as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Starts serving on `addr`; returns where it listens.
pub async fn start(
    service: Arc<Service>,
    addr: SocketAddr,
    token: SecretString,
    allowed_origins: Vec<String>,
) -> Result<(SocketAddr, ServerHandle), String> {
    let addr = loopback_only(addr)?;
    let cors = CorsLayer::new(allowed_origins.clone());
    let expected = SecretString::from(format!("Bearer {}", token.expose_secret()));
    let guard = move |request: &mut HttpRequest<HttpBody>| -> Result<(), HttpResponse> {
        let authorized = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| constant_time_eq(v.as_bytes(), expected.expose_secret().as_bytes()));
        // OpenAI clients turn a 401 into their "check your API key" error from its JSON.
        let openai = crate::openai::is_openai_path(request.uri().path());
        if !authorized {
            return Err(refusal(
                openai,
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (see endpoint.token in the runtime folder)",
            ));
        }
        if let Some(origin) = request.headers().get(http::header::ORIGIN) {
            if !origin_allowed(origin, &allowed_origins) {
                return Err(refusal(
                    openai,
                    StatusCode::FORBIDDEN,
                    "this Origin is not in the listen_origins setting",
                ));
            }
        }
        Ok(())
    };
    // CORS for listed origins (their preflights carry no token), then the guard for every
    // route; then `/v1/...` is the OpenAI API's, the rest JSON-RPC.
    let middleware = tower::ServiceBuilder::new()
        .layer(cors)
        .layer(ValidateRequestHeaderLayer::custom(guard))
        .layer(crate::openai::OpenAiLayer::new(Arc::clone(&service)));
    // One call per request, as on stdio: a batch would bypass the per-call limits.
    let config = jsonrpsee::server::ServerConfig::builder()
        .set_batch_request_config(jsonrpsee::server::BatchRequestConfig::Disabled)
        .build();
    let server = Server::builder()
        .set_config(config)
        .set_http_middleware(middleware)
        .build(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = server
        .local_addr()
        .map_err(|e| format!("cannot tell where the endpoint listens: {e}"))?;
    let handle = server.start(module(service));
    Ok((bound, handle))
}

fn refusal(openai: bool, status: StatusCode, message: &'static str) -> HttpResponse {
    if openai {
        let code = if status == StatusCode::UNAUTHORIZED {
            "invalid_api_key"
        } else {
            "origin_not_allowed"
        };
        return crate::openai::errors::refusal(status, "invalid_request_error", code, message);
    }
    let mut response = HttpResponse::new(HttpBody::from(message));
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// Compares without stopping at the first difference, so timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn rpc_error(err: Error) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        err.kind.code() as i32,
        err.message.clone(),
        Some(err.data()),
    )
}

fn parse<T: DeserializeOwned>(params: &Params<'_>) -> Result<T, ErrorObjectOwned> {
    let value: Value = if params.is_object() || params.as_str().is_some() {
        params.parse()?
    } else {
        json!({})
    };
    serde_json::from_value(value)
        .map_err(|e| ErrorObjectOwned::owned(-32602, format!("invalid params: {e}"), None::<()>))
}

/// Names are fixed and distinct, so registering cannot fail; if it did, say so.
fn registered<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::error!("endpoint method not registered: {e}");
    }
}

fn module(service: Arc<Service>) -> RpcModule<Arc<Service>> {
    let mut module = RpcModule::new(service);
    registered(
        module.register_async_method("cfgate/chat", |params, service, _| async move {
            let params: ChatParams = parse(&params)?;
            let mut chat = service
                .chat(&Layer::default(), params, false)
                .await
                .map_err(rpc_error)?;
            while chat.next_piece().await.map_err(rpc_error)?.is_some() {}
            chat.finish().await.map_err(rpc_error)
        }),
    );
    registered(
        module.register_async_method("cfgate/complete", |params, service, _| async move {
            let params: CompleteParams = parse(&params)?;
            let mut completion = service
                .complete(&Layer::default(), params, false)
                .await
                .map_err(rpc_error)?;
            while completion.next_text().await.map_err(rpc_error)?.is_some() {}
            completion
                .finish()
                .await
                .map(|(result, _)| result)
                .map_err(rpc_error)
        }),
    );
    registered(
        module.register_async_method("cfgate/status", |_, service, _| async move {
            Ok::<_, ErrorObjectOwned>(service.full_status(&Layer::default()).await)
        }),
    );
    registered(
        module.register_async_method("cfgate/models", |params, service, _| async move {
            let params: ModelsParams = parse(&params)?;
            service
                .models(&Layer::default(), params)
                .await
                .map_err(rpc_error)
        }),
    );
    registered(
        module.register_async_method("cfgate/sessions", |_, service, _| async move {
            let sessions = service.sessions().await.map_err(rpc_error)?;
            Ok::<_, ErrorObjectOwned>(crate::sessions::SessionsResult { sessions })
        }),
    );
    registered(
        module.register_async_method("cfgate/session", |params, service, _| async move {
            let params: SessionParams = parse(&params)?;
            service.session(&params.name).await.map_err(rpc_error)
        }),
    );
    registered(module.register_async_method(
        "cfgate/sessionDelete",
        |params, service, _| async move {
            let params: SessionParams = parse(&params)?;
            let deleted = service
                .delete_session(&params.name)
                .await
                .map_err(rpc_error)?;
            Ok::<_, ErrorObjectOwned>(crate::sessions::SessionDeleteResult { deleted })
        },
    ));
    registered(module.register_subscription(
        SUBSCRIBE_CHAT,
        CHAT_NOTIFICATION,
        UNSUBSCRIBE_CHAT,
        |params, pending, service, _| async move {
            stream_chat(params, pending, Arc::clone(&service)).await;
        },
    ));
    module
}

/// A streamed chat: each piece as a `report` (the `$/progress` value), then
/// `{"kind": "result", "result": ...}` or `{"kind": "error", "error": ...}`. The
/// subscriber unsubscribing or going away drops the chat and its upstream request.
async fn stream_chat(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    service: Arc<Service>,
) {
    let params: ChatParams = match parse(&params) {
        Ok(p) => p,
        Err(e) => {
            pending.reject(e).await;
            return;
        }
    };
    let Ok(sink) = pending.accept().await else {
        return;
    };
    let work = async {
        let sink = &sink;
        let show = |wait| async move {
            let value = serde_json::to_value(ProgressValue::rate_limited(wait));
            let _ = send(sink, &value.unwrap_or(Value::Null)).await;
        };
        let mut chat = service
            .chat_showing_waits(&Layer::default(), params, show)
            .await?;
        while let Some(piece) = chat.next_piece().await? {
            let value = serde_json::to_value(ProgressValue::from(piece)).unwrap_or(Value::Null);
            if send(sink, &value).await.is_err() {
                return Ok(None);
            }
        }
        chat.finish().await.map(Some)
    };
    let last = tokio::select! {
        outcome = work => match outcome {
            Ok(Some(result)) => json!({"kind": "result", "result": result}),
            Ok(None) => return,
            Err(e) => json!({"kind": "error", "error": {
                "code": e.kind.code(), "message": e.message.clone(), "data": e.data()
            }}),
        },
        _ = sink.closed() => return,
    };
    let _ = send(&sink, &last).await;
}

async fn send(sink: &jsonrpsee::server::SubscriptionSink, value: &Value) -> Result<(), ()> {
    let raw = serde_json::value::to_raw_value(value).map_err(|_| ())?;
    sink.send(SubscriptionMessage::from(raw))
        .await
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_accepted() {
        assert!(loopback_only("127.0.0.1:1".parse().unwrap()).is_ok());
        assert!(loopback_only("[::1]:1".parse().unwrap()).is_ok());
        assert!(loopback_only("0.0.0.0:1".parse().unwrap()).is_err());
        assert!(loopback_only("192.168.1.2:1".parse().unwrap()).is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
