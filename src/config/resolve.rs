//! Resolution: every default applied and every value checked, once per request, from the
//! layers merged in precedence order. What cannot be used stops the request before a byte
//! is sent, with an error that names the setting.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::options::GatewayOptions;
use super::*;
use crate::error::{Error, ErrorKind};

/// Settings resolved for one request: every default applied, every value checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub api_token: SecretString,
    pub gateway_token: Option<SecretString>,
    /// `{base}/chat/completions` is where chat goes.
    pub base_url: String,
    pub account_id: Option<String>,
    pub gateway_id: String,
    pub model: String,
    pub max_tokens: Option<u32>,
    pub timeout: Duration,
    pub idle_timeout: Duration,
    pub max_attempts: u32,
    pub retry_deadline: Duration,
    pub endpoint: Endpoint,
    /// The Cloudflare API root (`https://api.cloudflare.com/client/v4` unless overridden).
    pub api_url: String,
    /// Leave out the vendor `Authorization` header (stored keys).
    pub byok: bool,
    /// The `cf-aig-*` options every request of these settings sends.
    pub gateway: GatewayOptions,
    /// The daemon's rate budget for this gateway (`None`: learned from 429s only).
    pub requests_per_minute: Option<u32>,
}

/// What stops a request before any byte is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsError {
    /// Names the environment variables (or setting names) that are missing.
    Missing(Vec<&'static str>),
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingsError::Missing(names) => write!(
                f,
                "missing credentials: {} not set (set the environment variable{}, or the same \
                 setting in the config file or initializationOptions)",
                names.join(" and "),
                if names.len() > 1 { "s" } else { "" }
            ),
            SettingsError::Invalid { setting, reason } => {
                write!(f, "invalid setting {setting}: {reason}")
            }
        }
    }
}

/// Ids go into the URL path: only the characters Cloudflare uses, so `../x` can never
/// change which URL the token is sent to.
pub fn validate_id(setting: &'static str, value: &str) -> Result<(), SettingsError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SettingsError::Invalid {
            setting,
            reason: format!(
                "{value:?} may hold only letters, digits, `-` and `_` (1 to 128 characters)"
            ),
        })
    }
}

/// Every request resolves its settings, and with them these URLs: each distinct one is
/// parsed once (a few thousand instructions a time otherwise; docs/performance.md).
fn validate_base_url(
    setting: &'static str,
    url: &str,
    allow_insecure_http: bool,
) -> Result<String, SettingsError> {
    type Checked = Result<String, SettingsError>;
    static RECENT: crate::memo::Recent<(&'static str, bool, String), Checked> =
        crate::memo::Recent::new(8);
    RECENT.get_or(
        |(s, insecure, u)| *s == setting && *insecure == allow_insecure_http && u == url,
        || (setting, allow_insecure_http, url.to_string()),
        || check_base_url(setting, url, allow_insecure_http),
    )
}

fn check_base_url(
    setting: &'static str,
    url: &str,
    allow_insecure_http: bool,
) -> Result<String, SettingsError> {
    let invalid = |reason: String| SettingsError::Invalid { setting, reason };
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| invalid(format!("{url:?}: {e}")))?;
    if trimmed.ends_with("/chat/completions") {
        return Err(invalid(format!(
            "{url:?} must end at the API root (for AI Gateway: .../compat); cfgate appends /chat/completions itself"
        )));
    }
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback && !allow_insecure_http {
                return Err(invalid(format!(
                    "{url:?} is plain http to a non-loopback host, which would send the token in clear; \
                     use https, or set allow_insecure_http = true"
                )));
            }
        }
        other => return Err(invalid(format!("{url:?}: scheme {other:?} is not http(s)"))),
    }
    Ok(trimmed.to_string())
}

