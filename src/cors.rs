//! CORS for the loopback endpoint: a page served from an origin listed in `listen_origins`
//! can call the endpoint (JSON-RPC and `/v1`) from the browser.
//!
//! Why here, outside the endpoint's guard: a browser sends its preflight (`OPTIONS`)
//! without the `Authorization` header, so the guard would refuse it with 401 and the real
//! request would never be made; and a browser hides any answer, refusals included, that
//! lacks `Access-Control-Allow-Origin`. So a preflight from a listed origin is answered
//! here, and every answer to a listed origin gets the header. Everything else (preflights
//! from other origins, any request without the token) goes to the guard and is refused
//! as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, StatusCode, header};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE_SECS: &str = "600";

/// Response headers a page may read (the gateway's ids and cache status, how long to wait).
const EXPOSED: &str = "retry-after, cf-aig-log-id, cf-aig-event-id, cf-aig-cache-status";

#[derive(Clone)]
pub struct CorsLayer {
    allowed: Arc<Vec<String>>,
}

impl CorsLayer {
    pub fn new(allowed: Vec<String>) -> CorsLayer {
        CorsLayer {
            allowed: Arc::new(allowed),
        }
    }
}

impl<S> tower::Layer<S> for CorsLayer {
    type Service = Cors<S>;
    fn layer(&self, inner: S) -> Cors<S> {
        Cors {
            inner,
            allowed: Arc::clone(&self.allowed),
        }
    }
}

#[derive(Clone)]
pub struct Cors<S> {
    inner: S,
    allowed: Arc<Vec<String>>,
}

type Answer = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

impl<S> tower::Service<HttpRequest> for Cors<S>
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
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .filter(|o| origin_allowed(o, &self.allowed))
            .cloned();
        let Some(origin) = origin else {
            return Box::pin(self.inner.call(request));
        };
        let preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return Box::pin(std::future::ready(Ok(preflight_answer(&request, origin))));
        }
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            allow(&mut response, origin);
            response.headers_mut().insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
            Ok(response)
        })
    }
}

/// Whether `origin` is listed (exactly; a trailing `/` in the setting is ignored).
pub fn origin_allowed(origin: &HeaderValue, allowed: &[String]) -> bool {
    origin
        .to_str()
        .is_ok_and(|o| allowed.iter().any(|a| a.trim_end_matches('/') == o))
}

fn preflight_answer(request: &HttpRequest, origin: HeaderValue) -> HttpResponse {
    let mut response = HttpResponse::new(HttpBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    allow(&mut response, origin);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    // The page may send any header it asks for; the token is still checked on the request.
    let asked = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("authorization, content-type"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
    );
    response
}

fn allow(response: &mut HttpResponse, origin: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_listed_exactly() {
        let allowed = vec!["http://localhost:3000/".to_string()];
        assert!(origin_allowed(
            &HeaderValue::from_static("http://localhost:3000"),
            &allowed
        ));
        assert!(!origin_allowed(
            &HeaderValue::from_static("http://evil.example"),
            &allowed
        ));
        assert!(!origin_allowed(
            &HeaderValue::from_static("http://localhost:3000"),
            &[]
        ));
    }
}
