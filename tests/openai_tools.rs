//! Published tools on the OpenAI-compatible endpoint, each set up as docs/openai.md tells
//! its users: Continue's command line agent `cn` and the Vercel AI SDK's OpenAI-compatible
//! provider (npm, `tests/scripts/openai-tools`, installed by `.ci/install-tools`), against
//! the real shared daemon and the fake gateway.

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};

use common::endpoint::{Endpoint, MODEL, client_json, run_client, start_endpoint as start};
use common::*;
use serde_json::{Value, json};

/// The address the documentation's examples use, replaced by the test endpoint's.
const DOC_BASE_URL: &str = "http://127.0.0.1:8765/v1";

fn tools_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/openai-tools");
    assert!(
        dir.join("node_modules/@continuedev/cli").exists()
            && dir.join("node_modules/@ai-sdk/openai-compatible").exists(),
        "the npm packages are not installed: run .ci/install-tools"
    );
    dir
}

/// The first fenced `lang` block after the heading `heading` in docs/openai.md.
fn doc_block(heading: &str, lang: &str) -> String {
    let doc = include_str!("../docs/openai.md");
    let section = &doc[doc.find(heading).expect("the doc's section")..];
    let open = format!("```{lang}\n");
    let start = section.find(&open).expect("a block in the section") + open.len();
    let len = section[start..].find("```").expect("the block's end");
    section[start..start + len].to_string()
}

/// A command with nothing of this machine's environment but `PATH`, and `HOME` a
/// folder of the test's, as on a fresh CI runner.
fn clean_command(program: &Path, home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CI", "true");
    cmd
}

/// `cn -p` (print mode: no terminal UI, no stdin) with `~/.continue/config.yaml` the
/// documentation's block, the key as the secret it names in `~/.continue/.env`, no
/// Continue login and no network but the loopback.
#[tokio::test]
async fn continues_cli_configured_as_documented_prints_the_answer() {
    let cn = tools_dir().join("node_modules/.bin/cn");
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;

    let home = tempfile::tempdir().unwrap();
    let continue_dir = home.path().join(".continue");
    std::fs::create_dir(&continue_dir).unwrap();
    let config = doc_block("## Continue", "yaml");
    assert!(config.contains(DOC_BASE_URL), "{config}");
    assert!(
        config.contains("${{ secrets.CFGATE_KEY }}"),
        "the key is not the secret this test sets: {config}"
    );
    std::fs::write(
        continue_dir.join("config.yaml"),
        config.replace(DOC_BASE_URL, &e.base_url),
    )
    .unwrap();
    std::fs::write(
        continue_dir.join(".env"),
        format!("CFGATE_KEY={}\n", e.token),
    )
    .unwrap();
    // cn works in (and may index) its working folder: an empty project.
    let project = home.path().join("project");
    std::fs::create_dir(&project).unwrap();

    let mut cmd = clean_command(&cn, home.path());
    cmd.current_dir(&project)
        .env("CONTINUE_METRICS_ENABLED", "0")
        .args(["-p", "hello from continue"]);
    // Node loading cn's 13 MB bundle on a loaded 2-core machine: more than WAIT.
    let out = run_client(cmd, "cn", WAIT * 3).await;
    assert_eq!(out.trim(), "echo: hello from continue");

    let sent = chat_requests(&fake);
    let chat = sent
        .iter()
        .find(|r| r.body.to_string().contains("hello from continue"))
        .expect("cn's chat reached the gateway");
    assert_eq!(chat.body["model"], MODEL);
    let last = chat.body["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "user", "{last}");
    assert_eq!(last["content"], "hello from continue", "{last}");
}

/// Runs one scenario of the AI SDK script.
async fn ai_sdk(dir: &Path, e: &Endpoint, scenario: &str) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("ai-sdk.mjs"))
        .args([&e.base_url, &e.token, scenario, MODEL]);
    client_json(cmd, scenario).await
}

#[tokio::test]
async fn the_ai_sdk_generates_and_streams_text() {
    let dir = tools_dir();
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;

    let whole = ai_sdk(&dir, &e, "generate").await;
    assert_eq!(whole["text"], "echo: hello from the ai sdk", "{whole}");
    assert_eq!(whole["finish"], "stop", "{whole}");
    assert!(
        whole["usage"]["totalTokens"].as_u64().unwrap() > 0,
        "{whole}"
    );

    let streamed = ai_sdk(&dir, &e, "stream").await;
    assert_eq!(streamed["error"], Value::Null, "{streamed}");
    assert_eq!(
        streamed["joined"], "echo: stream from the ai sdk",
        "{streamed}"
    );
    assert!(
        streamed["parts"].as_array().unwrap().len() >= 2,
        "not streamed: {streamed}"
    );
    assert_eq!(streamed["finish"], "stop", "{streamed}");
    assert!(
        streamed["usage"]["outputTokens"].as_u64().unwrap() > 0,
        "no usage chunk: {streamed}"
    );
    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body["model"], MODEL);
    assert_eq!(sent[1].body["stream"], true);
    assert_eq!(sent[1].body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn the_ai_sdk_gets_tool_calls_whole_and_assembled_from_a_stream() {
    let dir = tools_dir();
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let weather = || Script {
        tool_calls: Some(json!([{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])),
        content: Some(String::new()),
        ..Script::default()
    };
    let expected = json!([{"id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]);

    fake.push_script(weather());
    let whole = ai_sdk(&dir, &e, "tools").await;
    assert_eq!(whole["calls"], expected, "{whole}");
    assert_eq!(whole["finish"], "tool-calls", "{whole}");

    fake.push_script(weather());
    let streamed = ai_sdk(&dir, &e, "tools_stream").await;
    assert_eq!(streamed["error"], Value::Null, "{streamed}");
    assert_eq!(streamed["calls"], expected, "{streamed}");
    assert_eq!(streamed["finish"], "tool-calls", "{streamed}");

    let sent = chat_requests(&fake);
    assert_eq!(sent[1].body["stream"], true);
    for request in &sent {
        assert_eq!(
            request.body["tools"][0]["function"]["name"], "get_weather",
            "{}",
            request.body
        );
    }
}

/// The documentation's AI SDK block, run as written with the two variables it reads.
#[tokio::test]
async fn the_ai_sdk_block_in_the_docs_prints_the_answer() {
    let dir = tools_dir();
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let block = doc_block("## Vercel AI SDK", "js");
    let home = tempfile::tempdir().unwrap();
    let mut cmd = clean_command(Path::new("node"), home.path());
    // From the package folder, so that its imports find the installed packages.
    cmd.current_dir(&dir)
        .env("CFGATE_BASE_URL", &e.base_url)
        .env("CFGATE_KEY", &e.token)
        .args(["--input-type=module", "-e", &block]);
    let out = run_client(cmd, "the docs' AI SDK block", WAIT).await;
    assert_eq!(out, "echo: hello");
    assert_eq!(chat_requests(&fake)[0].body["stream"], true);
}
