//! Turns an upstream error answer into an [`Error`] a user can act on.
//!
//! Three body shapes reach a client through the gateway (wire notes, section 5.1): the
//! gateway's own `{"success":false,"error":[{code,message}]}`, the Cloudflare API envelope
//! `{"errors":[{code,message}]}` from Workers AI, and whatever a vendor sends, passed through
//! (`{"error":{...}}`). The numeric code decides the hint; the status decides the kind.

use serde_json::Value;

use crate::error::{Error, ErrorKind};
use crate::route::{ACCEPTED_FORMS, model_hint};

/// The code and message found in an upstream error body, and who sent it.
#[derive(Debug, Default, PartialEq)]
pub struct UpstreamBody {
    pub code: Option<i64>,
    pub message: Option<String>,
    /// True when the body is a vendor's own error passed through (not Cloudflare's).
    pub from_vendor: bool,
}

pub fn parse_body(body: &str) -> UpstreamBody {
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        let text: String = body.trim().chars().take(300).collect();
        return UpstreamBody {
            message: (!text.is_empty()).then_some(text),
            ..UpstreamBody::default()
        };
    };
    let first_of = |list: &Value| -> Option<(Option<i64>, Option<String>)> {
        let first = list.as_array()?.first()?;
        Some((
            first.get("code").and_then(Value::as_i64),
            first
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string),
        ))
    };
    // The gateway's AiGatewayError: `error` is a list.
    if let Some((code, message)) = json.get("error").and_then(first_of) {
        return UpstreamBody {
            code,
            message,
            from_vendor: false,
        };
    }
    // The Cloudflare API v4 envelope.
    if let Some((code, message)) = json.get("errors").and_then(first_of) {
        return UpstreamBody {
            code,
            message,
            from_vendor: false,
        };
    }
    // A vendor's error object (OpenAI, Anthropic, ...), passed through.
    if let Some(err) = json.get("error").filter(|e| e.is_object()) {
        return UpstreamBody {
            code: err.get("code").and_then(Value::as_i64),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string),
            from_vendor: true,
        };
    }
    // Workers AI's AiError, or anything else with a top-level message.
    UpstreamBody {
        code: json.get("internalCode").and_then(Value::as_i64),
        message: json
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string),
        from_vendor: false,
    }
}

/// What the user should do about a Cloudflare error code.
fn code_hint(code: i64) -> Option<String> {
    let hint = match code {
        2001 => {
            "the gateway id does not exist on this account: check CLOUDFLARE_AI_GATEWAY_ID (setting gateway_id), or create the gateway in the Cloudflare dashboard under AI > AI Gateway"
        }
        2003 => {
            "the gateway's rate limit was reached: wait and try again, or raise the limit in the gateway's settings"
        }
        2005 => {
            "the gateway could not get an answer from the provider: check that the model id names a vendor the gateway knows and that the vendor's key is stored in the gateway (BYOK) or sent by you"
        }
        2008 => {
            "the model id's vendor prefix is not one the gateway knows (a Workers AI id needs `workers-ai/` before `@cf/`; cfgate adds it when you write `@cf/...`)"
        }
        2009 => {
            "the gateway has authentication turned on: set gateway_token (env CLOUDFLARE_AI_GATEWAY_TOKEN) to a token with AI Gateway Run permission; it is sent as cf-aig-authorization"
        }
        2016 => {
            "the gateway's Guardrails blocked the prompt; rephrase it or change the gateway's Guardrails settings"
        }
        2017 => {
            "the gateway's Guardrails blocked the model's answer; change the prompt or the gateway's Guardrails settings"
        }
        2018 => "the Unified Billing rate limit was reached: wait and try again",
        2019 => {
            "the gateway does not serve this path: base_url must end at the API root (for the compat endpoint, .../compat); cfgate appends /chat/completions"
        }
        2021 => {
            "the account has no Unified Billing credits left: add credits in the Cloudflare dashboard, or store your own vendor key (BYOK)"
        }
        2040 => {
            "the gateway has no stored key (BYOK) under that alias for this vendor: add it in the dashboard or choose a configured alias"
        }
        2041 => {
            "a spend limit rule of the gateway was reached: wait for its window to pass or raise the limit"
        }
        3036 => {
            "the account used its 10,000 free Workers AI neurons for today: wait until 00:00 UTC or move to the Workers Paid plan"
        }
        3040 => {
            "Workers AI is out of capacity for this model right now: try again shortly or pick another model"
        }
        5007 => {
            "Workers AI has no model by that id: `cfgate models` lists the ids this gateway offers (or see the Workers AI model catalog, developers.cloudflare.com/workers-ai/models)"
        }
        7009 => "the upstream service was unavailable; this is usually brief, try again",
        10000 => {
            "Cloudflare refused the API token: check CLOUDFLARE_API_TOKEN is current and has the Workers AI (Read/Run) and AI Gateway permissions for this account"
        }
        _ => return None,
    };
    Some(hint.to_string())
}

