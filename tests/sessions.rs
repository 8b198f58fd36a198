//! Conversations kept by the daemon, end to end: what the gateway is sent, what is stored,
//! and what survives concurrent writers and a daemon killed mid-write.

mod common;

use common::*;
use serde_json::{Value, json};

/// A daemon whose sessions live in `data` (shared between daemons of one test).
async fn daemon_with_data(fake: &FakeGateway, data: &std::path::Path) -> Daemon {
    daemon_with_settings(fake, data, json!({})).await
}

/// The same, with these settings added to its `initializationOptions`.
async fn daemon_with_settings(
    fake: &FakeGateway,
    data: &std::path::Path,
    settings: Value,
) -> Daemon {
    let data = data.to_str().unwrap();
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN), ("CFGATE_DATA_DIR", data)]).await;
    let mut init = json!({ "base_url": fake.compat_base("acc", "gw") });
    for (key, value) in settings.as_object().unwrap() {
        init[key] = value.clone();
    }
    d.initialize(init).await;
    d
}

fn contents(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}:{}",
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn session_history_reaches_the_gateway_and_can_be_listed_read_and_deleted() {
    let fake = FakeGateway::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut d = daemon_with_data(&fake, data.path()).await;
    let first = d
        .request(
            "cfgate/chat",
            json!({"session": "work", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "one"}]}),
        )
        .await
        .expect("first turn");
    assert_eq!(first["content"], "echo: one");
    let (progress, second) = d
        .streamed(
            "cfgate/chat",
            json!({"session": "work", "messages": user("two")}),
        )
        .await;
    assert_eq!(second.expect("second turn")["content"], "echo: two");
    assert_eq!(joined_content(&progress), "echo: two");

    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        contents(&sent[1].body["messages"]),
        [
            "system:Be brief.",
            "user:one",
            "assistant:echo: one",
            "user:two"
        ]
    );
    assert!(
        sent[1].body.get("session").is_none(),
        "session leaked upstream"
    );

    let list = d.request("cfgate/sessions", json!({})).await.unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{list}");
    assert_eq!(sessions[0]["name"], "work");
    assert_eq!(sessions[0]["turns"], 2);
    assert!(sessions[0]["updated"].as_u64().unwrap() > 0);
    assert!(sessions[0]["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let one = d
        .request("cfgate/session", json!({"name": "work"}))
        .await
        .unwrap();
    assert_eq!(
        contents(&one["messages"]),
        [
            "system:Be brief.",
            "user:one",
            "assistant:echo: one",
            "user:two",
            "assistant:echo: two"
        ]
    );

    for bad in ["../etc", "a/b", "", ".x"] {
        let err = d
            .request(
                "cfgate/chat",
                json!({"session": bad, "messages": user("x")}),
            )
            .await
            .expect_err("bad name refused");
        assert_eq!(err["code"], -32602, "{bad}: {err}");
        assert!(err["message"].as_str().unwrap().contains("session name"));
    }
    assert_eq!(chat_requests(&fake).len(), 2, "a refused turn was sent");

    let deleted = d
        .request("cfgate/sessionDelete", json!({"name": "work"}))
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], true);
    let list = d.request("cfgate/sessions", json!({})).await.unwrap();
    assert_eq!(list["sessions"], json!([]));
}

