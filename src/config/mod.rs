//! Settings: where each one comes from, which source wins, and the secret token.
//!
//! One setting can be given in five places. They are kept as separate [`Layer`]s and merged
//! on every request, never copied into one mutable struct, so that a
//! `workspace/didChangeConfiguration` from one editor cannot clobber what another editor
//! set, and so that `cfgate/status` can say exactly what is missing.
//! Precedence: request > client (initializationOptions, then didChangeConfiguration) >
//! environment > config file > defaults.

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use options::GatewayOptions;

mod client;
pub mod file;
pub mod options;
mod resolve;

use client::client_object;
pub use client::{ClientSettings, request_layer};
pub use file::{ConfigError, ConfigFile, config_path, load_config_file};
pub use resolve::{ProcessSettings, Settings, SettingsError, mask, validate_id};

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
    "requests_per_minute",
    "listen_origins",
    "listen",
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
    /// Most requests a minute sent to this gateway, by every client together (none: only
    /// what 429s teach); completions are shed first.
    pub requests_per_minute: Option<u32>,
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
    /// Where the shared daemon always serves the loopback endpoint (and the OpenAI API),
    /// e.g. `127.0.0.1:8765`; config file only, read when the daemon starts.
    pub listen: Option<std::net::SocketAddr>,
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
            requests_per_minute: pick(&self.requests_per_minute, &lower.requests_per_minute),
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
            listen: pick(&self.listen, &lower.listen),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

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
        let lua = include_str!("../../editors/nvim/lua/cfgate/config.lua");
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
