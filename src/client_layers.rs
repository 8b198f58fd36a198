//! The settings layers a client of the shared daemon would have used as a private daemon:
//! its environment's settings variables and its config file (path and text, or the error
//! reading it gave). The client gathers and sends them when it connects; the daemon resolves
//! that connection's requests from them, never from the environment it was started with.
//!
//! They hold the token, so: they travel only over the daemon's 0600 socket to a same-uid
//! peer; every value that may be a secret is a [`SecretString`] from the moment it is read
//! (the environment's values and the file's text alike); the bytes that carried them are
//! zeroed once sent or parsed; and nothing here is ever logged (no `Debug` shows a value).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{self, ConfigError, Layer};

/// What one client sends: its layers as it read them.
#[derive(Default, Deserialize)]
pub struct ClientLayers {
    /// `CLOUDFLARE_*` settings variables that are set (see [`config::ENV_NAMES`]).
    #[serde(default)]
    env: BTreeMap<String, SecretString>,
    #[serde(default)]
    config_path: Option<PathBuf>,
    /// The config file's text, when it could be read.
    #[serde(default)]
    config_text: Option<SecretString>,
    /// Why the config file cannot be used, when reading it failed.
    #[serde(default)]
    config_error: Option<ConfigError>,
}

/// Shows which layers were sent, never a value.
impl std::fmt::Debug for ClientLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLayers")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("config_path", &self.config_path)
            .field("config_error", &self.config_error.is_some())
            .finish()
    }
}

/// How they are written on the wire: borrowed, so no secret is copied into a plain string.
#[derive(Serialize)]
pub struct Wire<'a> {
    env: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_path: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_error: Option<&'a ConfigError>,
}

/// A client's layers as the daemon uses them.
pub struct Resolved {
    /// Its environment over its config file.
    pub base: Layer,
    pub config_path: Option<PathBuf>,
    /// Its config file cannot be used: its requests fail with this.
    pub config_error: Option<ConfigError>,
}

impl ClientLayers {
    /// This process's layers, as a private daemon started here would read them.
    pub fn gather() -> ClientLayers {
        let env = config::ENV_NAMES
            .iter()
            .filter_map(|name| {
                let value = std::env::var(name).ok()?;
                Some((name.to_string(), SecretString::from(value)))
            })
            .collect();
        let mut layers = ClientLayers {
            env,
            ..ClientLayers::default()
        };
        match config::load_config_file() {
            Err(e) => {
                layers.config_path = Some(e.path.clone());
                layers.config_error = Some(e);
            }
            Ok(file) => {
                if let Some(path) = file.path {
                    let path = std::path::absolute(&path).unwrap_or(path);
                    // Absent at the default path: no file, as for a private daemon.
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        layers.config_text = Some(SecretString::from(text));
                    }
                    layers.config_path = Some(path);
                }
            }
        }
        layers
    }

    /// What goes on the wire, borrowing the secrets (serialize it into a [`Zeroizing`]
    /// buffer).
    pub fn wire(&self) -> Wire<'_> {
        Wire {
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose_secret()))
                .collect(),
            config_path: self.config_path.as_deref(),
            config_text: self.config_text.as_ref().map(|t| t.expose_secret()),
            config_error: self.config_error.as_ref(),
        }
    }

    /// The wire's JSON, in a buffer zeroed when dropped.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(serde_json::to_vec(&self.wire()).unwrap_or_default())
    }

    /// The layer and config error this client's requests resolve from.
    pub fn resolve(&self) -> Resolved {
        let env =
            Layer::from_vars(|name| self.env.get(name).map(|v| v.expose_secret().to_string()));
        let (file, config_error) = match (&self.config_error, &self.config_path, &self.config_text)
        {
            (Some(e), _, _) => (Layer::default(), Some(e.clone())),
            (None, Some(path), Some(text)) => {
                match config::file::parse(path, text.expose_secret()) {
                    Ok(layer) => (layer, None),
                    Err(e) => (Layer::default(), Some(e)),
                }
            }
            _ => (Layer::default(), None),
        };
        Resolved {
            base: env.over(&file),
            config_path: self.config_path.clone(),
            config_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn travels_whole_and_shows_no_value_in_debug() {
        let token = "cf-client-layers-secret-5678";
        let layers = ClientLayers {
            env: [(config::ENV_TOKEN.to_string(), SecretString::from(token))].into(),
            config_path: Some("/x/config.toml".into()),
            config_text: Some(SecretString::from(
                "gateway_id = \"gw-file\"\nmodel = \"openai/gpt-4o\"\n",
            )),
            config_error: None,
        };
        assert!(!format!("{layers:?}").contains(token));
        let back: ClientLayers = serde_json::from_slice(&layers.to_json()).unwrap();
        let resolved = back.resolve();
        assert!(resolved.config_error.is_none());
        assert_eq!(
            resolved.base.api_token.as_ref().map(|t| t.expose_secret()),
            Some(token)
        );
        assert_eq!(resolved.base.gateway_id.as_deref(), Some("gw-file"));
        assert_eq!(resolved.base.model.as_deref(), Some("openai/gpt-4o"));
    }

    #[test]
    fn a_file_that_does_not_parse_is_the_clients_error() {
        let layers = ClientLayers {
            config_path: Some("/x/config.toml".into()),
            config_text: Some(SecretString::from("modle = 1\n")),
            ..ClientLayers::default()
        };
        let back: ClientLayers = serde_json::from_slice(&layers.to_json()).unwrap();
        let error = back.resolve().config_error.expect("an error");
        assert!(error.to_string().contains("/x/config.toml"), "{error}");
        assert!(error.to_string().contains("modle"), "{error}");
    }
}
