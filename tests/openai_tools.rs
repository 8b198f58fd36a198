//! Programs built on the OpenAI API, configured for the loopback endpoint as docs/openai.md
//! tells their users, run as a user runs them, against the real shared daemon and the fake
//! gateway.

#![cfg(unix)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::endpoint::{MODEL, start_endpoint};
use common::*;

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
    let doc = include_str!("../docs/openai.md");
    let aider = &doc[doc.find("## aider").expect("an aider section")..];
    let json = &aider[aider.find("```json\n").expect("a JSON block") + 8..];
    let json = &json[..json.find("```").expect("the block's end")];
    let parsed: serde_json::Value = serde_json::from_str(json).expect("the doc's JSON parses");
    assert!(parsed.get(format!("openai/{MODEL}")).is_some(), "{json}");
    json.to_string()
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
    let e = start_endpoint(&fake).await;
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
