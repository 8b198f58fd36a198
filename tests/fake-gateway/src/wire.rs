//! Wire vocabulary: error bodies (gateway-wire.md section 5.1), identifiers (section 3.2)
//! and the provider list (section 2.3).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Providers the compat endpoint accepts as `{provider}/{model}` (section 2.3, docs list;
/// `xai` accepted beside `grok`).
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
    "xai",
    "deepseek",
    "cerebras",
    "baseten",
    "parallel",
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

/// ULID-like id (26 chars of Crockford base32: 48-bit ms timestamp + 80 random bits),
/// e.g. `01JADMCQQQBWH3NXZ5GCRN98DP` (`cf-aig-log-id`).
pub(crate) fn ulid() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        & ((1u128 << 48) - 1);
    let random = ((rand64() as u128) << 16 | (rand64() as u128 & 0xFFFF)) & ((1u128 << 80) - 1);
    let value = ms << 80 | random;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
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
        let a = ulid();
        assert_eq!(a.len(), 26);
        assert!(a.starts_with('0'), "timestamp prefix: {a}");
        assert_ne!(a, ulid());
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
