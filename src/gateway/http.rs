//! Small HTTP helpers every request shares: the bearer headers (marked sensitive), the
//! `cf-aig-*` answer headers, body reads with a size bound and an idle timeout, and
//! transport errors without the URL's query or any header.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use tracing::warn;

use super::tls;
use crate::error::{Error, ErrorKind};

/// `Authorization` and `cf-aig-authorization` for the tokens given: the one place both
/// are built (chat and the model list alike).
pub(super) fn auth_headers(
    authorization: Option<&SecretString>,
    cf_aig_authorization: Option<&SecretString>,
) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    if let Some(token) = authorization {
        headers.insert(AUTHORIZATION, bearer(token)?);
    }
    if let Some(token) = cf_aig_authorization {
        headers.insert("cf-aig-authorization", bearer(token)?);
    }
    Ok(headers)
}

fn bearer(token: &SecretString) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret().trim()))
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidSetting,
                "invalid setting api_token: it holds characters that cannot go in an HTTP header",
            )
        })?;
    // Keeps the value out of reqwest's and hyper's Debug output.
    value.set_sensitive(true);
    Ok(value)
}

pub(super) fn gateway_headers(headers: &HeaderMap) -> Map<String, Value> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix("cf-aig-")?;
            let value = value.to_str().ok()?;
            Some((key.replace('-', "_"), Value::from(value)))
        })
        .collect()
}

/// Reads a body up to `limit` bytes (the rest is not read); a body that stalls for `idle` is
/// an error, as a stream's would be, rather than a wait for the whole `timeout_secs`.
pub(super) async fn read_limited(
    response: reqwest::Response,
    limit: usize,
    idle: Duration,
) -> Result<String, Error> {
    Ok(read_bounded(response, limit, idle).await?.0)
}

/// [`read_limited`], also telling whether the body was longer than `limit`.
pub(super) async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
    idle: Duration,
) -> Result<(String, bool), Error> {
    let mut cut = false;
    // Sized once when the length is announced (a whole answer usually is), not regrown;
    // only up to 256 KiB in advance, so that a length announced and never sent costs little.
    let announced = usize::try_from(response.content_length().unwrap_or(0)).unwrap_or(0);
    let mut buf: Vec<u8> = Vec::with_capacity(announced.min(limit).min(256 * 1024));
    loop {
        let chunk = match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(transport_error(&e, "")),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the answer stalled: nothing for {} s while reading its body",
                        idle.as_secs()
                    ),
                )
                .with_hint("the upstream stopped sending; try again (idle_timeout_secs sets how long to wait)"));
            }
        };
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            cut = true;
            break;
        }
    }
    // Valid UTF-8 (as JSON is) becomes the String without a copy.
    let text = String::from_utf8(buf)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
    Ok((text, cut))
}

/// A failure before or while reading the answer, without the URL's query or any header.
pub(super) fn transport_error(err: &reqwest::Error, base: &str) -> Error {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    let mut detail = Vec::new();
    while let Some(e) = source {
        let text = e.to_string();
        if !detail.iter().any(|d: &String| d.contains(&text)) {
            detail.push(text);
        }
        source = e.source();
    }
    let detail = detail.join(": ");
    if let Some(problem) = tls::certificate_refused(err) {
        warn!("the gateway's TLS certificate was refused: {detail}");
        let mut refused = Error::new(
            ErrorKind::Network,
            format!("cannot connect to the gateway at {base}: its TLS certificate is not trusted ({problem})"),
        )
        .with_hint(
            "not retried: it fails the same way each time. A proxy or antivirus that intercepts TLS \
             needs its root certificate in the system's store (or SSL_CERT_FILE); else check base_url",
        );
        refused.retryable = false;
        return refused;
    }
    // A connect that timed out is a connection failure (nothing was sent): retried.
    if err.is_connect() {
        return Error::new(
            ErrorKind::Network,
            format!("cannot connect to the gateway at {base}: {detail}"),
        )
        .with_hint("check the network and base_url (connect_timeout_secs bounds each try)");
    }
    if err.is_timeout() {
        return Error::new(
            ErrorKind::Timeout,
            format!("no answer from the gateway in time ({detail})"),
        )
        .with_hint("the request timeout is the timeout_secs setting; try again or raise it");
    }
    Error::new(
        ErrorKind::Network,
        format!("connection to the gateway failed: {detail}"),
    )
}
