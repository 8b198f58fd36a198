//! A panic in any handler, request or notification, stays inside it: a request is answered
//! -32603, a notification is dropped, and the same daemon answers the next request.
//! (Debug builds panic on request: `CFGATE_TEST_PANIC_METHODS` lists the methods.)

mod common;

use common::*;
use serde_json::{Value, json};

const URI: &str = "file:///tmp/panics/main.rs";

fn document() -> Value {
    json!({"textDocument": {"uri": URI}})
}

fn position() -> Value {
    json!({"textDocument": {"uri": URI}, "position": {"line": 0, "character": 3}})
}

#[tokio::test]
async fn every_handler_contains_its_panic() {
    let requests: Vec<(&str, Value)> = vec![
        ("cfgate/status", json!({})),
        ("cfgate/sessions", json!({})),
        ("cfgate/session", json!({"name": "s"})),
        ("cfgate/sessionDelete", json!({"name": "s"})),
        ("cfgate/models", json!({})),
        ("cfgate/complete", json!({"prefix": "fn ma", "suffix": ""})),
        (
            "textDocument/codeAction",
            json!({"textDocument": {"uri": URI},
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 3}},
                "context": {"diagnostics": []}}),
        ),
        ("textDocument/completion", position()),
        (
            "workspace/executeCommand",
            json!({"command": "cfgate.x", "arguments": []}),
        ),
    ];
    let notifications: Vec<(&str, Value)> = vec![
        (
            "textDocument/didOpen",
            json!({"textDocument": {"uri": URI, "languageId": "rust", "version": 1, "text": "fn main() {}\n"}}),
        ),
        (
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": 2},
                "contentChanges": [{"text": "fn main() { }\n"}]}),
        ),
        ("textDocument/didClose", document()),
        (
            "workspace/didChangeConfiguration",
            json!({"settings": {"model": "openai/gpt-4o-mini"}}),
        ),
    ];
    let methods: Vec<&str> = requests
        .iter()
        .chain(&notifications)
        .map(|(m, _)| *m)
        .collect();
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_TEST_PANIC_METHODS", &methods.join(",")),
    ])
    .await;
    d.initialize(json!({ "base_url": fake.compat_base("acc", "gw") }))
        .await;

    for (method, params) in requests {
        let err = d
            .request(method, params)
            .await
            .expect_err("a panicking handler answers with an error");
        assert_eq!(err["code"], -32603, "{method}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains("internal error"),
            "{method}: {err}"
        );
        still_serving(&mut d, method).await;
    }
    for (method, params) in notifications {
        d.notify(method, params).await;
        still_serving(&mut d, method).await;
    }
    // Stderr gets each line as it is logged (the log file through a background thread). A
    // notification's handler may still be running after a later request was answered, so
    // each poll is a round trip to the daemon.
    for method in methods {
        let line = format!("the handler of {method} panicked");
        let deadline = tokio::time::Instant::now() + WAIT;
        while !d.stderr().contains(&line) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line for {method}"
            );
            still_serving(&mut d, method).await;
        }
    }
}

async fn still_serving(d: &mut Daemon, after: &str) {
    let answer = d
        .request("cfgate/chat", json!({"messages": user("after")}))
        .await
        .unwrap_or_else(|e| panic!("after a panic in {after}: {e}"));
    assert_eq!(answer["content"], "echo: after", "after {after}");
}
