//! The OpenAI-compatible API of the loopback endpoint, driven by the official `openai`
//! Python package (a client nobody here wrote) against the real shared daemon and the
//! fake gateway.

#![cfg(unix)]

mod common;

use std::process::Stdio;

use common::*;
use fake_gateway::Script;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const ALLOWED_ORIGIN: &str = "http://localhost:5173";
const MODEL: &str = "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast";

struct Endpoint {
    _daemon: tokio::process::Child,
    _dirs: tempfile::TempDir,
    base_url: String,
    token: String,
}

async fn start(fake: &FakeGateway) -> Endpoint {
    let dirs = tempfile::tempdir().unwrap();
    let run = dirs.path().join("run");
    let config = dirs.path().join("config.toml");
    // One attempt: the 429 case is the client's to see, not cfgate's to retry.
    std::fs::write(
        &config,
        format!(
            "base_url = \"{}\"\nmax_attempts = 1\nlisten_origins = [\"{ALLOWED_ORIGIN}\"]\n",
            fake.compat_base("acc", "gw")
        ),
    )
    .unwrap();
    let data = dirs.path().join("data");
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_RUNTIME_DIR", run.to_str().unwrap()),
        ("CFGATE_DATA_DIR", data.to_str().unwrap()),
        ("CFGATE_CONFIG", config.to_str().unwrap()),
    ];
    let daemon = command(dirs.path(), &env)
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start cfgate daemon");
    let addr_file = run.join("endpoint.addr");
    let deadline = tokio::time::Instant::now() + WAIT;
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file) {
            if text.ends_with('\n') {
                break text.trim().to_string();
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no endpoint.addr");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let token = std::fs::read_to_string(run.join("endpoint.token"))
        .unwrap()
        .trim()
        .to_string();
    Endpoint {
        _daemon: daemon,
        _dirs: dirs,
        base_url: format!("http://{addr}/v1"),
        token,
    }
}

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/scripts/openai_client.py"
);

