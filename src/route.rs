//! Model id routing: what the user types to what the gateway's unified API accepts.
//!
//! The compat endpoint picks the vendor from the first path segment of the model id, so
//! a Workers AI id (`@cf/...`) on its own would be read as the vendor `@cf` and refused
//! with 2008 "Invalid provider". Routing is a pure function so that every accepted and
//! refused form sits in one table test.

use std::fmt;

/// Why a model id cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub model: String,
    pub reason: &'static str,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model id {:?} {}; {}",
            self.model, self.reason, ACCEPTED_FORMS
        )
    }
}

impl std::error::Error for RouteError {}

/// Shown with every refused id, so the user sees at once what would have worked.
pub const ACCEPTED_FORMS: &str = "accepted forms: `@cf/<author>/<model>` (Workers AI), \
`workers-ai/@cf/...`, `<vendor>/<model>` such as `openai/gpt-5-mini`, \
`google-ai-studio/gemini-2.5-flash` or `anthropic/claude-sonnet-4-5`, and `dynamic/<route>`";

/// Turns a user's model id into the id the gateway's unified API expects.
pub fn route_model(model: &str) -> Result<String, RouteError> {
    let id = model.trim();
    let refuse = |reason| {
        Err(RouteError {
            model: model.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return refuse("is empty");
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("contains white space");
    }
    if id.starts_with("@cf/") {
        if id.len() == "@cf/".len() {
            return refuse("names no model after `@cf/`");
        }
        return Ok(format!("workers-ai/{id}"));
    }
    match id.split_once('/') {
        None => refuse("has no vendor prefix"),
        Some(("", _)) => refuse("has an empty vendor before `/`"),
        Some((_, "")) => refuse("names no model after the vendor"),
        Some(_) => Ok(id.to_string()),
    }
}

/// A hint for ids that look right but name something the vendor does not serve.
pub fn model_hint(routed: &str) -> Option<&'static str> {
    let lower = routed.to_ascii_lowercase();
    if lower.starts_with("workers-ai/@cf/google/gemini") {
        return Some(
            "Workers AI serves Google's Gemma models, not Gemini; for Gemini use \
`google-ai-studio/<model>` (e.g. google-ai-studio/gemini-2.5-flash) with the key stored in \
the gateway (BYOK)",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_form() {
        let table: &[(&str, Option<&str>)] = &[
            (
                "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
                Some("workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast"),
            ),
            (
                "  @cf/google/gemma-4-26b-a4b-it ",
                Some("workers-ai/@cf/google/gemma-4-26b-a4b-it"),
            ),
            (
                "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast",
                Some("workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast"),
            ),
            ("openai/gpt-5-mini", Some("openai/gpt-5-mini")),
            (
                "google-ai-studio/gemini-2.5-flash",
                Some("google-ai-studio/gemini-2.5-flash"),
            ),
            (
                "anthropic/claude-sonnet-4-5",
                Some("anthropic/claude-sonnet-4-5"),
            ),
            ("dynamic/customer-support", Some("dynamic/customer-support")),
            (
                "groq/llama-3.1-8b-instant",
                Some("groq/llama-3.1-8b-instant"),
            ),
            ("kimi-k2.6", None),
            ("gpt-5", None),
            ("", None),
            ("   ", None),
            ("@cf/", None),
            ("/gpt-5", None),
            ("openai/", None),
            ("openai/gpt 5", None),
        ];
        for (input, want) in table {
            let got = route_model(input);
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(*w), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} should be refused: {got:?}"),
            }
        }
    }

    #[test]
    fn refusal_names_the_accepted_forms() {
        let err = route_model("kimi-k2.6").unwrap_err().to_string();
        assert!(err.contains("kimi-k2.6"), "{err}");
        assert!(err.contains("@cf/"), "{err}");
        assert!(err.contains("dynamic/<route>"), "{err}");
    }

    #[test]
    fn gemini_on_workers_ai_gets_a_hint() {
        let hint = model_hint("workers-ai/@cf/google/gemini-2.0-flash").unwrap();
        assert!(hint.contains("google-ai-studio/"));
        assert!(model_hint("workers-ai/@cf/google/gemma-4-26b-a4b-it").is_none());
    }
}
