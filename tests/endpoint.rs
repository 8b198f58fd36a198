//! The loopback endpoint end to end: the real shared daemon with `--listen`, driven by
//! `curl` and by a real WebSocket client (Python `websockets`), against the fake gateway.

#![cfg(unix)]

mod common;

use common::endpoint::{ALLOWED_ORIGIN, Endpoint, start_endpoint_with};
use common::*;
use serde_json::{Value, json};

/// The endpoint with every retry of a default daemon, logging at `trace` (the logs are
/// searched for tokens).
async fn start(fake: &FakeGateway) -> Endpoint {
    start_endpoint_with(fake, "", &[("CFGATE_LOG", "trace")]).await
}

/// `curl` POSTing one JSON-RPC call; returns (HTTP status, body).
async fn curl(addr: &str, headers: &[String], body: &Value) -> (u16, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "content-type: application/json"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.args([
        "--data-binary",
        &body.to_string(),
        &format!("http://{addr}/"),
    ]);
    let out = tokio::time::timeout(WAIT, cmd.kill_on_drop(true).output())
        .await
        .expect("curl finished")
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().unwrap(), body.to_string())
}

async fn ws_chat(
    e: &Endpoint,
    token: &str,
    origin: &str,
    prompt: &str,
    session: &str,
) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/ws_chat.py");
    let out = tokio::process::Command::new("python3")
        .args([
            script,
            &format!("ws://{}/", e.addr),
            token,
            origin,
            prompt,
            session,
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("websocket client finished")
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "ws client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn curl_needs_the_token_and_an_allowed_origin() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(e.run.join("endpoint.token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(e.token.len(), 64);

    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "cfgate/chat",
                      "params": {"messages": user("over http"), "session": "web"}});
    let auth = format!("authorization: Bearer {}", e.token);
    let (status, _) = curl(&e.addr, &[], &call).await;
    assert_eq!(status, 401);
    let (status, _) = curl(&e.addr, &["authorization: Bearer wrong".into()], &call).await;
    assert_eq!(status, 401);
    let (status, _) = curl(
        &e.addr,
        &[auth.clone(), "origin: http://evil.example".into()],
        &call,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        chat_requests(&fake).is_empty(),
        "a refused call reached the gateway"
    );

    let (status, body) = curl(&e.addr, std::slice::from_ref(&auth), &call).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["result"]["content"], "echo: over http", "{answer}");
    let (status, body) = curl(
        &e.addr,
        &[auth.clone(), format!("origin: {ALLOWED_ORIGIN}")],
        &json!({"jsonrpc": "2.0", "id": 2, "method": "cfgate/session", "params": {"name": "web"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(session["result"]["turns"], 1, "{session}");
    let (status, body) = curl(
        &e.addr,
        std::slice::from_ref(&auth),
        &json!({"jsonrpc": "2.0", "id": 4, "method": "cfgate/models"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["result"]["source"], "compat", "{models}");
    assert!(!models["result"]["models"].as_array().unwrap().is_empty());

    // Errors are the LSP front end's, code and data alike.
    let (_, body) = curl(
        &e.addr,
        std::slice::from_ref(&auth),
        &json!({"jsonrpc": "2.0", "id": 3, "method": "cfgate/chat", "params": {"messages": []}}),
    )
    .await;
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], -32602, "{err}");

    // One call per request, as on stdio: a batch is refused whole, nothing is sent.
    fake.clear_requests();
    let (_, body) = curl(
        &e.addr,
        std::slice::from_ref(&auth),
        &json!([call, {"jsonrpc": "2.0", "id": 5, "method": "cfgate/status"}]),
    )
    .await;
    let err: Value = serde_json::from_str(&body).unwrap();
    assert!(err["error"]["code"].is_i64(), "a batch was served: {err}");
    assert!(
        chat_requests(&fake).is_empty(),
        "a batched call reached the gateway"
    );

    // Stopped (SIGTERM), the daemon removes its endpoint files, and its log, written at
    // `trace`, holds neither token.
    let mut e = e;
    let pid = e.daemon.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::timeout(WAIT, e.daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!e.run.join("endpoint.token").exists());
    assert!(!e.run.join("endpoint.addr").exists());
    let mut logs = String::new();
    for entry in std::fs::read_dir(e.dirs.path().join("state/cfgate"))
        .unwrap()
        .flatten()
    {
        logs.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    assert!(logs.contains("loopback endpoint listening"), "no log read");
    assert!(!logs.contains(&e.token), "endpoint token in the log");
    assert!(!logs.contains(TOKEN), "API token in the log");
}

#[tokio::test]
async fn a_websocket_client_streams_a_chat_in_order_then_the_answer() {
    let fake = FakeGateway::start().await;
    let e = start(&fake).await;
    let messages = ws_chat(&e, &e.token, "-", "hi there", "ws").await;
    // The subscription id, then the pieces, then the answer.
    assert!(
        messages[0]["result"].is_string() || messages[0]["result"].is_number(),
        "{messages:#?}"
    );
    let values: Vec<&Value> = messages[1..]
        .iter()
        .map(|m| &m["params"]["result"])
        .collect();
    assert!(
        messages[1..]
            .iter()
            .all(|m| m["method"] == "cfgate/chatPiece")
    );
    let (last, pieces) = values.split_last().unwrap();
    assert!(pieces.len() >= 2, "not streamed: {values:#?}");
    assert!(pieces.iter().all(|p| p["kind"] == "report"));
    let joined: String = pieces
        .iter()
        .filter_map(|p| p["content"].as_str())
        .collect();
    assert_eq!(joined, "echo: hi there");
    assert_eq!(last["kind"], "result");
    assert_eq!(last["result"]["content"], "echo: hi there");
    assert_eq!(chat_requests(&fake)[0].body["stream"], true);

    // The turn went into the session, which a second streamed chat continues.
    ws_chat(&e, &e.token, ALLOWED_ORIGIN, "again", "ws").await;
    let sent = chat_requests(&fake);
    assert_eq!(sent[1].body["messages"].as_array().unwrap().len(), 3);

    // Without the token, or from a foreign page, the handshake is refused.
    assert_eq!(
        ws_chat(&e, "-", "-", "x", "ws").await,
        [json!({"refused": 401})]
    );
    assert_eq!(
        ws_chat(&e, &e.token, "http://evil.example", "x", "ws").await,
        [json!({"refused": 403})]
    );
    assert_eq!(chat_requests(&fake).len(), 2);
}
