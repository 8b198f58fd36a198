//! The refusals of December 2026 (section 10), as scripts: each with the status, body and
//! headers the wire notes give, so tests see what a user of an up-to-date gateway sees.

use serde_json::json;

use crate::Script;
use crate::wire::gateway_error;

fn refusal(status: u16, code: u32, message: &str, headers: Vec<(String, String)>) -> Script {
    Script {
        status: Some(status),
        body: Some(gateway_error(status, code, message)),
        headers,
        ..Script::default()
    }
}

impl Script {
    /// Guardrails blocked the prompt (424/2016) or the answer (424/2017), section 10.3.
    pub fn guardrails_block(prompt: bool) -> Script {
        if prompt {
            refusal(
                424,
                2016,
                "Prompt blocked due to security configurations",
                vec![],
            )
        } else {
            refusal(
                424,
                2017,
                "Response blocked due to security configurations",
                vec![],
            )
        }
    }

    /// The Guardrails scanner is out of credits (402/2021), section 10.3.
    pub fn guardrails_out_of_credits() -> Script {
        refusal(
            402,
            2021,
            "Guardrails scanner: insufficient credits",
            vec![],
        )
    }

    /// The Guardrails scanner is unavailable while a Block rule applies (503/7013).
    pub fn guardrails_unavailable() -> Script {
        refusal(503, 7013, "Guardrails scanner unavailable", vec![])
    }

    /// DLP blocked the prompt (2029) or the answer (2030), status 400, with the
    /// `cf-aig-dlp` findings header (section 10.4).
    pub fn dlp_block(request: bool) -> Script {
        let (code, message, check) = if request {
            (
                2029,
                "Request content blocked due to DLP policy violations",
                "REQUEST",
            )
        } else {
            (
                2030,
                "Response content blocked due to DLP policy violations",
                "RESPONSE",
            )
        };
        let findings = json!({
            "findings": [{
                "profile": {"context": {}, "entry_ids": ["a1b2c3"], "profile_id": "credit-card-numbers"},
                "policy_ids": ["policy-1"],
                "check": check,
            }],
            "action": "BLOCK",
        });
        refusal(
            400,
            code,
            message,
            vec![("cf-aig-dlp".into(), findings.to_string())],
        )
    }

    /// A spend limit rule (429, "Spend limit exceeded", code 2045 as observed, no
    /// `Retry-After`), section 10.5.
    pub fn spend_limit() -> Script {
        refusal(
            429,
            2045,
            "Spend limit exceeded: rule 'daily' (cost limit 5 per 3600s, fixed) for gateway",
            vec![],
        )
    }

    /// The gateway's own rate limit (429/2003 "Rate limited", no `Retry-After`).
    pub fn gateway_rate_limit() -> Script {
        refusal(429, 2003, "Rate limited", vec![])
    }

    /// The Unified Billing rate limit (200 requests a minute per gateway, 429/2018).
    pub fn unified_billing_rate_limit() -> Script {
        refusal(429, 2018, "Wholesale Rate limited", vec![])
    }
}
