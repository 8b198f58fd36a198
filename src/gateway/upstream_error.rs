//! Turns an upstream error answer into an [`Error`] a user can act on.
//!
//! Three body shapes reach a client through the gateway (wire notes, section 5.1): the
//! gateway's own `{"success":false,"error":[{code,message}]}`, the Cloudflare API envelope
//! `{"errors":[{code,message}]}` from Workers AI, and whatever a vendor sends, passed through
//! (`{"error":{...}}`). The numeric code decides the hint; the status decides the kind.

use serde_json::Value;

use crate::auth::{AuthPlan, Credential};
use crate::error::{Error, ErrorKind};
use crate::route::{ACCEPTED_FORMS, Endpoint, model_hint};

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

/// Where Cloudflare's docs name the permission a token needs for an authenticated gateway.
/// They disagree (wire notes 10.2), so the hint quotes them rather than pick one.
const PERMISSION_WORDING: &str = "Cloudflare's docs name the permission differently: \
\"AI Gateway\" (REST API page), \"AI Gateway - Read\" and \"AI Gateway - Edit\" with \
\"Workers AI - Read\" (Get started), \"Run\" (tokens the dashboard creates); a token from the \
gateway's Authentication settings has what it needs";

/// What the user should do about a Cloudflare error code (and what blocked it, where).
fn code_hint(code: i64, message: &str) -> Option<String> {
    let hint = match code {
        2001 => {
            "the gateway id does not exist on this account: check CLOUDFLARE_AI_GATEWAY_ID (setting gateway_id), or create the gateway in the Cloudflare dashboard under AI > AI Gateway"
        }
        2003 => {
            "the gateway's own rate limit was reached (set under AI Gateway > the gateway > Settings > Rate limiting): cfgate waited and tried again; wait, or raise the limit there"
        }
        2005 => {
            "the gateway could not get an answer from the provider: check that the model id names a vendor the gateway knows and that the vendor's key is stored in the gateway (BYOK) or sent by you"
        }
        2008 => {
            "the model id's vendor prefix is not one this endpoint knows: compat wants `workers-ai/@cf/...`, `google-ai-studio/...`, `grok/...`; REST wants `@cf/...`, `google/...`, `xai/...` (cfgate converts either spelling for the endpoint in use)"
        }
        2009 => {
            "the gateway has authentication on and refused the token sent for it (cf-aig-authorization on compat, Authorization on REST): give CLOUDFLARE_API_TOKEN AI Gateway permission on this account, or set gateway_token (CLOUDFLARE_AI_GATEWAY_TOKEN) to a token that has it"
        }
        2016 => {
            "the gateway's Guardrails blocked the prompt: rephrase it, or change the Guardrails rules under AI Gateway > the gateway > Guardrails"
        }
        2017 => {
            "the gateway's Guardrails blocked the model's answer: change the prompt, or the Guardrails rules under AI Gateway > the gateway > Guardrails"
        }
        2018 => {
            "the Unified Billing rate limit was reached (200 requests a minute per gateway; requests with your own keys, BYOK, are not counted): cfgate waited and tried again; wait a minute"
        }
        2019 => {
            "the gateway does not serve this path: base_url must end at the API root (for the compat endpoint, .../compat); cfgate appends /chat/completions"
        }
        2021 if message.to_ascii_lowercase().contains("rate limit") => {
            "the Unified Billing rate limit was reached (200 requests a minute per gateway): wait a minute, or use your own vendor key (BYOK)"
        }
        2021 if message.to_ascii_lowercase().contains("guardrail") => {
            "the Guardrails scanner has no credits left: add credits in the Cloudflare dashboard, or turn the gateway's Guardrails off"
        }
        2021 => {
            "no credits left (Unified Billing, or the Guardrails scanner's): add credits in the Cloudflare dashboard, or store your own vendor key (BYOK)"
        }
        2029 => {
            "the gateway's Data Loss Prevention (DLP) policy blocked the prompt: data.dlp lists what matched; remove that data, or change the DLP policy under AI Gateway > the gateway > DLP"
        }
        2030 => {
            "the gateway's Data Loss Prevention (DLP) policy blocked the model's answer: data.dlp lists what matched; change the prompt, or the DLP policy under AI Gateway > the gateway > DLP"
        }
        2040 => {
            "the gateway has no stored key (BYOK) under that alias for this vendor: add it in the dashboard or choose a configured alias"
        }
        2041 | 2045 => SPEND_LIMIT_HINT,
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
        7013 => {
            "the Guardrails scanner is unavailable and a Block rule applies: cfgate tried again; try later, or make the rule Flag-only under AI Gateway > the gateway > Guardrails"
        }
        10000 => {
            "Cloudflare refused the API token: check CLOUDFLARE_API_TOKEN is current and has the Workers AI (Read/Run) and AI Gateway permissions for this account"
        }
        _ => return None,
    };
    Some(hint.to_string())
}

