//! Model id routing: what the user types to what the chosen endpoint accepts.
//!
//! The two OpenAI-compatible endpoints spell some vendors differently (wire notes 10.1):
//! the compat endpoint picks the vendor from the first path segment, so a Workers AI id is
//! `workers-ai/@cf/...` there and a bare `@cf/...` is refused with 2008 "Invalid provider";
//! the REST endpoint wants the bare `@cf/...`, and calls Google `google/` and xAI `xai/`
//! where compat says `google-ai-studio/` and `grok/`. A user may write either spelling; what
//! is sent is the endpoint's own. Routing is a pure function so that every accepted and
//! refused form, on both endpoints, sits in one table test; docs/gateway.md has the same
//! table with its sources.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// Which of the gateway's OpenAI-compatible endpoints chat goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `gateway.ai.cloudflare.com/v1/{account}/{gateway}/compat` (Agno's; deprecated by
    /// Cloudflare for single-model calls in May 2026 but still served).
    #[default]
    Compat,
    /// `api.cloudflare.com/client/v4/accounts/{account}/ai/v1` with `cf-aig-gateway-id`.
    Rest,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Compat => "compat",
            Endpoint::Rest => "rest",
        }
    }
}

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

impl From<RouteError> for Error {
    fn from(err: RouteError) -> Self {
        Error::new(ErrorKind::InvalidModel, err.to_string()).with_hint(ACCEPTED_FORMS)
    }
}

/// Shown with every refused id, so the user sees at once what would have worked.
pub const ACCEPTED_FORMS: &str = "accepted forms: `@cf/<author>/<model>` (Workers AI, also \
`workers-ai/@cf/...`), `<vendor>/<model>` such as `openai/gpt-5-mini`, \
`google-ai-studio/gemini-2.5-flash` (or `google/...`), `grok/...` (or `xai/...`) or \
`anthropic/claude-sonnet-4-5`, `dynamic/<route>` and `custom/<alias>`; either endpoint's \
spelling works, cfgate sends the one the endpoint wants";

/// Vendor prefixes spelled differently on the two endpoints: (compat, REST). Sources in
/// docs/gateway.md ("Model ids on each endpoint"). Vendors not listed here (OpenAI, Vertex,
/// Groq, Mistral, ..., `dynamic/`, `custom/`) are sent as written: either they are spelled
/// alike, or the REST spelling is unconfirmed.
const PREFIXES: &[(&str, &str)] = &[
    ("workers-ai/@cf/", "@cf/"),
    ("workers-ai/@hf/", "@hf/"),
    ("google-ai-studio/", "google/"),
    ("grok/", "xai/"),
];

/// Turns a user's model id into the id `endpoint` expects.
pub fn route_model(model: &str, endpoint: Endpoint) -> Result<String, RouteError> {
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
    let (vendor, name) = match id.split_once('/') {
        None => return refuse("has no vendor prefix"),
        Some(parts) => parts,
    };
    if vendor.is_empty() {
        return refuse("has an empty vendor before `/`");
    }
    let workers_ai_name = match (vendor, name.split_once('/')) {
        ("@cf" | "@hf", _) => Some(name),
        ("workers-ai", Some(("@cf" | "@hf", rest))) => Some(rest),
        _ => None,
    };
    if workers_ai_name.is_some_and(str::is_empty) || name.is_empty() {
        return refuse("names no model after the vendor");
    }
    let (from, to) = PREFIXES
        .iter()
        .map(|&(compat, rest)| match endpoint {
            Endpoint::Compat => (rest, compat),
            Endpoint::Rest => (compat, rest),
        })
        .find(|(from, _)| id.starts_with(from))
        .unwrap_or(("", ""));
    let respelled = format!("{to}{}", &id[from.len()..]);
    Ok(anthropic_version(&respelled, endpoint))
}

/// Anthropic's own ids (and so compat's) write a model version with a hyphen,
/// `claude-sonnet-4-5`; the REST endpoint uses Cloudflare's catalog ids, `claude-sonnet-4.5`
/// (wire notes 10.1: the hyphenated form was refused there with 7003). Only a trailing
/// `-<digit>-<digit>` pair is a version: dated snapshots and older names pass unchanged.
fn anthropic_version(id: &str, endpoint: Endpoint) -> String {
    let Some(name) = id.strip_prefix("anthropic/") else {
        return id.to_string();
    };
    let bytes = name.as_bytes();
    let n = bytes.len();
    let (sep_from, sep_to) = match endpoint {
        Endpoint::Compat => (b'.', '-'),
        Endpoint::Rest => (b'-', '.'),
    };
    let versioned = n >= 5
        && bytes[n - 4] == b'-'
        && bytes[n - 3].is_ascii_digit()
        && bytes[n - 2] == sep_from
        && bytes[n - 1].is_ascii_digit()
        && !bytes[n - 5].is_ascii_digit();
    if !versioned {
        return id.to_string();
    }
    format!("anthropic/{}{sep_to}{}", &name[..n - 2], &name[n - 1..])
}

