//! Settings: where each one comes from, which source wins, and the secret token.
//!
//! One setting can be given in five places. They are kept as separate [`Layer`]s and merged
//! on every request, never copied into one mutable struct, so that a
//! `workspace/didChangeConfiguration` from one editor cannot clobber what another editor
//! set, and so that `cfgate/status` can say exactly what is missing.
//! Precedence: request > client (initializationOptions, then didChangeConfiguration) >
//! environment > config file > defaults.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::gateway::options::GatewayOptions;

pub mod file;
pub use file::{ConfigError, ConfigFile, config_path, load_config_file};

pub const DEFAULT_MODEL: &str = "@cf/meta/llama-3.3-70b-instruct-fp8-fast";
pub const DEFAULT_GATEWAY_ID: &str = "default";
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_RETRY_DEADLINE_SECS: u64 = 60;
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 64;
pub const DEFAULT_GATEWAY_URL: &str = "https://gateway.ai.cloudflare.com/v1";
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";

pub const ENV_TOKEN: &str = "CLOUDFLARE_API_TOKEN";
pub const ENV_ACCOUNT: &str = "CLOUDFLARE_ACCOUNT_ID";
pub const ENV_GATEWAY: &str = "CLOUDFLARE_AI_GATEWAY_ID";
pub const ENV_GATEWAY_TOKEN: &str = "CLOUDFLARE_AI_GATEWAY_TOKEN";
pub const ENV_CONFIG: &str = "CFGATE_CONFIG";
/// The variables whose values are settings (see [`Layer::from_vars`]).
pub const ENV_NAMES: &[&str] = &[ENV_TOKEN, ENV_ACCOUNT, ENV_GATEWAY, ENV_GATEWAY_TOKEN];

/// The names every source uses for the same settings.
pub const SETTING_NAMES: &[&str] = &[
    "api_token",
    "account_id",
    "gateway_id",
    "gateway_token",
    "base_url",
    "gateway_url",
    "model",
    "max_tokens",
    "timeout_secs",
    "idle_timeout_secs",
    "max_attempts",
    "retry_deadline_secs",
    "allow_insecure_http",
    "completion_context_chars",
    "language_features",
    "endpoint",
    "api_url",
    "byok",
    "gateway",
    "connect_timeout_secs",
    "max_in_flight",
    "session_budget_tokens",
    "idle_exit_secs",
    "listen_origins",
];

pub use crate::route::Endpoint;

/// One source's view of the settings: each field is unset unless that source sets it.
#[derive(Default, Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Layer {
    pub api_token: Option<SecretString>,
    pub account_id: Option<String>,
    pub gateway_id: Option<String>,
    /// For gateways with authentication turned on: sent as `cf-aig-authorization`.
    pub gateway_token: Option<SecretString>,
    pub base_url: Option<String>,
    /// Where `{account_id}/{gateway_id}/compat` is appended (proxies, tests).
    pub gateway_url: Option<String>,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_attempts: Option<u32>,
    pub retry_deadline_secs: Option<u64>,
    pub allow_insecure_http: Option<bool>,
    /// How much of a document around the cursor an editor's completion request sends.
    pub completion_context_chars: Option<usize>,
    /// Offer the plain-LSP features (document sync, inline completion, completion, code
    /// actions) in `initialize`; a plugin with its own sets it to false.
    pub language_features: Option<bool>,
    /// `compat` (default) or `rest`.
    pub endpoint: Option<Endpoint>,
    /// The Cloudflare API root for the rest endpoint and the model catalog (proxies, tests).
    pub api_url: Option<String>,
    /// Stored keys (BYOK): leave the vendor `Authorization` header out; the gateway adds
    /// the key it holds.
    pub byok: Option<bool>,
    /// `[gateway]`: defaults for the `cf-aig-*` request options.
    pub gateway: Option<GatewayOptions>,
    /// Process-wide (the one pooled client): read from the config file at start only.
    pub connect_timeout_secs: Option<u64>,
    /// Process-wide (one cap for every client): read from the config file at start only.
    pub max_in_flight: Option<u32>,
    /// History sent in front of a session's new turn, in estimated tokens.
    pub session_budget_tokens: Option<u64>,
    /// The shared daemon exits after this long without clients.
    pub idle_exit_secs: Option<u64>,
    /// Browser origins the loopback endpoint accepts (none by default).
    pub listen_origins: Option<Vec<String>>,
}

