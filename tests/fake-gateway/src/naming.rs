//! Which model ids each endpoint routes (sections 2.3, 8.3 and 10.1), and what it answers
//! for the others. The two endpoints spell some vendors differently: compat refuses the
//! REST spellings (`@cf/...` bare, `google/`, `xai/`) and REST refuses compat's
//! (`workers-ai/`, `google-ai-studio/`, `grok/`), each as an invalid provider (2008).

use crate::server::Endpoint;
use crate::wire::{
    DYNAMIC_MODEL, DYNAMIC_PROVIDER, PROVIDERS, REST_PROVIDERS, gateway_error, v4_error,
};

/// A refusal: HTTP status and body.
pub(crate) type Refusal = (u16, String);

/// The headers a routed model adds to the answer (a dynamic route names what it chose),
/// or the refusal.
pub(crate) fn route(model: &str, endpoint: Endpoint) -> Result<Vec<(String, String)>, Refusal> {
    let invalid_provider = || (400, gateway_error(400, 2008, "Invalid provider"));
    let Some((provider, name)) = model.split_once('/') else {
        return Err((
            400,
            gateway_error(400, 2005, "Failed to get response from provider"),
        ));
    };
    let provider = provider.to_ascii_lowercase();
    if provider == "dynamic" {
        return Ok(vec![
            ("cf-aig-model".into(), DYNAMIC_MODEL.into()),
            ("cf-aig-provider".into(), DYNAMIC_PROVIDER.into()),
        ]);
    }
    let workers_ai_name = match endpoint {
        Endpoint::Compat if provider == "workers-ai" => Some(name),
        Endpoint::Rest if provider == "@cf" || provider == "@hf" => Some(model),
        _ => None,
    };
    if let Some(name) = workers_ai_name {
        // Workers AI serves Gemma, not Gemini; ids must be `@cf/..` or `@hf/..`.
        let known_form = name.starts_with("@cf/") || name.starts_with("@hf/");
        if !known_form || name.to_ascii_lowercase().contains("gemini") {
            return Err((400, v4_error(5007, "No such model")));
        }
        return Ok(vec![]);
    }
    let known = match endpoint {
        Endpoint::Compat => PROVIDERS,
        Endpoint::Rest => REST_PROVIDERS,
    };
    if !known.contains(&provider.as_str()) {
        return Err(invalid_provider());
    }
    if endpoint == Endpoint::Rest && provider == "anthropic" && hyphenated_version(name) {
        // Observed (section 10.1): REST takes the catalog's dotted ids.
        return Err((404, v4_error(7003, "Model not found")));
    }
    Ok(vec![])
}

/// `claude-sonnet-4-5`: a trailing `-<digit>-<digit>` version (REST wants `4.5`).
fn hyphenated_version(name: &str) -> bool {
    let b = name.as_bytes();
    let n = b.len();
    n >= 5
        && b[n - 4] == b'-'
        && b[n - 3].is_ascii_digit()
        && b[n - 2] == b'-'
        && b[n - 1].is_ascii_digit()
        && !b[n - 5].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_refuses_the_other_spelling() {
        let table = [
            ("workers-ai/@cf/meta/llama-3.1-8b-instruct", true, false),
            ("@cf/meta/llama-3.1-8b-instruct", false, true),
            ("google-ai-studio/gemini-2.5-flash", true, false),
            ("google/gemini-2.5-flash", false, true),
            ("grok/grok-4.3", true, false),
            ("xai/grok-4.3", false, true),
            ("anthropic/claude-sonnet-4-5", true, false),
            ("anthropic/claude-sonnet-4.5", true, true),
            ("openai/gpt-5-mini", true, true),
            ("dynamic/support", true, true),
            ("custom/fast", false, true),
        ];
        for (model, compat, rest) in table {
            assert_eq!(
                route(model, Endpoint::Compat).is_ok(),
                compat,
                "{model} on compat"
            );
            assert_eq!(
                route(model, Endpoint::Rest).is_ok(),
                rest,
                "{model} on REST"
            );
        }
    }
}
