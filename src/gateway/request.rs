//! One attempt: the request built (body, options, the two authorization headers), sent,
//! and its answer's headers read; an error answer becomes a typed [`Error`].

use std::collections::VecDeque;
use std::time::Duration;

use eventsource_stream::Eventsource;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde_json::Value;

use super::budget::{BudgetKey, Priority, WaitReports};
use super::http::{auth_headers, gateway_headers, read_bounded, read_limited, transport_error};
use super::reply::whole_answer_pieces;
use super::retry::retry_after;
use super::stream_limits::{Bounded, MAX_EVENT_BYTES, MAX_STREAM_BYTES};
use super::{Answer, Gateway, Reply, RetryPolicy, upstream_error};
use crate::auth::AuthPlan;
use crate::error::{Error, ErrorKind};

/// Error bodies are short; this bounds what a misbehaving upstream can make us buffer.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// A whole (non-streamed) answer larger than this is refused rather than buffered.
const MAX_WHOLE_BODY: usize = 32 * 1024 * 1024;

/// Everything needed to send one chat completion.
pub struct UpstreamRequest {
    pub url: String,
    /// Sent as `Authorization`; `None` with stored keys (BYOK) on compat, where the
    /// gateway adds the vendor's key itself.
    pub token: Option<SecretString>,
    /// Sent as `cf-aig-authorization`: the gateway's own authentication (compat).
    pub gateway_token: Option<SecretString>,
    /// Which credential each of the two carries, for the hint of a refusal.
    pub auth: AuthPlan,
    /// `cf-aig-*` options and, on the rest endpoint, `cf-aig-gateway-id`.
    pub headers: HeaderMap,
    pub body: Value,
    pub stream: bool,
    /// Until the answer's headers arrive (and, not streamed, its whole body).
    pub timeout: Duration,
    /// Longest silence allowed between two events of a stream.
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
    /// The routed model id, for hints in errors.
    pub model: String,
    /// Stored keys were asked for: tells a vendor's 401 apart in hints.
    pub byok: bool,
    /// The rate budget this request spends, whether it may wait for it, and the
    /// `requests_per_minute` setting (see `budget.rs`).
    pub budget: BudgetKey,
    pub priority: Priority,
    pub requests_per_minute: Option<u32>,
    /// Told how long the request waits for its budget, when someone shows it.
    pub waits: Option<WaitReports>,
}

/// `{base}/chat/completions`, parsed once per base URL rather than by reqwest on every
/// request (docs/performance.md). A URL that does not parse is left for reqwest to report.
fn chat_url(base: &str) -> Result<reqwest::Url, String> {
    static RECENT: crate::memo::Recent<String, Result<reqwest::Url, String>> =
        crate::memo::Recent::new(8);
    RECENT.get_or(
        |k| k == base,
        || base.to_string(),
        || {
            let url = format!("{base}/chat/completions");
            reqwest::Url::parse(&url).map_err(|_| url)
        },
    )
}

impl Gateway {
    pub(super) async fn send_once(
        &self,
        req: &UpstreamRequest,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, Error> {
        let url = chat_url(&req.url);
        let mut headers = req.headers.clone();
        headers.extend(auth_headers(
            req.token.as_ref(),
            req.gateway_token.as_ref(),
        )?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let accept = if req.stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static(accept));
        let body = serde_json::to_vec(&req.body)
            .map_err(|e| Error::internal(format!("cannot encode the request: {e}")))?;
        let client = self.http().await?;
        let request = match url {
            Ok(url) => client.post(url),
            Err(unparsed) => client.post(unparsed),
        };
        let mut request = request.headers(headers).body(body);
        if !req.stream {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            request = request.timeout(left);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&e, &req.url))?;

        let status = response.status();
        let gateway = gateway_headers(response.headers());
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let body = read_limited(response, MAX_ERROR_BODY, req.idle_timeout)
                .await
                .unwrap_or_default();
            let mut err = upstream_error::from_response(status.as_u16(), &body, &req.model);
            upstream_error::refine_auth_hint(&mut err, &body, req.byok, &req.auth);
            if let Some(findings) = gateway.get("dlp").and_then(Value::as_str) {
                upstream_error::add_dlp_findings(&mut err, findings);
            }
            err.retry_after = retry_after;
            if let Some(log_id) = gateway.get("log_id").and_then(Value::as_str) {
                err.message.push_str(&format!(" [cf-aig-log-id {log_id}]"));
            }
            return Err(err);
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if req.stream && is_sse {
            let bytes = Bounded::new(response.bytes_stream(), MAX_STREAM_BYTES, MAX_EVENT_BYTES);
            let events = bytes.eventsource();
            return Ok(Reply {
                gateway,
                attempts: 1,
                idle_timeout: req.idle_timeout,
                events: Some(Box::pin(events)),
                queued: VecDeque::new(),
                answer: Answer::default(),
                slot: None,
            });
        }
        // Not a stream (asked for so, or a model that answers streams with plain JSON).
        let (text, cut) = read_bounded(response, MAX_WHOLE_BODY, req.idle_timeout).await?;
        if cut {
            let mib = MAX_WHOLE_BODY / (1024 * 1024);
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("the gateway's answer passed cfgate's bound of {mib} MiB for one answer"),
            )
            .with_hint("ask for a shorter answer (max_tokens)"));
        }
        let json: Value = serde_json::from_str(&text).map_err(|e| {
            let shown: String = text.chars().take(200).collect();
            Error::new(
                ErrorKind::BadResponse,
                format!("the gateway's answer is not JSON ({e}): {shown}"),
            )
        })?;
        let answer = Answer::from_completion(&json)?;
        // A streaming caller asked for pieces: Guardrails and DLP response scanning buffer
        // the answer and send it whole (wire notes 10.3, 10.4), so give them in one go.
        let queued = if req.stream {
            whole_answer_pieces(&answer)
        } else {
            VecDeque::new()
        };
        Ok(Reply {
            gateway,
            attempts: 1,
            idle_timeout: req.idle_timeout,
            events: None,
            queued,
            answer,
            slot: None,
        })
    }
}
