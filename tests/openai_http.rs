//! The OpenAI-compatible API as HTTP (`curl`): `cf-aig-*` headers, `X-Cfgate-Session`,
//! OpenAI-shaped refusals and CORS for listed browser origins.

#![cfg(unix)]

mod common;

use common::endpoint::{ALLOWED_ORIGIN, MODEL, curl, header, start_endpoint as start};
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn cf_aig_headers_are_the_requests_gateway_options_and_a_session_header_continues_a_conversation()
 {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let auth = format!("authorization: Bearer {}", e.token);
    let chat =
        |text: &str| json!({"model": MODEL, "messages": [{"role": "user", "content": text}]});

    let (status, headers, body) = curl(
        &e,
        "POST",
        "/v1/chat/completions",
        &[
            auth.clone(),
            "cf-aig-event-id: ev-7".into(),
            "cf-aig-metadata: {\"user\":\"u1\"}".into(),
            "x-cfgate-session: web".into(),
        ],
        Some(&chat("first turn")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = chat_requests(&fake);
    assert_eq!(sent[0].header("cf-aig-event-id"), Some("ev-7"));
    assert_eq!(sent[0].header("cf-aig-metadata"), Some("{\"user\":\"u1\"}"));
    // The gateway's response headers come back as a direct call would get them.
    assert_eq!(
        header(&headers, "cf-aig-event-id"),
        Some("ev-7"),
        "{headers:?}"
    );
    assert!(header(&headers, "cf-aig-log-id").is_some(), "{headers:?}");

    // A bad option is refused with the key named, and nothing is sent.
    let (status, _, body) = curl(
        &e,
        "POST",
        "/v1/chat/completions",
        &[auth.clone(), "cf-aig-cache-ttl: soon".into()],
        Some(&chat("x")),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cache_ttl"),
        "{err}"
    );
    assert_eq!(chat_requests(&fake).len(), 1);
    let mut several = chat("x");
    several["n"] = json!(2);
    let (status, _, body) = curl(
        &e,
        "POST",
        "/v1/chat/completions",
        std::slice::from_ref(&auth),
        Some(&several),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(chat_requests(&fake).len(), 1);

    // The session goes on over HTTP, streamed, and is the one JSON-RPC clients see.
    let mut streamed = chat("second turn");
    streamed["stream"] = json!(true);
    let (status, headers, body) = curl(
        &e,
        "POST",
        "/v1/chat/completions",
        &[auth.clone(), "x-cfgate-session: web".into()],
        Some(&streamed),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert_eq!(
        chat_requests(&fake)[1].body["messages"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "history not sent"
    );
    let rpc = tokio::process::Command::new("curl")
        .args(["-sS", "-H", &auth, "-H", "content-type: application/json"])
        .args([
            "--data-binary",
            r#"{"jsonrpc":"2.0","id":1,"method":"cfgate/session","params":{"name":"web"}}"#,
            e.base_url.trim_end_matches("/v1"),
        ])
        .output()
        .await
        .unwrap();
    let session: Value = serde_json::from_slice(&rpc.stdout).unwrap();
    assert_eq!(session["result"]["turns"], 2, "{session}");

    // Refusals are OpenAI-shaped too: no key, an unknown route.
    let (status, headers, body) = curl(&e, "GET", "/v1/models", &[], None).await;
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], "invalid_api_key", "{err}");
    let (status, _, body) = curl(&e, "GET", "/v1/nowhere", std::slice::from_ref(&auth), None).await;
    assert_eq!(status, 404, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert!(err["error"]["message"].is_string(), "{err}");
    assert_eq!(chat_requests(&fake).len(), 2);
}

/// A page from a listed origin can call the API from a browser: its preflight (which
/// carries no token) is answered, and the answer carries `Access-Control-Allow-Origin`;
/// any other origin, or no token, is still refused.
#[tokio::test]
async fn a_listed_browser_origin_gets_its_preflight_and_cors_headers() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let auth = format!("authorization: Bearer {}", e.token);
    let preflight = |origin: &str| {
        vec![
            format!("origin: {origin}"),
            "access-control-request-method: POST".to_string(),
            "access-control-request-headers: authorization, content-type".to_string(),
        ]
    };
    for path in ["/v1/chat/completions", "/"] {
        let (status, headers, _) =
            curl(&e, "OPTIONS", path, &preflight(ALLOWED_ORIGIN), None).await;
        assert_eq!(status, 204, "{path}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some(ALLOWED_ORIGIN)
        );
        assert!(
            header(&headers, "access-control-allow-headers")
                .is_some_and(|h| h.contains("authorization")),
            "{headers:?}"
        );
        let (status, headers, _) =
            curl(&e, "OPTIONS", path, &preflight("http://evil.example"), None).await;
        assert!(status >= 400, "{path}: a foreign preflight got {status}");
        assert_eq!(header(&headers, "access-control-allow-origin"), None);
    }

    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "from a page"}]});
    let (status, headers, answer) = curl(
        &e,
        "POST",
        "/v1/chat/completions",
        &[auth.clone(), format!("origin: {ALLOWED_ORIGIN}")],
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    // A refusal to a listed origin is readable by the page too; a foreign origin is not.
    let (status, headers, _) = curl(
        &e,
        "POST",
        "/v1/chat/completions",
        &[format!("origin: {ALLOWED_ORIGIN}")],
        Some(&body),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    let (status, headers, _) = curl(
        &e,
        "POST",
        "/v1/chat/completions",
        &[auth.clone(), "origin: http://evil.example".into()],
        Some(&body),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    assert_eq!(chat_requests(&fake).len(), 1);
}

/// Continue's autocomplete with `provider: openai` sends no `suffix`: it fills its FIM
/// template in itself and POSTs one `prompt` to `/completions`, streamed, with the
/// template's tokens as `stop` (continuedev/continue `core/llm/llms/OpenAI.ts`
/// `_legacystreamComplete`; the template is `stableCodeFimTemplate`, its default for a model
/// name it does not know, its stops the template's and `getStopTokens.ts`'s common ones).
/// This is that body as it goes out (JSON.stringify drops the options it leaves
/// undefined). cfgate takes the template apart: the model is asked with
/// the code before and after the cursor, not with the template's tokens as code.
#[tokio::test]
async fn continues_templated_fim_prompt_is_completed_between_its_two_sides() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let auth = format!("authorization: Bearer {}", e.token);
    // A chat model opening its answer with a fence, as they do despite being asked not to:
    // Continue's stop list has "```", which must not reach the model (the fake stops at a
    // stop sequence as the real ones do), and the fences are cleaned away.
    fake.push_script(Script {
        chunks: Some(vec![
            "```python\n".into(),
            "a ".into(),
            "+ b".into(),
            "\n```".into(),
        ]),
        ..Script::default()
    });
    let body = json!({
        "model": MODEL,
        "max_tokens": 256,
        "temperature": 0.01,
        "stream": true,
        "stop": ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>",
                 "<|endoftext|>", "</fim_middle>", "</code>",
                 "/src/", "#- coding: utf-8", "```"],
        "prompt": "<fim_prefix>def add(a, b):\n    return <fim_suffix>\n\nprint(add(1, 2))\n<fim_middle>",
    });
    let (status, headers, text) = curl(&e, "POST", "/v1/completions", &[auth], Some(&body)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    let joined: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| {
            let chunk: Value = serde_json::from_str(d).unwrap();
            chunk["choices"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(joined, "a + b", "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 1);
    let prompt = sent[0].body["messages"].to_string();
    assert!(prompt.contains("return "), "prefix not sent: {prompt}");
    assert!(
        prompt.contains("print(add(1, 2))"),
        "suffix not sent: {prompt}"
    );
    assert!(
        !prompt.contains("<fim_"),
        "the template's tokens were sent as code: {prompt}"
    );
    let stop = &sent[0].body["stop"];
    assert_eq!(stop[0], "<fim_prefix>", "{stop}");
    assert!(!stop.to_string().contains("```"), "{stop}");
}

/// Zed's edit predictions with `"provider": "open_ai_compatible_api"` and
/// `"prompt_format": "star_coder"`: one non-streamed POST to the configured `api_url` with
/// the template filled in and at most four stop tokens (zed-industries/zed
/// `crates/edit_prediction/src/fim.rs`, `open_ai_compatible.rs`); Zed parses the answer
/// into a struct that wants `id`, `object`, `created`, `model`, `choices[].text` and a
/// `usage` with its three counts.
#[tokio::test]
async fn zeds_templated_fim_request_gets_the_answer_zed_parses() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let auth = format!("authorization: Bearer {}", e.token);
    fake.push_script(Script {
        content: Some("a + b".into()),
        ..Script::default()
    });
    let body = json!({
        "model": MODEL,
        "prompt": "<fim_prefix>def add(a, b):\n    return <fim_suffix>\n\nprint(add(1, 2))\n<fim_middle>",
        "max_tokens": 256,
        "stop": ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>"],
    });
    let (status, _, text) = curl(&e, "POST", "/v1/completions", &[auth], Some(&body)).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["choices"][0]["text"], "a + b", "{answer}");
    assert_eq!(answer["object"], "text_completion");
    assert!(
        answer["id"].is_string() && answer["model"].is_string(),
        "{answer}"
    );
    assert!(answer["created"].is_u64(), "{answer}");
    for count in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert!(answer["usage"][count].is_u64(), "{count}: {answer}");
    }
    let prompt = chat_requests(&fake)[0].body["messages"].to_string();
    assert!(
        prompt.contains("return ") && prompt.contains("print(add(1, 2))"),
        "{prompt}"
    );
    assert!(
        !prompt.contains("<fim_"),
        "the template's tokens were sent as code: {prompt}"
    );
}

/// A streamed chat that fails before any of its answer (here the upstream stream is cut
/// right after its headers) is an HTTP error with OpenAI's error body, not a `200` whose
/// stream holds nothing but an error event: the client's SDK raises it as what it is (and
/// retries a 502 as it would any). Once the answer has begun, a failure can only be an
/// event (tests/openai.rs `an_upstream_cut_mid_stream_is_an_error_event_the_sdk_raises`).
#[tokio::test]
async fn a_stream_that_fails_before_its_first_piece_is_an_http_error() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let auth = format!("authorization: Bearer {}", e.token);
    fake.push_script(Script {
        chunks: Some(vec!["never ".into(), "seen".into()]),
        fault: Some(Fault::ResetAfterChunks(0)),
        ..Script::default()
    });
    let body = json!({
        "model": MODEL, "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let (status, headers, text) =
        curl(&e, "POST", "/v1/chat/completions", &[auth], Some(&body)).await;
    assert_eq!(status, 502, "{text}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let err: Value = serde_json::from_str(&text).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cut off"),
        "{err}"
    );
}