const SPEND_LIMIT_HINT: &str = "a spend limit rule of the gateway was reached (it is checked before the provider is called, so trying again will not help): wait for the rule's window to pass, or raise the limit under AI Gateway > the gateway > Spend limits";

/// A spend limit: its code is not documented (2041 and 2045 were both seen), so the 429 is
/// also known by its message (wire notes 10.5).
fn is_spend_limit(status: u16, code: Option<i64>, message: Option<&str>) -> bool {
    matches!(code, Some(2041 | 2045))
        || (status == 429
            && message.is_some_and(|m| m.to_ascii_lowercase().contains("spend limit exceeded")))
}

/// Says which credential a 401/403 refused, given what was sent: the gateway's own
/// authentication (2009), the Cloudflare token (10000), or a vendor's key passed through
/// (its own error body), which with stored keys is the key the gateway holds, not one
/// cfgate sent.
pub fn refine_auth_hint(err: &mut Error, body: &str, byok: bool, auth: &AuthPlan) {
    if !matches!(err.status, Some(401 | 403)) {
        return;
    }
    let from_vendor = parse_body(body).from_vendor;
    let hint = match err.upstream_code {
        Some(2009) => gateway_auth_hint(auth),
        _ if from_vendor && byok => "the gateway passed the vendor's refusal through: the \
             gateway's authentication succeeded, but the key stored in the gateway (BYOK) for \
             this vendor was refused; update it in the dashboard (AI Gateway > Provider keys), \
             or pick another one with gateway.byok_alias"
            .to_string(),
        _ if from_vendor => "the gateway passed the vendor's refusal through: the gateway \
             accepted the request, but the vendor refused the key; cfgate sends api_token as \
             the vendor key, so store the vendor's key in the gateway and set byok = true, or \
             check the key"
            .to_string(),
        _ => return,
    };
    err.hint = Some(hint);
}

/// 2009: the gateway has authentication on and refused what was sent for it.
fn gateway_auth_hint(auth: &AuthPlan) -> String {
    let (header, credential) = match (auth.cf_aig_authorization, auth.authorization) {
        (Some(c), _) => ("cf-aig-authorization", c),
        (None, Some(c)) => ("Authorization", c),
        (None, None) => ("no header", Credential::ApiToken),
    };
    let rest_note = if auth.endpoint == Endpoint::Rest {
        " On the REST endpoint 2009 can also mean the provider refused the credentials \
         (changelog 2026-10-06)."
    } else {
        ""
    };
    // On REST only `Authorization` authenticates: a separate gateway token is not sent.
    let separate = match (auth.endpoint, credential) {
        (Endpoint::Rest, _) => " and check that it is current",
        (_, Credential::ApiToken) => {
            ", or set gateway_token (CLOUDFLARE_AI_GATEWAY_TOKEN) to a token that has it"
        }
        (_, Credential::GatewayToken) => "; this is not the vendor's key, check that it is current",
    };
    format!(
        "the gateway has authentication on and refused its own authentication: cfgate sent \
         {} in {header}; give that token AI Gateway permission on this account{separate}. \
         {PERMISSION_WORDING}.{rest_note}",
        credential.describe()
    )
}

