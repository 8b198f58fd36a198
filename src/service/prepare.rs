//! A chat request built from its params and the settings, ready to send: the model
//! routed, the body (cfgate's own fields over the caller's), the gateway options and
//! authorization, the retry policy and the rate budget it spends. Nothing here sends.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::Service;
use crate::config::{self, Endpoint, Layer, Settings};
use crate::error::{Error, ErrorKind};
use crate::gateway::budget::{BudgetKey, Priority, WaitReports};
use crate::gateway::options::GatewayOptions;
use crate::gateway::{RetryPolicy, UpstreamRequest};
use crate::protocol::ChatParams;
use crate::route::route_model;

const RETRY_BASE_DELAY: Duration = Duration::from_millis(500);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(8);

const JSON_INSTRUCTION: &str =
    "Respond only with one valid JSON object: no text before or after it, and no code fences.";

/// Fields of the OpenAI body that cfgate itself sets.
const OWN_FIELDS: &[&str] = &["model", "messages", "stream"];

/// How a chat is sent, beyond its params.
pub(super) struct Sending {
    pub(super) stream: bool,
    /// Chat goes first; completions are shed when the rate budget runs low.
    pub(super) priority: Priority,
    pub(super) waits: Option<WaitReports>,
}

impl Sending {
    pub(super) fn interactive(stream: bool, waits: Option<WaitReports>) -> Sending {
        Sending {
            stream,
            priority: Priority::Interactive,
            waits,
        }
    }
}

/// A chat request built and ready to send.
pub(super) struct PreparedChat {
    pub(super) request: UpstreamRequest,
    /// The routed model id the request names.
    pub(super) model: String,
    pub(super) expect_json: bool,
}

impl Service {
    /// The upstream request for `params`: settings resolved, model routed, body and
    /// headers built. Nothing is sent yet.
    pub(super) fn prepare_chat(
        &self,
        client: &Layer,
        params: ChatParams,
        sending: Sending,
    ) -> Result<PreparedChat, Error> {
        let Sending {
            stream,
            priority,
            waits,
        } = sending;
        let ChatParams {
            messages,
            model,
            json_mode,
            gateway,
            body: extra,
            ..
        } = params;
        check_messages(&messages)?;
        let options = gateway
            .as_ref()
            .map(GatewayOptions::from_json)
            .transpose()
            .map_err(|e| Error::new(ErrorKind::InvalidParams, format!("invalid params: {e}")))?;
        let settings = self.settings(
            client,
            &config::request_layer(model.as_deref(), &extra, options),
        )?;
        let routed = route_model(&settings.model, settings.endpoint)?;
        let mut messages: Vec<Value> = messages.into_iter().map(Value::Object).collect();
        let mut body: Map<String, Value> = extra
            .into_iter()
            .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
            .collect();
        if json_mode {
            add_json_instruction(&mut messages);
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        let expect_json = asks_for_json(&body);
        if let Some(max) = settings.max_tokens {
            body.entry("max_tokens").or_insert(Value::from(max));
        }
        body.insert("model".into(), Value::from(routed.clone()));
        body.insert("messages".into(), Value::Array(messages));
        if stream {
            body.insert("stream".into(), Value::Bool(true));
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        }
        let mut headers = reqwest::header::HeaderMap::new();
        let options = settings
            .gateway
            .headers()
            .map_err(|e| Error::new(ErrorKind::InvalidParams, format!("invalid params: {e}")))?;
        headers.extend(options);
        if settings.endpoint == Endpoint::Rest {
            let id = reqwest::header::HeaderValue::from_str(&settings.gateway_id)
                .map_err(|_| Error::new(ErrorKind::InvalidSetting, "invalid setting gateway_id"))?;
            headers.insert("cf-aig-gateway-id", id);
        }
        let (token, gateway_token) = settings.auth_tokens();
        let budget = budget_key(&settings, token.as_ref(), gateway_token.as_ref());
        let request = UpstreamRequest {
            budget,
            priority,
            requests_per_minute: settings.requests_per_minute,
            url: settings.base_url.clone(),
            token,
            gateway_token,
            auth: settings.auth_plan(),
            headers,
            body: Value::Object(body),
            stream,
            timeout: settings.timeout,
            idle_timeout: settings.idle_timeout,
            retry: RetryPolicy {
                max_attempts: settings.max_attempts,
                deadline: settings.retry_deadline,
                base_delay: RETRY_BASE_DELAY,
                max_delay: RETRY_MAX_DELAY,
            },
            model: routed.clone(),
            byok: settings.byok,
            waits,
        };
        Ok(PreparedChat {
            request,
            model: routed,
            expect_json,
        })
    }
}

/// `response_format` of type `json_object` or `json_schema` asks for JSON.
fn asks_for_json(body: &Map<String, Value>) -> bool {
    body.get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "json_object" || t == "json_schema")
}

/// The rate budget a request spends: its gateway (URL, and the gateway id the REST
/// endpoint names in a header) and the credentials it sends, hashed.
fn budget_key(
    settings: &Settings,
    token: Option<&SecretString>,
    gateway_token: Option<&SecretString>,
) -> BudgetKey {
    let label = match settings.endpoint {
        Endpoint::Compat => settings.base_url.clone(),
        Endpoint::Rest => format!("{} (gateway {})", settings.base_url, settings.gateway_id),
    };
    let secrets: Vec<&str> = [token, gateway_token]
        .into_iter()
        .flatten()
        .map(|t| t.expose_secret())
        .collect();
    BudgetKey::new(label, &secrets)
}

/// Each message must be an object with a string `role`; everything else is the vendor's.
pub(super) fn check_messages(messages: &[Map<String, Value>]) -> Result<(), Error> {
    if messages.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidParams,
            "invalid params: messages must hold at least one message",
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        match message.get("role") {
            Some(Value::String(role)) if !role.is_empty() => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidParams,
                    format!(
                        "invalid params: messages[{i}].role must be a non-empty string (system, user, assistant or tool)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// For models without native structured output: say it in the system message as well.
fn add_json_instruction(messages: &mut Vec<Value>) {
    if let Some(Value::Object(first)) = messages.first_mut() {
        if first.get("role").and_then(Value::as_str) == Some("system") {
            if let Some(Value::String(text)) = first.get_mut("content") {
                text.push_str("\n\n");
                text.push_str(JSON_INSTRUCTION);
                return;
            }
        }
    }
    messages.insert(0, json!({"role": "system", "content": JSON_INSTRUCTION}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_instruction_joins_or_leads() {
        let mut with_system = vec![
            json!({"role":"system","content":"Be brief."}),
            json!({"role":"user","content":"hi"}),
        ];
        add_json_instruction(&mut with_system);
        assert_eq!(with_system.len(), 2);
        assert!(
            with_system[0]["content"]
                .as_str()
                .unwrap()
                .starts_with("Be brief.\n\nRespond only")
        );
        let mut without = vec![json!({"role":"user","content":"hi"})];
        add_json_instruction(&mut without);
        assert_eq!(without[0]["role"], "system");
        assert_eq!(without.len(), 2);
    }

    #[test]
    fn messages_are_checked() {
        assert!(check_messages(&[]).is_err());
        let bad: Map<String, Value> = serde_json::from_value(json!({"content":"x"})).unwrap();
        let err = check_messages(&[bad]).unwrap_err();
        assert!(err.message.contains("messages[0].role"));
    }
}
