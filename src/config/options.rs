//! AI Gateway's per-request options (`cf-aig-*` request headers, wire notes section 3.1).
//!
//! The same keys come from two places: the `[gateway]` table of the settings (defaults for
//! every request) and the `gateway` object of a request's params. They are merged key by
//! key, request over settings, like every other setting, and checked here before anything
//! is sent, so a bad value is an invalid-params error naming the key, never a gateway 400
//! that a user has to decode. Nothing is sent for a key that is not set: the gateway's own
//! configuration then applies.

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The gateway keeps at most this many metadata entries (wire notes 3.1, limits.mdx).
pub const MAX_METADATA_ENTRIES: usize = 5;
/// The gateway's own bounds for its retries (request-handling.mdx).
pub const MAX_GATEWAY_ATTEMPTS: u32 = 5;
pub const MAX_RETRY_DELAY_MS: u64 = 5000;
/// The smallest cache TTL the gateway accepts, in seconds (caching.mdx).
pub const MIN_CACHE_TTL: u64 = 60;

/// How the gateway spaces its own retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    Constant,
    Linear,
    Exponential,
}

impl Backoff {
    fn as_str(self) -> &'static str {
        match self {
            Backoff::Constant => "constant",
            Backoff::Linear => "linear",
            Backoff::Exponential => "exponential",
        }
    }
}

/// Overrides the cost the gateway logs (custom-costs.mdx), in USD per token.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomCost {
    pub per_token_in: f64,
    pub per_token_out: f64,
}

/// Every option is unset unless its source sets it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayOptions {
    /// `cf-aig-cache-ttl`: cache the answer for this many seconds.
    pub cache_ttl: Option<u64>,
    /// `cf-aig-skip-cache`: do not answer from the cache.
    pub skip_cache: Option<bool>,
    /// `cf-aig-cache-key`: a custom cache key.
    pub cache_key: Option<String>,
    /// `cf-aig-metadata`: up to five string/number/bool entries to tag the log with.
    pub metadata: Option<Map<String, Value>>,
    /// `cf-aig-collect-log`: log this request or not, whatever the gateway's default.
    pub collect_log: Option<bool>,
    /// `cf-aig-request-timeout`: the gateway's wait for the provider's first byte.
    pub request_timeout_ms: Option<u64>,
    /// `cf-aig-max-attempts`: the gateway's own retries of the provider.
    pub max_attempts: Option<u32>,
    /// `cf-aig-retry-delay`.
    pub retry_delay_ms: Option<u64>,
    /// `cf-aig-backoff`.
    pub backoff: Option<Backoff>,
    /// `cf-aig-event-id`: a trace id of the caller's choosing.
    pub event_id: Option<String>,
    /// `cf-aig-custom-cost`.
    pub custom_cost: Option<CustomCost>,
    /// `cf-aig-byok-alias`: which stored key the gateway uses.
    pub byok_alias: Option<String>,
}

/// Names the settings and params accept in `gateway`, for error messages.
pub const OPTION_NAMES: &[&str] = &[
    "cache_ttl",
    "skip_cache",
    "cache_key",
    "metadata",
    "collect_log",
    "request_timeout_ms",
    "max_attempts",
    "retry_delay_ms",
    "backoff",
    "event_id",
    "custom_cost",
    "byok_alias",
];

impl GatewayOptions {
    /// Reads a request's `gateway` object; the message names the key that is wrong.
    pub fn from_json(value: &Value) -> Result<GatewayOptions, String> {
        if value.is_null() {
            return Ok(GatewayOptions::default());
        }
        if !value.is_object() {
            return Err("gateway must be an object".into());
        }
        let options = GatewayOptions::deserialize(value).map_err(|e| {
            let text = e.to_string();
            if text.contains("unknown field") {
                return format!("gateway: {text} (known: {})", OPTION_NAMES.join(", "));
            }
            // serde does not say which key a bad value belongs to: find it, one key at a time.
            let culprit = value.as_object().and_then(|map| {
                map.iter().find(|(k, v)| {
                    let mut one = Map::new();
                    one.insert((*k).clone(), (*v).clone());
                    GatewayOptions::deserialize(Value::Object(one)).is_err()
                })
            });
            match culprit {
                Some((key, _)) => format!("gateway.{key}: {text}"),
                None => format!("gateway: {text}"),
            }
        })?;
        options.check()?;
        Ok(options)
    }

