//! Published tools on the OpenAI-compatible endpoint, each set up as docs/openai.md tells
//! its users and run as a user runs them: Continue's command line agent `cn` and the Vercel
//! AI SDK's OpenAI-compatible provider (npm, `tests/scripts/openai-tools`), and aider (its
//! own virtualenv), all installed by `.ci/install-tools`, against the real shared daemon
//! and the fake gateway.

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

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

/// aider starts Python, LiteLLM and a tree-sitter parser before its one request: seconds on
/// a loaded 2-core machine, so more than [`WAIT`].
const AIDER_WAIT: Duration = Duration::from_secs(180);

/// Where `.ci/install-tools` puts aider (its own virtualenv), unless `CFGATE_AIDER` names it.
fn aider_program() -> PathBuf {
    if let Some(path) = std::env::var_os("CFGATE_AIDER") {
        return path.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    cache.join("cfgate-ci/aider-venv/bin/aider")
}

/// `~/.aider.model.metadata.json` as docs/openai.md gives it (its aider section's JSON).
fn documented_metadata() -> String {
    let json = doc_block("## aider", "json");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("the doc's JSON parses");
    assert!(parsed.get(format!("openai/{MODEL}")).is_some(), "{json}");
    json
}

/// What the model answers: one SEARCH/REPLACE block, aider's default edit format for a
/// model it has no settings for.
const EDIT_ANSWER: &str = "Changing the greeting.\n\nhello.py\n```python\n<<<<<<< SEARCH\nprint(\"hi\")\n=======\nprint(\"hello from cfgate\")\n>>>>>>> REPLACE\n```\n";

/// aider scripted as a user scripts it (`--message`, no terminal, `CI=true`), with the
/// endpoint's URL and key in the environment variables docs/openai.md names and the
/// variables it gives for a machine offline: the model's answer is printed and its edit is
/// applied to the file on disk.
#[tokio::test]
async fn aider_configured_as_documented_applies_the_models_edit() {
    let aider = aider_program();
    assert!(
        aider.exists(),
        "aider is not installed at {}: run .ci/install-tools",
        aider.display()
    );
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".aider.model.metadata.json"),
        documented_metadata(),
    )
    .unwrap();
    let project = tempfile::tempdir().unwrap();
    let file = project.path().join("hello.py");
    std::fs::write(&file, "print(\"hi\")\n").unwrap();
    fake.push_script(Script {
        content: Some(EDIT_ANSWER.into()),
        ..Script::default()
    });

    let env = [
        ("CI", "true"),
        ("OPENAI_API_BASE", e.base_url.as_str()),
        ("OPENAI_API_KEY", e.token.as_str()),
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let model = format!("openai/{MODEL}");
    let out = command_for(aider.to_str().unwrap(), home.path(), &env)
        .current_dir(project.path())
        .args(["--model", &model, "--message", "say hello from cfgate"])
        .args(["--yes-always", "--no-git", "--no-auto-commits"])
        .args([
            "--no-check-update",
            "--no-show-release-notes",
            "--no-analytics",
        ])
        .arg("hello.py")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(AIDER_WAIT, out)
        .await
        .expect("aider finished")
        .expect("aider runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "aider failed: {said}");

    assert!(stdout.contains("Changing the greeting."), "{said}");
    assert!(stdout.contains("Applied edit to hello.py"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "print(\"hello from cfgate\")\n",
        "the file on disk: {said}"
    );
    // The documented metadata is found under the name aider looks the model up by; without
    // it aider warns, and asks GitHub for LiteLLM's list of models.
    assert!(!said.contains("Unknown context window"), "{said}");
    assert!(!said.contains("githubusercontent"), "{said}");

    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 1, "one chat request: {said}");
    assert_eq!(
        sent[0].body["model"], MODEL,
        "routed without aider's openai/"
    );
    assert_eq!(sent[0].body["stream"], true);
    let messages = sent[0].body["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "user");
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .starts_with("say hello from cfgate"),
        "{last}"
    );
    assert!(
        messages.iter().any(|m| m["content"]
            .as_str()
            .is_some_and(|c| c.contains("print(\"hi\")"))),
        "the file's text was not sent: {messages:?}"
    );
}