/// Says which credential a 401/403 refused, given what was sent: the gateway's own
/// authentication (2009: `cf-aig-authorization`), the Cloudflare token (10000), or a
/// vendor's key passed through (its own error body), which with stored keys is the key the
/// gateway holds, not one cfgate sent.
pub fn refine_auth_hint(err: &mut Error, body: &str, byok: bool, gateway_token_sent: bool) {
    if !matches!(err.status, Some(401 | 403)) {
        return;
    }
    let from_vendor = parse_body(body).from_vendor;
    let hint = match err.upstream_code {
        Some(2009) if gateway_token_sent => {
            "the gateway refused its own authentication (cf-aig-authorization, from gateway_token): \
             this is not the vendor's key; check that gateway_token is current and has AI Gateway \
             Run permission for this account"
        }
        Some(2009) => {
            "the gateway has authentication turned on and no gateway_token was sent: set \
             gateway_token (env CLOUDFLARE_AI_GATEWAY_TOKEN) to a token with AI Gateway Run \
             permission; it is sent as cf-aig-authorization"
        }
        _ if from_vendor && byok => {
            "the gateway passed the vendor's refusal through: the gateway's authentication \
             succeeded, but the key stored in the gateway (BYOK) for this vendor was refused; \
             update it in the dashboard (AI Gateway > Provider keys), or pick another one with \
             gateway.byok_alias"
        }
        _ if from_vendor => {
            "the gateway passed the vendor's refusal through: the gateway accepted the request, \
             but the vendor refused the key; cfgate sends api_token as the vendor key, so store \
             the vendor's key in the gateway and set byok = true, or check the key"
        }
        _ => return,
    };
    err.hint = Some(hint.to_string());
}

