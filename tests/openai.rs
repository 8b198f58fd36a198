//! The OpenAI-compatible API of the loopback endpoint, driven by real clients nobody here
//! wrote: the official `openai` Python package, the `openai` npm package and the `llm` CLI,
//! against the real shared daemon and the fake gateway.

#![cfg(unix)]

mod common;

use std::process::Stdio;

use common::endpoint::{Endpoint, MODEL, client_json, run_client, start_endpoint as start};
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/scripts/openai_client.py"
);

/// Runs one scenario of the SDK script; returns what it printed.
async fn sdk(e: &Endpoint, key: &str, scenario: &str) -> Value {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args([SCRIPT, &e.base_url, key, scenario, MODEL]);
    client_json(cmd, scenario).await
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

/// The gateway refusing cfgate's own Cloudflare token is not the client's 401 (which the
/// SDK raises as "your API key is wrong"): a 502 the SDK raises as its server error, whose
/// type and message say whose credentials were refused, with cfgate's hint and Cloudflare's
/// code; and `x-should-retry: false` keeps the SDK's default retries from asking again.
#[tokio::test]
async fn the_gateway_refusing_cfgates_token_is_a_502_the_sdk_does_not_retry() {
    let fake = FakeGateway::start_with(Config {
        api_token: Some("not-cfgates-token".into()),
        ..Config::default()
    })
    .await;
    let e = start(&fake).await;

    let refused = sdk(&e, &e.token, "error_chat_default_retries").await;
    assert_eq!(refused["exception"], "InternalServerError", "{refused}");
    assert_eq!(refused["status"], 502, "{refused}");
    assert_eq!(
        refused["body"]["type"], "upstream_authentication_error",
        "{refused}"
    );
    assert_eq!(
        refused["body"]["code"], 10000,
        "Cloudflare's code kept: {refused}"
    );
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("upstream refused cfgate's credentials") && message.contains("hint:"),
        "{refused}"
    );
    assert_eq!(
        chat_requests(&fake).len(),
        1,
        "the SDK retried a refusal that only a new token can end"
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
        let mut cmd = tokio::process::Command::new("node");
        cmd.args([
            &format!("{dir}/client.mjs"),
            &e.base_url,
            &e.token,
            scenario,
            MODEL,
        ]);
        client_json(cmd, scenario)
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
    let mut llm = tokio::process::Command::new("llm");
    llm.args(["-m", "cfgate-llama", "hello from llm"])
        .env("LLM_USER_PATH", home.path());
    let out = run_client(llm, "llm (pip install llm)", WAIT).await;
    assert_eq!(out.trim(), "echo: hello from llm");
    assert_eq!(chat_requests(&fake)[0].body["model"], MODEL);
}
