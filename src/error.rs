//! The one error type a caller sees, whatever failed: settings, routing, the network or
//! the gateway. Each carries what a plugin needs to act without parsing prose: a stable
//! `kind`, the upstream status and Cloudflare code when there was one, the upstream
//! message, a hint saying what to do, and whether trying again may help.

use serde::Serialize;
use serde_json::Value;

/// Stable names a plugin can match on; each has its own JSON-RPC error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The params of a request are wrong; the message names the field.
    InvalidParams,
    /// A credential is not set anywhere; nothing was sent.
    MissingCredentials,
    /// A setting has a value that cannot be used; nothing was sent.
    InvalidSetting,
    /// The model id has a form the gateway cannot route; nothing was sent.
    InvalidModel,
    /// The gateway or vendor refused the request (4xx other than those below).
    Upstream,
    /// 401/403: the token or the gateway's authentication.
    Unauthorized,
    /// 429: a rate limit; trying again later works (`retry_after_ms` when the upstream
    /// said how long).
    RateLimited,
    /// A limit that waiting seconds will not lift: a spend limit rule, credits used up
    /// (402), the day's free Workers AI allocation.
    QuotaExceeded,
    /// The gateway's Guardrails or Data Loss Prevention policy blocked the prompt or the
    /// answer (`data.dlp` holds DLP's findings).
    Blocked,
    /// 5xx or Cloudflare 7009: the upstream is failing; trying again may work.
    Unavailable,
    /// The gateway could not be reached.
    Network,
    /// No answer within the request timeout.
    Timeout,
    /// The stream ended before the answer was complete.
    StreamCut,
    /// The gateway answered something that is not a chat completion.
    BadResponse,
    /// JSON was asked for (`json_mode` or `response_format`) and the answer does not parse.
    NotJson,
    /// The answer passed a bound on its size; what arrived before the cut is kept.
    TooLarge,
    /// The shared daemon was stopped (`cfgate stop`) while the request was in flight; the
    /// request was dropped, and so was its upstream request.
    DaemonStopped,
    /// A bug in cfgate.
    Internal,
}

impl ErrorKind {
    /// Every kind, for the tests that keep `docs/protocol.md` and the status mapping whole.
    pub const ALL: &[ErrorKind] = &[
        ErrorKind::InvalidParams,
        ErrorKind::MissingCredentials,
        ErrorKind::InvalidSetting,
        ErrorKind::InvalidModel,
        ErrorKind::Upstream,
        ErrorKind::Unauthorized,
        ErrorKind::RateLimited,
        ErrorKind::QuotaExceeded,
        ErrorKind::Blocked,
        ErrorKind::Unavailable,
        ErrorKind::Network,
        ErrorKind::Timeout,
        ErrorKind::StreamCut,
        ErrorKind::BadResponse,
        ErrorKind::NotJson,
        ErrorKind::TooLarge,
        ErrorKind::DaemonStopped,
        ErrorKind::Internal,
    ];

    /// The name plugins match on (`data.kind`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Codes outside JSON-RPC's (-32768..-32000) and LSP's (-32899..-32800) reserved ranges.
    pub fn code(self) -> i64 {
        match self {
            ErrorKind::InvalidParams => -32602,
            ErrorKind::MissingCredentials => 1001,
            ErrorKind::InvalidSetting => 1002,
            ErrorKind::InvalidModel => 1003,
            ErrorKind::Upstream => 1010,
            ErrorKind::Unauthorized => 1011,
            ErrorKind::RateLimited => 1012,
            ErrorKind::Unavailable => 1013,
            ErrorKind::QuotaExceeded => 1014,
            ErrorKind::Blocked => 1015,
            ErrorKind::Network => 1020,
            ErrorKind::Timeout => 1021,
            ErrorKind::StreamCut => 1022,
            ErrorKind::BadResponse => 1023,
            ErrorKind::NotJson => 1024,
            ErrorKind::TooLarge => 1025,
            ErrorKind::DaemonStopped => 1030,
            ErrorKind::Internal => -32603,
        }
    }
}

/// An error with everything a plugin shows or acts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    /// One line for the user.
    pub message: String,
    /// The upstream HTTP status, when the gateway answered.
    pub status: Option<u16>,
    /// Cloudflare's (or the vendor's) numeric error code.
    pub upstream_code: Option<i64>,
    /// The upstream's own message, verbatim.
    pub upstream_message: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
    pub retryable: bool,
    /// What had streamed before a cut, so nothing the user saw is lost.
    pub partial_content: Option<String>,
    /// The whole answer's text when it is not what was asked for (JSON that does not parse).
    pub raw_content: Option<String>,
    /// How many times the request was sent (1 = no retry).
    pub attempts: u32,
    /// How long the upstream asked us to wait (`Retry-After`, `retry-after-ms`).
    pub retry_after: Option<std::time::Duration>,
    /// What a DLP policy matched (the `cf-aig-dlp` header, parsed when it is JSON).
    pub dlp: Option<Value>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            status: None,
            upstream_code: None,
            upstream_message: None,
            hint: None,
            retryable: matches!(
                kind,
                ErrorKind::RateLimited
                    | ErrorKind::Unavailable
                    | ErrorKind::Network
                    | ErrorKind::Timeout
                    | ErrorKind::StreamCut
            ),
            partial_content: None,
            raw_content: None,
            attempts: 1,
            retry_after: None,
            dlp: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// What every request in flight is answered with when the shared daemon is stopped.
    pub fn daemon_stopped() -> Self {
        Error::new(
            ErrorKind::DaemonStopped,
            "the shared daemon was stopped (`cfgate stop`) before this request was answered",
        )
        .with_hint("restart cfgate in the editor; it starts a new shared daemon")
    }

    /// The `data` member of the JSON-RPC error.
    pub fn data(&self) -> Value {
        #[derive(Serialize)]
        struct Data<'a> {
            kind: ErrorKind,
            status: Option<u16>,
            upstream_code: Option<i64>,
            message: Option<&'a str>,
            hint: Option<&'a str>,
            retryable: bool,
            attempts: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            partial_content: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            raw_content: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            retry_after_ms: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            dlp: Option<&'a Value>,
        }
        serde_json::to_value(Data {
            kind: self.kind,
            status: self.status,
            upstream_code: self.upstream_code,
            message: self.upstream_message.as_deref(),
            hint: self.hint.as_deref(),
            retryable: self.retryable,
            attempts: self.attempts,
            partial_content: self.partial_content.as_deref(),
            raw_content: self.raw_content.as_deref(),
            retry_after_ms: self
                .retry_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            dlp: self.dlp.as_ref(),
        })
        .unwrap_or(Value::Null)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