/// Builds the error for a non-success answer.
pub fn from_response(status: u16, body: &str, model: &str) -> Error {
    let parsed = parse_body(body);
    let kind = match (status, parsed.code) {
        (_, Some(7009)) => ErrorKind::Unavailable,
        (_, Some(3040)) | (429, _) => ErrorKind::RateLimited,
        (401 | 403, _) => ErrorKind::Unauthorized,
        (408, _) => ErrorKind::Timeout,
        (500..=599, _) => ErrorKind::Unavailable,
        _ => ErrorKind::Upstream,
    };
    let who = if parsed.from_vendor {
        "the model's vendor"
    } else {
        "the gateway"
    };
    let mut message = format!("{who} answered HTTP {status}");
    if let Some(code) = parsed.code {
        message.push_str(&format!(" (code {code})"));
    }
    if let Some(text) = &parsed.message {
        message.push_str(": ");
        message.push_str(text);
    }
    let mut hints: Vec<String> = Vec::new();
    if let Some(hint) = model_hint(model) {
        hints.push(hint.to_string());
    }
    match parsed.code.and_then(code_hint) {
        Some(hint) => hints.push(hint),
        None if parsed.from_vendor && matches!(status, 401 | 403) => hints.push(
            "the vendor refused its API key (this is not the gateway's authentication): store the vendor's key in the gateway (BYOK) or check the key you send".into(),
        ),
        None if status == 401 => hints.push(code_hint(10000).unwrap_or_default()),
        None => {}
    }
    if matches!(parsed.code, Some(2005 | 2008)) {
        hints.push(ACCEPTED_FORMS.to_string());
    }
    let mut err = Error::new(kind, message);
    err.status = Some(status);
    err.upstream_code = parsed.code;
    err.upstream_message = parsed.message;
    err.hint = (!hints.is_empty()).then(|| hints.join("; "));
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_body_shape() {
        let gateway = r#"{"success":false,"result":[],"messages":[],"error":[{"code":2008,"message":"Invalid provider"}],"name":"AiGatewayError","httpCode":400,"internalCode":2008,"message":"Invalid provider","description":"Invalid provider"}"#;
        assert_eq!(
            parse_body(gateway),
            UpstreamBody {
                code: Some(2008),
                message: Some("Invalid provider".into()),
                from_vendor: false
            }
        );
        let v4 = r#"{"result":null,"success":false,"errors":[{"code":7009,"message":"Upstream service unavailable"}],"messages":[]}"#;
        assert_eq!(parse_body(v4).code, Some(7009));
        let vendor = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let parsed = parse_body(vendor);
        assert!(parsed.from_vendor && parsed.code.is_none());
        assert_eq!(
            parsed.message.as_deref(),
            Some("Incorrect API key provided")
        );
        let ai = r#"{"name":"AiError","internalCode":5017,"httpCode":500,"message":"AiError: Configuration error"}"#;
        assert_eq!(parse_body(ai).code, Some(5017));
        assert_eq!(
            parse_body("<html>bad gateway</html>").message.as_deref(),
            Some("<html>bad gateway</html>")
        );
    }

    #[test]
    fn kinds_and_hints() {
        let e = from_response(
            400,
            r#"{"success":false,"error":[{"code":2001,"message":"Please configure AI Gateway in the Cloudflare dashboard"}]}"#,
            "workers-ai/@cf/x/y",
        );
        assert_eq!(e.kind, ErrorKind::Upstream);
        assert!(e.hint.unwrap().contains("CLOUDFLARE_AI_GATEWAY_ID"));
        let e = from_response(
            503,
            r#"{"errors":[{"code":7009,"message":"Upstream service unavailable"}]}"#,
            "m/x",
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.retryable);
        let e = from_response(
            401,
            r#"{"success":false,"error":[{"code":2009,"message":"Unauthorized"}]}"#,
            "m/x",
        );
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert!(e.hint.unwrap().contains("cf-aig-authorization"));
        assert!(!e.retryable);
        let e = from_response(
            401,
            r#"{"error":{"message":"bad key","type":"x"}}"#,
            "openai/gpt-5",
        );
        assert!(e.hint.unwrap().contains("vendor refused"));
        let e = from_response(
            400,
            r#"{"errors":[{"code":5007,"message":"No such model"}]}"#,
            "workers-ai/@cf/google/gemini-2.0-flash",
        );
        let hint = e.hint.unwrap();
        assert!(
            hint.contains("google-ai-studio/") && hint.contains("catalog"),
            "{hint}"
        );
        let e = from_response(
            429,
            r#"{"errors":[{"code":3036,"message":"daily free allocation"}]}"#,
            "m/x",
        );
        assert!(e.hint.as_deref().unwrap().contains("neurons"));
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(e.retryable);
    }

    #[test]
    fn auth_hints_say_which_credential_was_refused() {
        let gateway_401 = r#"{"success":false,"error":[{"code":2009,"message":"Unauthorized"}]}"#;
        let vendor_401 = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let hint_for = |body: &str, byok: bool, sent: bool| {
            let mut e = from_response(401, body, "openai/gpt-5");
            refine_auth_hint(&mut e, body, byok, sent);
            e.hint.unwrap_or_default()
        };
        assert!(hint_for(gateway_401, false, false).contains("no gateway_token was sent"));
        assert!(hint_for(gateway_401, false, true).contains("not the vendor's key"));
        assert!(hint_for(vendor_401, true, true).contains("stored in the gateway (BYOK)"));
        assert!(hint_for(vendor_401, false, true).contains("vendor refused the key"));
        let cf_401 = r#"{"errors":[{"code":10000,"message":"Authentication error"}]}"#;
        assert!(hint_for(cf_401, false, false).contains("CLOUDFLARE_API_TOKEN"));
    }
}