impl Layer {
    /// Fields set here override those of `lower`.
    pub fn over(&self, lower: &Layer) -> Layer {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        Layer {
            api_token: pick(&self.api_token, &lower.api_token),
            account_id: pick(&self.account_id, &lower.account_id),
            gateway_id: pick(&self.gateway_id, &lower.gateway_id),
            gateway_token: pick(&self.gateway_token, &lower.gateway_token),
            base_url: pick(&self.base_url, &lower.base_url),
            gateway_url: pick(&self.gateway_url, &lower.gateway_url),
            model: pick(&self.model, &lower.model),
            max_tokens: pick(&self.max_tokens, &lower.max_tokens),
            timeout_secs: pick(&self.timeout_secs, &lower.timeout_secs),
            idle_timeout_secs: pick(&self.idle_timeout_secs, &lower.idle_timeout_secs),
            max_attempts: pick(&self.max_attempts, &lower.max_attempts),
            retry_deadline_secs: pick(&self.retry_deadline_secs, &lower.retry_deadline_secs),
            allow_insecure_http: pick(&self.allow_insecure_http, &lower.allow_insecure_http),
            completion_context_chars: pick(
                &self.completion_context_chars,
                &lower.completion_context_chars,
            ),
            language_features: pick(&self.language_features, &lower.language_features),
            endpoint: pick(&self.endpoint, &lower.endpoint),
            api_url: pick(&self.api_url, &lower.api_url),
            byok: pick(&self.byok, &lower.byok),
            gateway: match (&self.gateway, &lower.gateway) {
                (Some(high), Some(low)) => Some(high.over(low)),
                (high, low) => pick(high, low),
            },
            connect_timeout_secs: pick(&self.connect_timeout_secs, &lower.connect_timeout_secs),
            max_in_flight: pick(&self.max_in_flight, &lower.max_in_flight),
            session_budget_tokens: pick(&self.session_budget_tokens, &lower.session_budget_tokens),
            idle_exit_secs: pick(&self.idle_exit_secs, &lower.idle_exit_secs),
            listen_origins: pick(&self.listen_origins, &lower.listen_origins),
        }
    }

    /// The environment's layer. Empty variables count as unset, as a shell's `FOO=` means.
    pub fn from_env() -> Layer {
        Layer::from_vars(|name| std::env::var(name).ok())
    }

    /// The environment's layer from the variables `var` gives: this process's, or those a
    /// client of the shared daemon sent. Names: [`ENV_NAMES`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Layer {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        Layer {
            api_token: var(ENV_TOKEN).map(SecretString::from),
            account_id: var(ENV_ACCOUNT),
            gateway_id: var(ENV_GATEWAY),
            gateway_token: var(ENV_GATEWAY_TOKEN).map(SecretString::from),
            ..Layer::default()
        }
    }

    /// Settings sent by a client (initializationOptions or didChangeConfiguration).
    /// Editors that namespace their settings send `{"cfgate": {...}}`; both shapes work.
    pub fn from_client_json(value: &Value) -> Result<Layer, String> {
        match client_object(value)? {
            None => Ok(Layer::default()),
            Some(map) => Layer::deserialize(map).map_err(|e| explain_unknown(e.to_string())),
        }
    }

    /// A TOML config file's layer.
    pub fn from_toml(text: &str) -> Result<Layer, String> {
        toml::from_str(text).map_err(|e| explain_unknown(e.to_string()))
    }
}