/// The `cf-aig-dlp` header: JSON findings when it parses, else its text.
pub fn add_dlp_findings(err: &mut Error, header: &str) {
    let findings = serde_json::from_str::<Value>(header).unwrap_or_else(|_| Value::from(header));
    let profiles: Vec<&str> = findings
        .get("findings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.pointer("/profile/profile_id").and_then(Value::as_str))
        .collect();
    if !profiles.is_empty() {
        if let Some(hint) = &mut err.hint {
            hint.push_str(&format!(" (DLP profiles matched: {})", profiles.join(", ")));
        }
    }
    err.dlp = Some(findings);
}

/// Builds the error for a non-success answer.
pub fn from_response(status: u16, body: &str, model: &str) -> Error {
    let parsed = parse_body(body);
    let message_text = parsed.message.as_deref().unwrap_or("");
    let kind = match (status, parsed.code) {
        (_, Some(7009)) => ErrorKind::Unavailable,
        (_, Some(2016 | 2017 | 2029 | 2030)) => ErrorKind::Blocked,
        (_, Some(3036)) | (402, _) => ErrorKind::QuotaExceeded,
        _ if is_spend_limit(status, parsed.code, parsed.message.as_deref()) => {
            ErrorKind::QuotaExceeded
        }
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
    let spend_limit = is_spend_limit(status, parsed.code, parsed.message.as_deref());
    match parsed.code.and_then(|code| code_hint(code, message_text)) {
        Some(hint) => hints.push(hint),
        None if spend_limit => hints.push(SPEND_LIMIT_HINT.into()),
        None if parsed.from_vendor && matches!(status, 401 | 403) => hints.push(
            "the vendor refused its API key (this is not the gateway's authentication): store the vendor's key in the gateway (BYOK) or check the key you send".into(),
        ),
        None if status == 401 => hints.push(code_hint(10000, "").unwrap_or_default()),
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
        assert_eq!(e.kind, ErrorKind::QuotaExceeded);
        assert!(!e.retryable);
    }

    #[test]
    fn refusals_are_typed_and_only_rate_limits_are_retryable() {
        let gateway = |http: u16, code: i64, message: &str| {
            serde_json::json!({"success": false, "result": [], "messages": [],
                "error": [{"code": code, "message": message}], "name": "AiGatewayError",
                "httpCode": http, "internalCode": code})
            .to_string()
        };
        // (status, code, message) -> kind, retryable, words of the hint
        let table = [
            (
                424,
                2016,
                "Prompt blocked due to security configurations",
                ErrorKind::Blocked,
                false,
                "Guardrails",
            ),
            (
                424,
                2017,
                "Response blocked due to security configurations",
                ErrorKind::Blocked,
                false,
                "Guardrails",
            ),
            (
                422,
                2017,
                "Response blocked",
                ErrorKind::Blocked,
                false,
                "Guardrails",
            ),
            (
                402,
                2021,
                "Guardrails scanner: insufficient credits",
                ErrorKind::QuotaExceeded,
                false,
                "scanner has no credits",
            ),
            (
                402,
                2021,
                "Wholesale rate limit exceeded for this gateway. Please reduce request rate or use BYOK.",
                ErrorKind::QuotaExceeded,
                false,
                "200 requests a minute",
            ),
            (
                503,
                7013,
                "Guardrails scanner unavailable",
                ErrorKind::Unavailable,
                true,
                "Flag-only",
            ),
            (
                400,
                2029,
                "Request content blocked due to DLP policy violations",
                ErrorKind::Blocked,
                false,
                "DLP",
            ),
            (
                400,
                2030,
                "Response content blocked due to DLP policy violations",
                ErrorKind::Blocked,
                false,
                "DLP",
            ),
            (
                429,
                2045,
                "Spend limit exceeded: rule 'r' (cost limit 1 per 3600s, fixed) for x",
                ErrorKind::QuotaExceeded,
                false,
                "Spend limits",
            ),
            (
                429,
                2099,
                "Spend limit exceeded: rule 'r'",
                ErrorKind::QuotaExceeded,
                false,
                "Spend limits",
            ),
            (
                429,
                2041,
                "Spend limit",
                ErrorKind::QuotaExceeded,
                false,
                "Spend limits",
            ),
            (
                429,
                2003,
                "Rate limited",
                ErrorKind::RateLimited,
                true,
                "Rate limiting",
            ),
            (
                429,
                2018,
                "Wholesale Rate limited",
                ErrorKind::RateLimited,
                true,
                "200 requests a minute",
            ),
        ];
        for (status, code, message, kind, retryable, says) in table {
            let e = from_response(status, &gateway(status, code, message), "m/x");
            assert_eq!((e.kind, e.retryable), (kind, retryable), "{code}: {e:?}");
            assert_eq!(e.upstream_code, Some(code));
            let hint = e.hint.unwrap_or_default();
            assert!(hint.contains(says), "{code} {message}: {hint}");
        }
    }

    #[test]
    fn dlp_findings_reach_data_and_the_hint() {
        let body = r#"{"success":false,"error":[{"code":2029,"message":"Request content blocked due to DLP policy violations"}]}"#;
        let mut e = from_response(400, body, "m/x");
        let header = r#"{"findings":[{"profile":{"context":{},"entry_ids":["e1"],"profile_id":"credit-cards"},"policy_ids":["p1"],"check":"REQUEST"}],"action":"BLOCK"}"#;
        add_dlp_findings(&mut e, header);
        assert_eq!(e.data()["dlp"]["action"], "BLOCK");
        assert!(e.hint.unwrap().contains("credit-cards"));
    }

    #[test]
    fn auth_hints_say_which_credential_was_refused() {
        let gateway_401 = r#"{"success":false,"error":[{"code":2009,"message":"Unauthorized"}]}"#;
        let vendor_401 = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let hint_for = |body: &str, byok: bool, auth: AuthPlan| {
            let mut e = from_response(401, body, "openai/gpt-5");
            refine_auth_hint(&mut e, body, byok, &auth);
            e.hint.unwrap_or_default()
        };
        let compat = AuthPlan::new(Endpoint::Compat, false, false);
        let separate = AuthPlan::new(Endpoint::Compat, false, true);
        let rest = AuthPlan::new(Endpoint::Rest, false, false);
        let hint = hint_for(gateway_401, false, compat);
        assert!(
            hint.contains("api_token (CLOUDFLARE_API_TOKEN) in cf-aig-authorization")
                && hint.contains("set gateway_token")
                && hint.contains("\"AI Gateway - Read\""),
            "{hint}"
        );
        let hint = hint_for(gateway_401, false, separate);
        assert!(
            hint.contains("gateway_token (CLOUDFLARE_AI_GATEWAY_TOKEN) in cf-aig-authorization")
        );
        assert!(hint.contains("not the vendor's key"));
        let hint = hint_for(gateway_401, false, rest);
        assert!(
            hint.contains("in Authorization") && hint.contains("2026-10-06"),
            "{hint}"
        );
        assert!(hint_for(vendor_401, true, separate).contains("stored in the gateway (BYOK)"));
        assert!(hint_for(vendor_401, false, compat).contains("vendor refused the key"));
        let cf_401 = r#"{"errors":[{"code":10000,"message":"Authentication error"}]}"#;
        assert!(hint_for(cf_401, false, compat).contains("CLOUDFLARE_API_TOKEN"));
    }
}