    /// Keys set here win; metadata maps are merged entry by entry.
    pub fn over(&self, lower: &GatewayOptions) -> GatewayOptions {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        let metadata = match (&self.metadata, &lower.metadata) {
            (Some(high), Some(low)) => {
                let mut merged = low.clone();
                merged.extend(high.clone());
                Some(merged)
            }
            (high, low) => pick(high, low),
        };
        GatewayOptions {
            cache_ttl: pick(&self.cache_ttl, &lower.cache_ttl),
            skip_cache: pick(&self.skip_cache, &lower.skip_cache),
            cache_key: pick(&self.cache_key, &lower.cache_key),
            metadata,
            collect_log: pick(&self.collect_log, &lower.collect_log),
            request_timeout_ms: pick(&self.request_timeout_ms, &lower.request_timeout_ms),
            max_attempts: pick(&self.max_attempts, &lower.max_attempts),
            retry_delay_ms: pick(&self.retry_delay_ms, &lower.retry_delay_ms),
            backoff: pick(&self.backoff, &lower.backoff),
            event_id: pick(&self.event_id, &lower.event_id),
            custom_cost: pick(&self.custom_cost, &lower.custom_cost),
            byok_alias: pick(&self.byok_alias, &lower.byok_alias),
        }
    }

    /// The limits the gateway documents, checked before sending.
    pub fn check(&self) -> Result<(), String> {
        if let Some(metadata) = &self.metadata {
            if metadata.len() > MAX_METADATA_ENTRIES {
                return Err(format!(
                    "gateway.metadata has {} entries; the gateway keeps at most {MAX_METADATA_ENTRIES}",
                    metadata.len()
                ));
            }
            for (key, value) in metadata {
                if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                    return Err(format!(
                        "gateway.metadata.{key} must be a string, number or bool (the gateway takes no objects, arrays or null)"
                    ));
                }
            }
        }
        if let Some(ttl) = self.cache_ttl {
            if ttl < MIN_CACHE_TTL {
                return Err(format!(
                    "gateway.cache_ttl is {ttl}; the gateway caches for at least {MIN_CACHE_TTL} seconds"
                ));
            }
        }
        if let Some(n) = self.max_attempts {
            if n == 0 || n > MAX_GATEWAY_ATTEMPTS {
                return Err(format!(
                    "gateway.max_attempts is {n}; the gateway allows 1 to {MAX_GATEWAY_ATTEMPTS}"
                ));
            }
        }
        if let Some(ms) = self.retry_delay_ms {
            if ms > MAX_RETRY_DELAY_MS {
                return Err(format!(
                    "gateway.retry_delay_ms is {ms}; the gateway allows at most {MAX_RETRY_DELAY_MS}"
                ));
            }
        }
        if let Some(cost) = self.custom_cost {
            let ok = |x: f64| x.is_finite() && x >= 0.0;
            if !ok(cost.per_token_in) || !ok(cost.per_token_out) {
                return Err("gateway.custom_cost needs per_token_in and per_token_out as non-negative numbers".into());
            }
        }
        for (key, value) in [
            ("cache_key", &self.cache_key),
            ("event_id", &self.event_id),
            ("byok_alias", &self.byok_alias),
        ] {
            if let Some(text) = value {
                if text.trim().is_empty() || HeaderValue::from_str(text).is_err() {
                    return Err(format!(
                        "gateway.{key} must be non-empty visible ASCII text (it is sent as an HTTP header)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `cf-aig-*` request headers, one per option set; none when nothing is set.
    pub fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        self.check()?;
        let mut out: Vec<(&'static str, String)> = Vec::new();
        if let Some(ttl) = self.cache_ttl {
            out.push(("cf-aig-cache-ttl", ttl.to_string()));
        }
        if let Some(skip) = self.skip_cache {
            out.push(("cf-aig-skip-cache", skip.to_string()));
        }
        if let Some(key) = &self.cache_key {
            out.push(("cf-aig-cache-key", key.clone()));
        }
        if let Some(metadata) = &self.metadata {
            out.push((
                "cf-aig-metadata",
                Value::Object(metadata.clone()).to_string(),
            ));
        }
        if let Some(collect) = self.collect_log {
            out.push(("cf-aig-collect-log", collect.to_string()));
        }
        if let Some(ms) = self.request_timeout_ms {
            out.push(("cf-aig-request-timeout", ms.to_string()));
        }
        if let Some(n) = self.max_attempts {
            out.push(("cf-aig-max-attempts", n.to_string()));
        }
        if let Some(ms) = self.retry_delay_ms {
            out.push(("cf-aig-retry-delay", ms.to_string()));
        }
        if let Some(backoff) = self.backoff {
            out.push(("cf-aig-backoff", backoff.as_str().to_string()));
        }
        if let Some(id) = &self.event_id {
            out.push(("cf-aig-event-id", id.clone()));
        }
        if let Some(cost) = self.custom_cost {
            let json = serde_json::json!({
                "per_token_in": cost.per_token_in,
                "per_token_out": cost.per_token_out,
            });
            out.push(("cf-aig-custom-cost", json.to_string()));
        }
        if let Some(alias) = &self.byok_alias {
            out.push(("cf-aig-byok-alias", alias.clone()));
        }
        out.into_iter()
            .map(|(name, value)| {
                let value = HeaderValue::from_str(&value)
                    .map_err(|_| format!("{name}: the value cannot go in an HTTP header"))?;
                Ok((HeaderName::from_static(name), value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(o: &GatewayOptions) -> Vec<String> {
        o.headers()
            .unwrap()
            .into_iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn nothing_set_sends_nothing() {
        assert!(names(&GatewayOptions::default()).is_empty());
    }

    #[test]
    fn every_option_becomes_its_header() {
        let o = GatewayOptions::from_json(&json!({
            "cache_ttl": 3600, "skip_cache": true, "cache_key": "k1",
            "metadata": {"n": 3, "ok": true, "user": "u1"}, "collect_log": false,
            "request_timeout_ms": 2500, "max_attempts": 3, "retry_delay_ms": 400,
            "backoff": "exponential", "event_id": "ev-1",
            "custom_cost": {"per_token_in": 0.000001, "per_token_out": 0.000002},
            "byok_alias": "prod",
        }))
        .unwrap();
        assert_eq!(
            names(&o),
            [
                "cf-aig-cache-ttl=3600",
                "cf-aig-skip-cache=true",
                "cf-aig-cache-key=k1",
                r#"cf-aig-metadata={"n":3,"ok":true,"user":"u1"}"#,
                "cf-aig-collect-log=false",
                "cf-aig-request-timeout=2500",
                "cf-aig-max-attempts=3",
                "cf-aig-retry-delay=400",
                "cf-aig-backoff=exponential",
                "cf-aig-event-id=ev-1",
                r#"cf-aig-custom-cost={"per_token_in":1e-6,"per_token_out":2e-6}"#,
                "cf-aig-byok-alias=prod",
            ]
        );
    }

    #[test]
    fn metadata_is_limited_as_the_gateway_limits_it() {
        let six = json!({"metadata": {"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}});
        let err = GatewayOptions::from_json(&six).unwrap_err();
        assert!(err.contains("at most 5"), "{err}");
        let nested = json!({"metadata": {"a": {"b": 1}}});
        let err = GatewayOptions::from_json(&nested).unwrap_err();
        assert!(err.contains("gateway.metadata.a"), "{err}");
        assert!(GatewayOptions::from_json(&json!({"metadata": {"a": null}})).is_err());
    }

    #[test]
    fn bounds_and_unknown_keys_are_named() {
        for (bad, says) in [
            (json!({"cache_ttl": 10}), "cache_ttl"),
            (json!({"max_attempts": 6}), "max_attempts"),
            (json!({"retry_delay_ms": 9000}), "retry_delay_ms"),
            (json!({"backoff": "random"}), "backoff"),
            (json!({"event_id": "a\nb"}), "event_id"),
            (json!({"cache_tll": 60}), "cache_tll"),
            (json!("x"), "object"),
        ] {
            let err = GatewayOptions::from_json(&bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn request_over_settings_key_by_key() {
        let settings = GatewayOptions::from_json(
            &json!({"cache_ttl": 600, "metadata": {"app": "vim", "team": "a"}}),
        )
        .unwrap();
        let request =
            GatewayOptions::from_json(&json!({"skip_cache": true, "metadata": {"team": "b"}}))
                .unwrap();
        let merged = request.over(&settings);
        assert_eq!(merged.cache_ttl, Some(600));
        assert_eq!(merged.skip_cache, Some(true));
        assert_eq!(
            Value::Object(merged.metadata.unwrap()),
            json!({"app": "vim", "team": "b"})
        );
    }
}