fn explain_unknown(message: String) -> String {
    if message.contains("unknown field") {
        format!("{message} (known settings: {})", SETTING_NAMES.join(", "))
    } else {
        message
    }
}

pub fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "cfgate")
}

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

fn validate_base_url(
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

/// The settings object a client sent, flat or namespaced as `{"cfgate": {...}}`; `None`
/// for `null` (nothing sent).
fn client_object(value: &Value) -> Result<Option<&Map<String, Value>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => match map.get("cfgate") {
            Some(Value::Object(inner)) => Ok(Some(inner)),
            _ => Ok(Some(map)),
        },
        _ => Err("settings must be a JSON object".into()),
    }
}

/// A client's settings as it sent them: `initializationOptions`, then each
/// `didChangeConfiguration` on top. Kept as the JSON that was sent, so that a key sent as
/// `null` (as VS Code does for a setting the user removed) goes back to unset.
#[derive(Clone, Default)]
pub struct ClientSettings {
    /// Holds the token as sent: never shown whole (see the `Debug` below).
    sent: Map<String, Value>,
    layer: Layer,
}

/// Shows the keys that were sent, not their values: `sent` holds the token in clear.
impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("sent_keys", &self.sent.keys().collect::<Vec<_>>())
            .field("layer", &self.layer)
            .finish()
    }
}

impl ClientSettings {
    pub fn from_init(value: Option<&Value>) -> Result<ClientSettings, String> {
        ClientSettings::default().update(value.unwrap_or(&Value::Null))
    }

    /// These settings with `value`'s keys set over them (or unset, where `null`). An error
    /// leaves them as they were.
    pub fn update(&self, value: &Value) -> Result<ClientSettings, String> {
        let Some(update) = client_object(value)? else {
            return Ok(self.clone());
        };
        let mut sent = self.sent.clone();
        for (key, value) in update {
            if value.is_null() {
                sent.remove(key);
            } else {
                sent.insert(key.clone(), value.clone());
            }
        }
        let layer = Layer::from_client_json(&Value::Object(sent.clone()))?;
        Ok(ClientSettings { sent, layer })
    }

    pub fn layer(&self) -> &Layer {
        &self.layer
    }
}

