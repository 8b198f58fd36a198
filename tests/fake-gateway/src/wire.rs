//! Wire vocabulary: error bodies (gateway-wire.md section 5.1), identifiers (section 3.2)
//! and the provider list (section 2.3).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Providers the compat endpoint accepts as `{provider}/{model}` (section 2.3, docs list).
/// The REST spellings of section 10.1 (`google/`, `xai/`, bare `@cf/`) are refused here
/// as an invalid provider, as the REST endpoint refuses compat's.
pub(crate) const PROVIDERS: &[&str] = &[
    "anthropic",
    "openai",
    "groq",
    "mistral",
    "cohere",
    "perplexity",
    "workers-ai",
    "google-ai-studio",
    "google-vertex-ai",
    "grok",
    "deepseek",
    "cerebras",
    "baseten",
    "parallel",
];

/// Providers the REST endpoint accepts (section 10.1): compat's list with Google as
/// `google`, xAI as `xai`, and Workers AI ids bare (`@cf/...`, `@hf/...`, no `workers-ai/`);
/// model aliases `custom/<name>`. Vertex and the other vendors are spelled as on compat
/// (their REST spelling is UNCONFIRMED; the fake accepts compat's).
pub(crate) const REST_PROVIDERS: &[&str] = &[
    "anthropic",
    "openai",
    "groq",
    "mistral",
    "cohere",
    "perplexity",
    "google",
    "google-vertex-ai",
    "xai",
    "deepseek",
    "cerebras",
    "baseten",
    "parallel",
    "custom",
];

/// What a dynamic route resolves to in the fake (section 2.3: `cf-aig-model` / `cf-aig-provider`).
pub(crate) const DYNAMIC_MODEL: &str = "@cf/meta/llama-3.3-70b-instruct-fp8-fast";
pub(crate) const DYNAMIC_PROVIDER: &str = "workers-ai";

/// The gateway's own error, full current shape (section 5.1 "AiGatewayError (current)"):
/// note the singular `error` key holding an array.
pub(crate) fn gateway_error(http: u16, code: u32, message: &str) -> String {
    json!({
        "success": false,
        "result": [],
        "messages": [],
        "error": [{"code": code, "message": message}],
        "name": "AiGatewayError",
        "httpCode": http,
        "internalCode": code,
        "message": message,
        "description": message,
    })
    .to_string()
}

/// The Cloudflare API v4 envelope (section 5.1), used by Workers AI / api.cloudflare.com.
pub(crate) fn v4_error(code: u32, message: &str) -> String {
    json!({
        "result": null,
        "success": false,
        "errors": [{"code": code, "message": message}],
        "messages": [],
    })
    .to_string()
}

fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (std::process::id() as u64).rotate_left(32)
    })
}

/// A non-cryptographic random u64 (splitmix64 over a global counter).
pub(crate) fn rand64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut z = seed().wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A lowercase UUIDv7 (48-bit ms timestamp, version 7, variant 10, random bits), the form
/// of `cf-aig-log-id` / `-event-id` / `-request-id` since 2026-10-08 (section 10.6), e.g.
/// `019ae3f2-7c41-7d2e-9b1a-3f6c0e8d4a21`.
pub(crate) fn uuid_v7() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        & 0xFFFF_FFFF_FFFF;
    let (a, b) = (rand64(), rand64());
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        ms >> 16,
        ms & 0xFFFF,
        a & 0x0FFF,
        (b >> 48) & 0x3FFF | 0x8000,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// uuid-v4-like id (`cf-aig-event-id` / `cf-aig-request-id`).
pub(crate) fn uuid() -> String {
    let hi = rand64();
    let lo = rand64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0x0FFF,
        (lo >> 48) & 0x3FFF | 0x8000,
        lo & 0xFFFF_FFFF_FFFF
    )
}

/// `n` random alphanumerics (Workers AI tool-call ids are `[a-zA-Z0-9]{9}`; `p` padding).
pub(crate) fn alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| ALPHABET[(rand64() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shapes() {
        let a = uuid_v7();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7", "version 7: {a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "variant: {a}");
        assert_eq!(a, a.to_ascii_lowercase());
        assert_ne!(a, uuid_v7());
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, uuid());
    }

    #[test]
    fn error_shapes() {
        let g: serde_json::Value =
            serde_json::from_str(&gateway_error(400, 2008, "Invalid provider")).unwrap();
        assert_eq!(g["error"][0]["code"], 2008);
        assert_eq!(g["name"], "AiGatewayError");
        assert_eq!(g["httpCode"], 400);
        assert_eq!(g["success"], false);
        let v: serde_json::Value =
            serde_json::from_str(&v4_error(10000, "Authentication error")).unwrap();
        assert_eq!(v["errors"][0]["code"], 10000);
        assert!(v["result"].is_null());
    }
}