/// Runs one scenario of the SDK script; returns what it printed.
async fn sdk(e: &Endpoint, key: &str, scenario: &str) -> Value {
    let out = tokio::process::Command::new("python3")
        .args([SCRIPT, &e.base_url, key, scenario, MODEL])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("the openai client finished")
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{scenario}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test]
async fn the_openai_sdk_lists_models_and_chats_whole_and_streamed() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;

    let models = sdk(&e, &e.token, "models").await;
    let ids: Vec<&str> = models["ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(ids.contains(&MODEL), "{models}");
    assert_eq!(models["first"]["object"], "model", "{models}");
    assert!(models["first"]["owned_by"].is_string(), "{models}");
    assert_eq!(models["retrieved"], MODEL, "{models}");
    assert!(
        models["first"]["cost_in"].is_number(),
        "cfgate's details kept: {models}"
    );

    let chat = sdk(&e, &e.token, "chat").await;
    assert_eq!(chat["content"], "echo: hello there", "{chat}");
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["finish"], "stop");
    assert!(
        chat["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{chat}"
    );
    let sent = chat_requests(&fake);
    assert_eq!(sent[0].body["model"], MODEL);
    assert_eq!(
        sent[0].body["messages"],
        json!([{"role": "user", "content": "hello there"}])
    );

    let streamed = sdk(&e, &e.token, "stream").await;
    assert_eq!(streamed["joined"], "echo: stream me", "{streamed}");
    assert!(
        streamed["parts"].as_array().unwrap().len() >= 2,
        "not streamed: {streamed}"
    );
    assert_eq!(streamed["roles"], json!(["assistant"]), "{streamed}");
    assert_eq!(streamed["finish"], "stop");
    assert!(
        streamed["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "no usage chunk: {streamed}"
    );
    let sent = chat_requests(&fake);
    assert_eq!(sent[1].body["stream"], true);
    // Content-part arrays pass through as the client wrote them.
    assert_eq!(
        sent[1].body["messages"][0]["content"],
        json!([{"type": "text", "text": "stream me"}])
    );
}

fn weather_call() -> Value {
    json!([{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
}

#[tokio::test]
async fn the_openai_sdk_gets_tool_calls_json_and_fim_completions() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;

    fake.push_script(Script {
        tool_calls: Some(weather_call()),
        content: Some(String::new()),
        ..Script::default()
    });
    let tools = sdk(&e, &e.token, "tools").await;
    assert_eq!(tools["name"], "get_weather", "{tools}");
    assert_eq!(tools["arguments"], json!({"city": "Paris"}));
    assert_eq!(tools["id"], "call_1");
    assert_eq!(tools["finish"], "tool_calls");
    assert_eq!(
        chat_requests(&fake)[0].body["tools"][0]["function"]["name"],
        "get_weather"
    );

    fake.push_script(Script {
        tool_calls: Some(weather_call()),
        content: Some(String::new()),
        ..Script::default()
    });
    let assembled = sdk(&e, &e.token, "tools_stream").await;
    assert_eq!(assembled["name"], "get_weather", "{assembled}");
    assert_eq!(assembled["arguments"], json!({"city": "Paris"}));
    assert_eq!(assembled["finish"], "tool_calls");

    fake.push_script(Script {
        content: Some("{\"answer\": 42}".into()),
        ..Script::default()
    });
    let json_answer = sdk(&e, &e.token, "json").await;
    assert_eq!(
        json_answer["parsed"],
        json!({"answer": 42}),
        "{json_answer}"
    );
    assert_eq!(
        chat_requests(&fake)[2].body["response_format"],
        json!({"type": "json_object"})
    );

    // Fill in the middle over a chat-only gateway: cfgate's completion prompt carries both
    // sides, and its cleaning turns the model's fenced answer into the insertion.
    fake.push_script(Script {
        content: Some("```python\na + b\n```".into()),
        ..Script::default()
    });
    let fim = sdk(&e, &e.token, "completion").await;
    assert_eq!(fim["text"], "a + b", "{fim}");
    assert_eq!(fim["object"], "text_completion");
    let sent = chat_requests(&fake);
    let prompt = sent[3].body["messages"].to_string();
    assert!(prompt.contains("return "), "prefix not sent: {prompt}");
    assert!(
        prompt.contains("print(add(1, 2))"),
        "suffix not sent: {prompt}"
    );

    fake.push_script(Script {
        chunks: Some(vec!["4".into(), "2".into()]),
        ..Script::default()
    });
    let streamed = sdk(&e, &e.token, "completion_stream").await;
    assert_eq!(streamed["joined"], "42", "{streamed}");
    assert_eq!(chat_requests(&fake)[4].body["stream"], true);
}

#[tokio::test]
async fn the_openai_sdk_raises_its_own_exceptions() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;

    let no_key = sdk(&e, "wrong-key", "error_key").await;
    assert_eq!(no_key["exception"], "AuthenticationError", "{no_key}");
    assert_eq!(no_key["status"], 401);
    assert!(
        !no_key.to_string().contains(&e.token),
        "the token in an error"
    );

    let bad = sdk(&e, &e.token, "error_request").await;
    assert_eq!(bad["exception"], "BadRequestError", "{bad}");
    assert!(
        bad["message"].as_str().unwrap().contains("messages"),
        "{bad}"
    );

    fake.push_script(Script {
        headers: vec![("retry-after".into(), "7".into())],
        ..Script::gateway_rate_limit()
    });
    let limited = sdk(&e, &e.token, "error_chat").await;
    assert_eq!(limited["exception"], "RateLimitError", "{limited}");
    assert_eq!(limited["status"], 429);
    assert_eq!(limited["retry_after"], "7", "{limited}");
    assert_eq!(
        limited["body"]["code"], 2003,
        "Cloudflare's code kept: {limited}"
    );
    assert!(
        limited["message"].as_str().unwrap().contains("hint:"),
        "{limited}"
    );
    assert!(
        chat_requests(&fake).len() == 1,
        "a refused call reached the gateway"
    );
}

/// A stream cut upstream after it began ends with OpenAI's `{"error": ...}` event, which the
/// SDK raises as its own error, after the text that did arrive.
#[tokio::test]
async fn an_upstream_cut_mid_stream_is_an_error_event_the_sdk_raises() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    fake.push_script(Script {
        chunks: Some(vec!["one ".into(), "two ".into(), "three".into()]),
        fault: Some(Fault::ResetAfterChunks(2)),
        ..Script::default()
    });
    let cut = sdk(&e, &e.token, "stream_cut").await;
    assert_eq!(cut["exception"], "APIError", "{cut}");
    assert_eq!(cut["parts"], json!(["one ", "two "]), "{cut}");
    assert!(
        cut["message"].as_str().unwrap().contains("cut off"),
        "{cut}"
    );
}

#[tokio::test]
async fn a_client_closing_mid_stream_drops_the_upstream_request() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    fake.push_script(Script {
        chunks: Some(vec!["first ".into()]),
        hold_open: true,
        ..Script::default()
    });
    let mut client = tokio::process::Command::new("python3")
        .args([SCRIPT, &e.base_url, &e.token, "close_mid_stream", MODEL])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut lines = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the first chunk arrived")
        .unwrap()
        .expect("a line");
    let first: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(first["first"], "first ");
    assert!(
        fake.wait_for_stream_dropped(WAIT).await,
        "the upstream stream was not dropped when the client closed"
    );
    drop(client.stdin.take());
    tokio::time::timeout(WAIT, client.wait())
        .await
        .unwrap()
        .unwrap();
}