/// A request's own overrides, taken out of its params.
pub fn request_layer(
    model: Option<&str>,
    extra: &Map<String, Value>,
    gateway: Option<GatewayOptions>,
) -> Layer {
    Layer {
        model: model.map(str::to_string),
        gateway,
        max_tokens: extra
            .get("max_tokens")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        ..Layer::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_settings_debug_shows_no_token() {
        let token = "cf-client-settings-secret-1234";
        let settings = ClientSettings::from_init(Some(&json!({"cfgate": {
            "api_token": token, "gateway_token": token, "model": "openai/gpt-4o"}})))
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains(token), "{shown}");
        assert!(shown.contains("api_token"), "{shown}");
    }

    fn layer(v: Value) -> Layer {
        Layer::from_client_json(&v).unwrap()
    }

    #[test]
    fn precedence_is_request_client_env_file() {
        let file = layer(json!({"model": "file/m", "gateway_id": "filegw", "max_tokens": 1}));
        let env = layer(json!({"model": "env/m", "gateway_id": "envgw"}));
        let client = layer(json!({"model": "client/m"}));
        let request = Layer {
            model: Some("req/m".into()),
            ..Layer::default()
        };
        let merged = request.over(&client.over(&env.over(&file)));
        assert_eq!(merged.model.as_deref(), Some("req/m"));
        assert_eq!(merged.gateway_id.as_deref(), Some("envgw"));
        assert_eq!(merged.max_tokens, Some(1));
        let merged = Layer::default().over(&client.over(&env.over(&file)));
        assert_eq!(merged.model.as_deref(), Some("client/m"));
    }

    #[test]
    fn missing_names_each_variable() {
        let err = Layer::default().resolve().unwrap_err();
        assert_eq!(err, SettingsError::Missing(vec![ENV_TOKEN, ENV_ACCOUNT]));
        assert!(err.to_string().contains("CLOUDFLARE_API_TOKEN"));
        let only_token = layer(json!({"api_token": "t"}));
        assert_eq!(only_token.missing(), vec![ENV_ACCOUNT]);
        let with_base = layer(json!({"api_token": "t", "base_url": "http://127.0.0.1:1/x"}));
        assert!(with_base.missing().is_empty());
    }

    #[test]
    fn builds_the_compat_url() {
        let s = layer(json!({"api_token": "t", "account_id": "acc_1"}))
            .resolve()
            .unwrap();
        assert_eq!(
            s.base_url,
            "https://gateway.ai.cloudflare.com/v1/acc_1/default/compat"
        );
        assert_eq!(s.model, DEFAULT_MODEL);
    }

    #[test]
    fn refuses_ids_that_would_change_the_path() {
        for bad in ["../x", "a/b", "a b", "a?b", "%2e%2e", ""] {
            let l = layer(json!({"api_token": "t", "account_id": "acc", "gateway_id": bad}));
            let err = l.resolve().unwrap_err();
            assert!(
                matches!(
                    err,
                    SettingsError::Invalid {
                        setting: "gateway_id",
                        ..
                    }
                ),
                "{bad:?}: {err:?}"
            );
        }
        let l = layer(json!({"api_token": "t", "account_id": "../evil"}));
        assert!(l.resolve().is_err());
    }

    #[test]
    fn base_url_checks() {
        let ok = |u: &str| {
            layer(json!({"api_token": "t", "base_url": u}))
                .resolve()
                .map(|s| s.base_url)
        };
        assert_eq!(
            ok("http://127.0.0.1:8787/v1/a/g/compat/").unwrap(),
            "http://127.0.0.1:8787/v1/a/g/compat"
        );
        assert!(ok("http://localhost:1/x").is_ok());
        assert!(ok("https://example.com/compat").is_ok());
        assert!(ok("http://example.com/compat").is_err());
        assert!(ok("ftp://example.com/compat").is_err());
        assert!(ok("https://example.com/compat/chat/completions").is_err());
        let insecure = layer(
            json!({"api_token": "t", "base_url": "http://10.0.0.1/c", "allow_insecure_http": true}),
        );
        assert!(insecure.resolve().is_ok());
    }

    /// The Neovim plugin checks keys before it starts the daemon (Neovim cannot report a
    /// failed `initialize` well); its list must not drift from this one.
    #[test]
    fn the_neovim_plugin_knows_every_setting() {
        let lua = include_str!("../editors/nvim/lua/cfgate/config.lua");
        let list = lua
            .split("M.setting_keys = {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("M.setting_keys in config.lua");
        let keys: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
        assert_eq!(keys, SETTING_NAMES);
    }

    #[test]
    fn client_settings_update_and_unset() {
        let init = ClientSettings::from_init(Some(&json!({"model": "openai/a", "max_tokens": 9})))
            .unwrap();
        let changed = init
            .update(&json!({"cfgate": {"model": "openai/b", "max_tokens": null}}))
            .unwrap();
        assert_eq!(changed.layer().model.as_deref(), Some("openai/b"));
        assert_eq!(changed.layer().max_tokens, None, "null unsets");
        assert!(changed.update(&json!({"modle": "x"})).is_err());
        assert_eq!(
            changed
                .update(&Value::Null)
                .unwrap()
                .layer()
                .model
                .as_deref(),
            Some("openai/b")
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Layer::from_client_json(&json!({"modle": "x"})).unwrap_err();
        assert!(
            err.contains("modle") && err.contains("known settings"),
            "{err}"
        );
        let nested = layer(json!({"cfgate": {"model": "a/b"}}));
        assert_eq!(nested.model.as_deref(), Some("a/b"));
        let toml = Layer::from_toml("model = \"a/b\"\nmax_tokens = 5\n").unwrap();
        assert_eq!(toml.max_tokens, Some(5));
    }

    #[test]
    fn rest_endpoint_builds_the_api_url_and_needs_the_account() {
        let s = layer(
            json!({"api_token": "t", "account_id": "acc", "gateway_id": "gw", "endpoint": "rest"}),
        )
        .resolve()
        .unwrap();
        assert_eq!(
            s.base_url,
            "https://api.cloudflare.com/client/v4/accounts/acc/ai/v1"
        );
        assert_eq!(s.endpoint, Endpoint::Rest);
        let moved = layer(json!({"api_token": "t", "account_id": "acc", "endpoint": "rest", "api_url": "http://127.0.0.1:9/client/v4/"}))
            .resolve()
            .unwrap();
        assert_eq!(
            moved.base_url,
            "http://127.0.0.1:9/client/v4/accounts/acc/ai/v1"
        );
        let no_account = layer(
            json!({"api_token": "t", "base_url": "http://127.0.0.1:1/x", "endpoint": "rest"}),
        );
        assert_eq!(no_account.missing(), vec![ENV_ACCOUNT]);
        assert!(Layer::from_client_json(&json!({"endpoint": "grpc"})).is_err());
    }

    #[test]
    fn byok_needs_one_token_for_the_gateway() {
        // Neither token: the API token is what a new user sets (it also authenticates to
        // the gateway).
        let l = layer(json!({"account_id": "acc", "byok": true}));
        assert_eq!(l.missing(), vec![ENV_TOKEN]);
        let l = layer(json!({"account_id": "acc", "byok": true, "api_token": "t"}));
        assert!(l.resolve().unwrap().byok);
        let l = layer(json!({"account_id": "acc", "byok": true, "gateway_token": "g"}));
        assert!(l.resolve().unwrap().byok);
        // The rest endpoint always needs the Cloudflare token.
        let l = layer(
            json!({"account_id": "acc", "byok": true, "gateway_token": "g", "endpoint": "rest"}),
        );
        assert_eq!(l.missing(), vec![ENV_TOKEN]);
    }

    #[test]
    fn gateway_table_merges_key_by_key_and_is_checked() {
        let file = Layer::from_toml("[gateway]\ncache_ttl = 120\nbackoff = \"linear\"\n").unwrap();
        let client = layer(json!({"gateway": {"backoff": "constant"}}));
        let merged = client.over(&file);
        let g = merged.gateway.clone().unwrap();
        assert_eq!(g.cache_ttl, Some(120));
        assert_eq!(g.backoff, Some(crate::gateway::options::Backoff::Constant));
        let bad = layer(json!({"api_token": "t", "account_id": "a", "gateway": {"cache_ttl": 1}}));
        assert!(matches!(
            bad.resolve(),
            Err(SettingsError::Invalid {
                setting: "gateway",
                ..
            })
        ));
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let l = layer(json!({"api_token": "sekrit-token-123"}));
        assert!(!format!("{l:?}").contains("sekrit"));
    }

    #[test]
    fn process_settings_have_defaults_and_a_floor_of_one() {
        let s = Layer::default().process_settings();
        assert_eq!(
            s.connect_timeout,
            Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS)
        );
        assert_eq!(s.max_in_flight, DEFAULT_MAX_IN_FLIGHT as usize);
        let s = Layer::from_toml("connect_timeout_secs = 0\nmax_in_flight = 0\n")
            .unwrap()
            .process_settings();
        assert_eq!((s.connect_timeout.as_secs(), s.max_in_flight), (1, 1));
    }

    #[test]
    fn masks_account_ids() {
        assert_eq!(mask("0123456789abcdef"), "0123…ef");
        assert_eq!(mask("abc"), "***");
    }
}