/// Two ids name the same model, whichever endpoint's spelling each uses.
pub fn same_model(a: &str, b: &str) -> bool {
    match (
        route_model(a, Endpoint::Compat),
        route_model(b, Endpoint::Compat),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A hint for ids that look right but name something the vendor does not serve.
pub fn model_hint(routed: &str) -> Option<&'static str> {
    let lower = routed.to_ascii_lowercase();
    let workers_ai = lower.strip_prefix("workers-ai/").unwrap_or(&lower);
    if workers_ai.starts_with("@cf/google/gemini") {
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

    /// (written, sent on compat, sent on REST); `None` = refused on both.
    const TABLE: &[(&str, Option<(&str, &str)>)] = &[
        (
            "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
            Some((
                "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast",
                "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
            )),
        ),
        (
            "  @cf/google/gemma-4-26b-a4b-it ",
            Some((
                "workers-ai/@cf/google/gemma-4-26b-a4b-it",
                "@cf/google/gemma-4-26b-a4b-it",
            )),
        ),
        (
            "workers-ai/@cf/meta/llama-3.1-8b-instruct",
            Some((
                "workers-ai/@cf/meta/llama-3.1-8b-instruct",
                "@cf/meta/llama-3.1-8b-instruct",
            )),
        ),
        (
            "@hf/nousresearch/hermes-2-pro-mistral-7b",
            Some((
                "workers-ai/@hf/nousresearch/hermes-2-pro-mistral-7b",
                "@hf/nousresearch/hermes-2-pro-mistral-7b",
            )),
        ),
        (
            "openai/gpt-5-mini",
            Some(("openai/gpt-5-mini", "openai/gpt-5-mini")),
        ),
        (
            "google-ai-studio/gemini-2.5-flash",
            Some((
                "google-ai-studio/gemini-2.5-flash",
                "google/gemini-2.5-flash",
            )),
        ),
        (
            "google/gemini-2.5-flash",
            Some((
                "google-ai-studio/gemini-2.5-flash",
                "google/gemini-2.5-flash",
            )),
        ),
        ("grok/grok-4.3", Some(("grok/grok-4.3", "xai/grok-4.3"))),
        ("xai/grok-4.3", Some(("grok/grok-4.3", "xai/grok-4.3"))),
        (
            "anthropic/claude-sonnet-4-5",
            Some(("anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4.5")),
        ),
        (
            "anthropic/claude-sonnet-4.5",
            Some(("anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4.5")),
        ),
        (
            "anthropic/claude-opus-4-1-20250805",
            Some((
                "anthropic/claude-opus-4-1-20250805",
                "anthropic/claude-opus-4-1-20250805",
            )),
        ),
        (
            "anthropic/claude-3-haiku",
            Some(("anthropic/claude-3-haiku", "anthropic/claude-3-haiku")),
        ),
        // Vertex and the other vendors: REST spelling unconfirmed, sent as written.
        (
            "google-vertex-ai/google/gemini-2.5-pro",
            Some((
                "google-vertex-ai/google/gemini-2.5-pro",
                "google-vertex-ai/google/gemini-2.5-pro",
            )),
        ),
        (
            "groq/llama-3.1-8b-instant",
            Some(("groq/llama-3.1-8b-instant", "groq/llama-3.1-8b-instant")),
        ),
        (
            "dynamic/customer-support",
            Some(("dynamic/customer-support", "dynamic/customer-support")),
        ),
        ("custom/fast", Some(("custom/fast", "custom/fast"))),
        ("kimi-k2.6", None),
        ("gpt-5", None),
        ("", None),
        ("   ", None),
        ("@cf/", None),
        ("workers-ai/@cf/", None),
        ("/gpt-5", None),
        ("openai/", None),
        ("openai/gpt 5", None),
    ];

    #[test]
    fn routes_every_form_on_each_endpoint() {
        for (input, want) in TABLE {
            for (endpoint, sent) in [
                (Endpoint::Compat, want.map(|w| w.0)),
                (Endpoint::Rest, want.map(|w| w.1)),
            ] {
                let got = route_model(input, endpoint);
                match sent {
                    Some(w) => assert_eq!(got.as_deref(), Ok(w), "{input:?} on {endpoint:?}"),
                    None => assert!(got.is_err(), "{input:?} should be refused: {got:?}"),
                }
            }
        }
    }

    #[test]
    fn either_spelling_round_trips() {
        for (input, want) in TABLE {
            let Some((compat, rest)) = want else { continue };
            assert_eq!(route_model(rest, Endpoint::Compat).as_deref(), Ok(*compat));
            assert_eq!(route_model(compat, Endpoint::Rest).as_deref(), Ok(*rest));
            assert!(
                same_model(input, rest) && same_model(input, compat),
                "{input}"
            );
        }
        assert!(!same_model("openai/gpt-5", "openai/gpt-5-mini"));
    }

    #[test]
    fn refusal_names_the_accepted_forms() {
        let err = route_model("kimi-k2.6", Endpoint::Compat)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kimi-k2.6"), "{err}");
        assert!(err.contains("@cf/"), "{err}");
        assert!(err.contains("dynamic/<route>"), "{err}");
    }

    #[test]
    fn gemini_on_workers_ai_gets_a_hint() {
        for id in [
            "workers-ai/@cf/google/gemini-2.0-flash",
            "@cf/google/gemini-2.0-flash",
        ] {
            assert!(model_hint(id).unwrap().contains("google-ai-studio/"));
        }
        assert!(model_hint("workers-ai/@cf/google/gemma-4-26b-a4b-it").is_none());
    }
}