/// `curl` against the endpoint: (status, lower-cased headers, body).
async fn curl(
    e: &Endpoint,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&Value>,
) -> (u16, Vec<(String, String)>, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-i", "-X", method]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json"])
            .args(["--data-binary", &body.to_string()]);
    }
    cmd.arg(format!("{}{path}", e.base_url.trim_end_matches("/v1")));
    let out = tokio::time::timeout(WAIT, cmd.kill_on_drop(true).output())
        .await
        .expect("curl finished")
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

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

#[tokio::test]
async fn the_openai_npm_package_streams_a_chat_and_completes_in_the_middle() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/openai-node");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/openai")
            .exists(),
        "the openai npm package is not installed: run .ci/install-tools"
    );
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let node = |scenario: &'static str| {
        let out = tokio::process::Command::new("node")
            .args([
                &format!("{dir}/client.mjs"),
                &e.base_url,
                &e.token,
                scenario,
                MODEL,
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        async move {
            let out = tokio::time::timeout(WAIT, out)
                .await
                .expect("node finished")
                .expect("node runs");
            assert!(
                out.status.success(),
                "{scenario}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    let streamed = node("stream").await;
    assert_eq!(streamed["joined"], "echo: from node", "{streamed}");
    assert!(
        streamed["parts"].as_array().unwrap().len() >= 2,
        "{streamed}"
    );
    assert!(
        streamed["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{streamed}"
    );

    fake.push_script(Script {
        content: Some("```js\n42\n```".into()),
        ..Script::default()
    });
    let fim = node("completion").await;
    assert_eq!(fim["text"], "42", "{fim}");
    assert_eq!(fim["object"], "text_completion");
}

/// `llm` (PyPI), configured through its documented `extra-openai-models.yaml`, as
/// docs/openai.md says.
#[tokio::test]
async fn the_llm_cli_configured_as_documented_prints_the_answer() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("extra-openai-models.yaml"),
        format!(
            "- model_id: cfgate-llama\n  model_name: {MODEL}\n  api_base: \"{}\"\n  api_key_name: cfgate\n",
            e.base_url
        ),
    )
    .unwrap();
    // What `llm keys set cfgate` writes.
    std::fs::write(
        home.path().join("keys.json"),
        json!({"cfgate": e.token}).to_string(),
    )
    .unwrap();
    let out = tokio::process::Command::new("llm")
        .args(["-m", "cfgate-llama", "hello from llm"])
        .env("LLM_USER_PATH", home.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("llm finished")
        .expect("llm runs (pip install llm)");
    assert!(
        out.status.success(),
        "llm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "echo: hello from llm"
    );
    assert_eq!(chat_requests(&fake)[0].body["model"], MODEL);
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