impl Layer {
    /// Applies defaults and checks everything a request needs.
    pub fn resolve(&self) -> Result<Settings, SettingsError> {
        let mut missing = Vec::new();
        let endpoint = self.endpoint.unwrap_or_default();
        let byok = self.byok.unwrap_or(false);
        let token = self
            .api_token
            .clone()
            .filter(|t| !t.expose_secret().trim().is_empty());
        let gateway_token = self
            .gateway_token
            .clone()
            .filter(|t| !t.expose_secret().trim().is_empty());
        // With stored keys on the compat endpoint only the gateway's own authentication is
        // sent, and the API token serves for it unless a separate gateway token is set.
        let byok_on_compat = byok && endpoint == Endpoint::Compat;
        if token.is_none() && !(byok_on_compat && gateway_token.is_some()) {
            missing.push(ENV_TOKEN);
        }
        let account_id = self.account_id.clone().filter(|a| !a.trim().is_empty());
        if account_id.is_none() && (self.base_url.is_none() || endpoint == Endpoint::Rest) {
            missing.push(ENV_ACCOUNT);
        }
        if !missing.is_empty() {
            return Err(SettingsError::Missing(missing));
        }
        let gateway_id = self
            .gateway_id
            .clone()
            .unwrap_or_else(|| DEFAULT_GATEWAY_ID.to_string());
        let insecure = self.allow_insecure_http.unwrap_or(false);
        let api_url = match &self.api_url {
            Some(url) => validate_base_url("api_url", url, insecure)?,
            None => DEFAULT_API_URL.to_string(),
        };
        let base_url = match (&self.base_url, endpoint) {
            (_, Endpoint::Rest) => {
                let account = account_id.as_deref().unwrap_or_default();
                validate_id("account_id", account)?;
                validate_id("gateway_id", &gateway_id)?;
                format!("{api_url}/accounts/{account}/ai/v1")
            }
            (Some(url), Endpoint::Compat) => validate_base_url("base_url", url, insecure)?,
            (None, Endpoint::Compat) => {
                let account = account_id.as_deref().unwrap_or_default();
                validate_id("account_id", account)?;
                validate_id("gateway_id", &gateway_id)?;
                let root = match &self.gateway_url {
                    Some(url) => validate_base_url("gateway_url", url, insecure)?,
                    None => DEFAULT_GATEWAY_URL.to_string(),
                };
                format!("{root}/{account}/{gateway_id}/compat")
            }
        };
        let gateway_options = self.gateway.clone().unwrap_or_default();
        gateway_options
            .check()
            .map_err(|reason| SettingsError::Invalid {
                setting: "gateway",
                reason,
            })?;
        let at_least_one = |setting: &'static str, value: u64| {
            if value == 0 {
                Err(SettingsError::Invalid {
                    setting,
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(value)
            }
        };
        let timeout_secs = at_least_one(
            "timeout_secs",
            self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
        )?;
        let idle_timeout_secs = at_least_one(
            "idle_timeout_secs",
            self.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS),
        )?;
        let max_attempts = at_least_one(
            "max_attempts",
            u64::from(self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)),
        )?;
        Ok(Settings {
            api_token: token.unwrap_or_else(|| SecretString::from(String::new())),
            gateway_token,
            base_url,
            account_id,
            gateway_id,
            model: self
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            max_tokens: self.max_tokens,
            timeout: Duration::from_secs(timeout_secs),
            idle_timeout: Duration::from_secs(idle_timeout_secs),
            max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
            retry_deadline: Duration::from_secs(
                self.retry_deadline_secs
                    .unwrap_or(DEFAULT_RETRY_DEADLINE_SECS),
            ),
            endpoint,
            api_url,
            byok,
            gateway: gateway_options,
            requests_per_minute: match self.requests_per_minute {
                Some(0) => {
                    return Err(SettingsError::Invalid {
                        setting: "requests_per_minute",
                        reason: "must be at least 1 (leave it unset for no limit)".into(),
                    });
                }
                rpm => rpm,
            },
        })
    }

    /// The environment variables (or settings) a request would still need.
    pub fn missing(&self) -> Vec<&'static str> {
        match self.resolve() {
            Err(SettingsError::Missing(names)) => names,
            _ => vec![],
        }
    }
}

/// What the process is built with once, from the base layer (environment over config
/// file): the HTTP client and the cap on upstream requests are shared by every client, so a
/// client's settings cannot change them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessSettings {
    pub connect_timeout: Duration,
    pub max_in_flight: usize,
}

impl Layer {
    pub fn process_settings(&self) -> ProcessSettings {
        ProcessSettings {
            connect_timeout: Duration::from_secs(
                self.connect_timeout_secs
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS)
                    .max(1),
            ),
            max_in_flight: self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT).max(1) as usize,
        }
    }
}

/// Account ids are not secret, but there is no need to print them whole either.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}…{tail}")
}

impl From<SettingsError> for Error {
    fn from(err: SettingsError) -> Self {
        match &err {
            SettingsError::Missing(names) => Error::new(ErrorKind::MissingCredentials, err.to_string())
                .with_hint(format!(
                    "export {}=... in the environment that starts cfgate; `cfgate status` shows what is set",
                    names.join("=... and export ")
                )),
            SettingsError::Invalid { .. } => Error::new(ErrorKind::InvalidSetting, err.to_string()),
        }
    }
}
