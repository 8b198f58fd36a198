//! cfgate's errors in OpenAI's shape: `{"error": {"message", "type", "code", "param"}}` with
//! the HTTP status an OpenAI client maps to its own exception types (400, 401, 404, 429,
//! 502, 504), so the tools' usual handling (retry on 429 after `Retry-After`, "check your
//! key" on 401) is right. A 401 is only ever about the key the client sent (the endpoint's);
//! the gateway refusing cfgate's own Cloudflare token is a 502 that says so, with
//! `x-should-retry: false` (the SDKs' retry of a 5xx cannot help until the token is fixed). The hint goes into the message, because that is what the tools
//! show; the Cloudflare code stays in `code`, and the whole of cfgate's error data rides
//! along under `cfgate` for clients that want it.

use http::{HeaderValue, StatusCode};
use jsonrpsee::server::{HttpBody, HttpResponse};
use serde_json::{Value, json};

use crate::error::{Error, ErrorKind};

/// The error `type` of a refusal of cfgate's Cloudflare credentials by the gateway.
pub const UPSTREAM_AUTH: &str = "upstream_authentication_error";

/// The HTTP status and OpenAI error `type` for an error of `kind`.
pub fn status_of(err: &Error) -> (StatusCode, &'static str) {
    match err.kind {
        ErrorKind::InvalidParams | ErrorKind::InvalidModel => {
            (StatusCode::BAD_REQUEST, "invalid_request_error")
        }
        ErrorKind::Blocked => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        ErrorKind::Upstream => {
            // The vendor's own 4xx (404 unknown model, 413, 422 ...) is the client's to see.
            let status = err
                .status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(|s| s.is_client_error())
                .unwrap_or(StatusCode::BAD_REQUEST);
            (status, "invalid_request_error")
        }
        // The gateway refused cfgate's Cloudflare token: not the client's key, so not a 401
        // (which every OpenAI client reads as "your API key is wrong").
        ErrorKind::Unauthorized => (StatusCode::BAD_GATEWAY, UPSTREAM_AUTH),
        ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
        ErrorKind::QuotaExceeded => (StatusCode::TOO_MANY_REQUESTS, "insufficient_quota"),
        ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        ErrorKind::Unavailable
        | ErrorKind::Network
        | ErrorKind::StreamCut
        | ErrorKind::BadResponse
        | ErrorKind::NotJson
        | ErrorKind::TooLarge => (StatusCode::BAD_GATEWAY, "upstream_error"),
        ErrorKind::DaemonStopped => (StatusCode::SERVICE_UNAVAILABLE, "server_error"),
        ErrorKind::MissingCredentials | ErrorKind::InvalidSetting | ErrorKind::Internal => {
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    }
}

/// The `{"error": ...}` object for `err` (also sent as the last event of a broken stream).
pub fn error_body(err: &Error) -> Value {
    let (_, kind) = status_of(err);
    let mut message = match &err.hint {
        Some(hint) => format!("{} (hint: {hint})", err.message),
        None => err.message.clone(),
    };
    if err.kind == ErrorKind::Unauthorized {
        // What the tools show: say whose credentials these were.
        message =
            format!("upstream refused cfgate's credentials, not this endpoint's key: {message}");
    }
    let code = match err.upstream_code {
        Some(code) => Value::from(code),
        None => Value::from(err.kind.name()),
    };
    json!({"error": {
        "message": message,
        "type": kind,
        "code": code,
        "param": Value::Null,
        "cfgate": err.data(),
    }})
}

/// The whole HTTP answer for `err`, with `Retry-After` when the upstream said how long.
pub fn error_response(err: &Error) -> HttpResponse {
    let (status, _) = status_of(err);
    let mut response = json_response(status, &error_body(err));
    if let Some(wait) = err.retry_after {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
        if let Ok(value) = HeaderValue::from_str(&wait.as_millis().to_string()) {
            response.headers_mut().insert("retry-after-ms", value);
        }
    } else if status == StatusCode::TOO_MANY_REQUESTS && err.kind == ErrorKind::RateLimited {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if err.kind == ErrorKind::Unauthorized {
        // The OpenAI SDKs (Python, Node) obey this header over their retry of a 5xx.
        response
            .headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
    }
    response
}

/// A refusal made here, not upstream: a bad request, an unknown route, no key.
pub fn refusal(status: StatusCode, kind: &str, code: &str, message: &str) -> HttpResponse {
    let mut response = json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "code": code, "param": Value::Null}}),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// A 400 for a body that is not what the route takes.
pub fn bad_request(message: impl Into<String>) -> HttpResponse {
    error_response(&Error::new(ErrorKind::InvalidParams, message))
}

pub fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut response = HttpResponse::new(HttpBody::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_http_status_an_openai_client_knows() {
        for kind in ErrorKind::ALL {
            let (status, _) = status_of(&Error::new(*kind, "x"));
            assert!(
                [400, 401, 404, 429, 500, 502, 503, 504].contains(&status.as_u16()),
                "{kind:?} -> {status}"
            );
        }
    }

    #[test]
    fn the_hint_is_in_the_message_and_the_cloudflare_code_kept() {
        let mut err = Error::new(ErrorKind::RateLimited, "rate limited").with_hint("wait");
        err.upstream_code = Some(2003);
        err.retry_after = Some(std::time::Duration::from_millis(1500));
        let body = error_body(&err);
        assert_eq!(body["error"]["message"], "rate limited (hint: wait)");
        assert_eq!(body["error"]["code"], 2003);
        let response = error_response(&err);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "2");
    }

    #[test]
    fn the_gateway_refusing_cfgates_token_is_not_the_clients_401() {
        let mut err = Error::new(ErrorKind::Unauthorized, "authentication failed");
        err.upstream_code = Some(10000);
        let response = error_response(&err);
        assert_eq!(response.status(), 502);
        assert_eq!(response.headers()["x-should-retry"], "false");
        let body = error_body(&err);
        assert_eq!(body["error"]["type"], UPSTREAM_AUTH);
        assert_eq!(body["error"]["code"], 10000);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("upstream refused cfgate's credentials")),
            "{body}"
        );
    }
}
