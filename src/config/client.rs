//! A client's own settings (`initializationOptions`, then each
//! `workspace/didChangeConfiguration`) and a request's overrides, as layers.

use serde_json::{Map, Value};

use super::Layer;
use super::options::GatewayOptions;

/// The settings object a client sent, flat or namespaced as `{"cfgate": {...}}`; `None`
/// for `null` (nothing sent).
pub(super) fn client_object(value: &Value) -> Result<Option<&Map<String, Value>>, String> {
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