#[tokio::test]
async fn history_beyond_the_budget_is_trimmed_oldest_first() {
    let fake = FakeGateway::start().await;
    let data = tempfile::tempdir().unwrap();
    // Each message is 8 to 12 estimated tokens: room for the system message, the new
    // message and one earlier turn.
    let mut d =
        daemon_with_settings(&fake, data.path(), json!({ "session_budget_tokens": 50 })).await;
    d.request(
        "cfgate/chat",
        json!({"session": "s", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"}]}),
    )
    .await
    .unwrap();
    for text in ["two", "three"] {
        d.request(
            "cfgate/chat",
            json!({"session": "s", "messages": user(text)}),
        )
        .await
        .unwrap();
    }
    let sent = chat_requests(&fake);
    assert_eq!(
        contents(&sent[2].body["messages"]),
        [
            "system:Be brief.",
            "user:two",
            "assistant:echo: two",
            "user:three"
        ]
    );
}

/// Every stored turn is one user message followed by its own answer.
fn assert_whole_turns(messages: &Value) -> Vec<String> {
    let messages = messages.as_array().unwrap();
    assert_eq!(messages.len() % 2, 0, "{messages:#?}");
    let mut users = Vec::new();
    for pair in messages.chunks(2) {
        assert_eq!(pair[0]["role"], "user", "{pair:?}");
        assert_eq!(pair[1]["role"], "assistant", "{pair:?}");
        let text = pair[0]["content"].as_str().unwrap();
        assert_eq!(
            pair[1]["content"],
            format!("echo: {text}"),
            "interleaved: {pair:?}"
        );
        users.push(text.to_string());
    }
    users
}

#[tokio::test]
async fn concurrent_writers_from_two_daemons_store_every_turn_whole() {
    let fake = FakeGateway::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut a = daemon_with_data(&fake, data.path()).await;
    let mut b = daemon_with_data(&fake, data.path()).await;
    const EACH: usize = 10;
    let mut ids = Vec::new();
    for i in 0..EACH {
        let ia = a
            .start_request(
                "cfgate/chat",
                json!({"session": "shared", "messages": user(&format!("a{i}"))}),
            )
            .await;
        let ib = b
            .start_request(
                "cfgate/chat",
                json!({"session": "shared", "messages": user(&format!("b{i}"))}),
            )
            .await;
        ids.push((ia, ib));
    }
    for (ia, ib) in ids {
        a.response(ia).await.expect("a answered");
        b.response(ib).await.expect("b answered");
    }
    let one = a
        .request("cfgate/session", json!({"name": "shared"}))
        .await
        .unwrap();
    assert_eq!(one["turns"], 2 * EACH);
    let mut users = assert_whole_turns(&one["messages"]);
    users.sort();
    let mut expected: Vec<String> = (0..EACH)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    expected.sort();
    assert_eq!(users, expected);
}

#[tokio::test]
async fn killing_the_daemon_mid_write_keeps_every_earlier_turn() {
    let fake = FakeGateway::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut d = daemon_with_data(&fake, data.path()).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            d.start_request(
                "cfgate/chat",
                json!({"session": "c", "messages": user(&format!("m{i}"))}),
            )
            .await,
        );
    }
    // Kill it (SIGKILL) once some turns are answered, while the rest are being written.
    for id in &ids[..5] {
        d.response(*id).await.expect("answered");
    }
    let pid = d.pid();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    d.wait_exit().await;

    // A torn line as a crash in the middle of a write leaves it.
    let file = data.path().join("sessions/c.jsonl");
    let before = std::fs::read(&file).unwrap();
    let mut torn = before.clone();
    torn.extend_from_slice(br#"{"time":1,"messages":[{"role":"user","con"#);
    std::fs::write(&file, &torn).unwrap();

    let mut again = daemon_with_data(&fake, data.path()).await;
    let stored = again
        .request("cfgate/session", json!({"name": "c"}))
        .await
        .unwrap();
    let users = assert_whole_turns(&stored["messages"]);
    assert!(users.len() >= 5, "answered turns lost: {users:?}");
    let n = users.len();
    // The session goes on after the torn line.
    again
        .request(
            "cfgate/chat",
            json!({"session": "c", "messages": user("after")}),
        )
        .await
        .unwrap();
    let stored = again
        .request("cfgate/session", json!({"name": "c"}))
        .await
        .unwrap();
    let users = assert_whole_turns(&stored["messages"]);
    assert_eq!(users.len(), n + 1);
    assert_eq!(users.last().unwrap(), "after");
}

/// Without `session_budget_tokens`, a model list already fetched sets the budget: half the
/// model's context window (24,000 tokens for this model in the fake's catalog, so 12,000),
/// where the default (8,192) would leave every earlier turn out.
#[tokio::test]
async fn the_models_context_window_sets_the_history_budget() {
    let fake = FakeGateway::start().await;
    let data = tempfile::tempdir().unwrap();
    let catalog = json!({"account_id": "acc", "api_url": format!("{}/client/v4", fake.url())});
    let mut d = daemon_with_settings(&fake, data.path(), catalog).await;
    // About 3,000 estimated tokens a message; a turn (question and echoed answer) 6,000.
    let long = |tag: &str| format!("{tag} {}", "x".repeat(12_000));
    for tag in ["one", "two"] {
        let params = json!({"session": "big", "messages": user(&long(tag))});
        d.request("cfgate/chat", params).await.unwrap();
    }
    let sent = chat_requests(&fake);
    assert_eq!(
        sent[1].body["messages"].as_array().unwrap().len(),
        1,
        "the default budget keeps no 6,000-token turn"
    );

    let models = d.request("cfgate/models", json!({})).await.unwrap();
    assert_eq!(models["source"], "compat+catalog");
    let params = json!({"session": "big", "messages": user(&long("three"))});
    d.request("cfgate/chat", params).await.unwrap();
    let sent = chat_requests(&fake);
    let messages = sent[2].body["messages"].as_array().unwrap();
    let starts: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap().split(' ').next().unwrap())
        .collect();
    assert_eq!(
        starts,
        ["two", "echo:", "three"],
        "one earlier turn fits in 12,000"
    );
}
