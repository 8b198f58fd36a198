//! Limits that keep one client, or one flood of requests, from taking the daemon down:
//! the cap on upstream requests in flight, the bounded outbox of a client that stops
//! reading, and input whose framing lies.

mod common;

use common::*;
use serde_json::json;

/// A daemon configured by a config file (process-wide settings live there).
async fn daemon_with_file(fake: &FakeGateway, toml: &str) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfgate.toml");
    std::fs::write(&path, toml).unwrap();
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", path.to_str().unwrap()),
    ])
    .await;
    d.initialize(json!({ "base_url": fake.compat_base("acc", "gw") }))
        .await;
    (d, dir)
}

/// Polls `cfgate/status` (each poll a full round trip) until `queued` reaches `n`.
async fn wait_queued(d: &mut Daemon, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = d.request("cfgate/status", json!({})).await.unwrap();
        if status["requests"]["queued"] == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queued never reached {n}: {status}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn with_max_in_flight_1_a_second_request_waits_for_the_first() {
    let fake = FakeGateway::start().await;
    let (mut d, _dir) = daemon_with_file(&fake, "max_in_flight = 1\n").await;
    // The first request holds the only slot: its stream stays open after one piece.
    let first = d.start_held_stream(&fake).await;
    let second = d
        .start_request("cfgate/chat", json!({"messages": user("second")}))
        .await;
    wait_queued(&mut d, 1).await;
    assert_eq!(
        chat_requests(&fake).len(),
        1,
        "the queued request reached the gateway while the first held the only slot"
    );
    // Cancelling the first gives its slot to the second, which then gets its answer.
    d.notify("$/cancelRequest", json!({"id": first})).await;
    assert_eq!(d.response(first).await.unwrap_err()["code"], -32800);
    let answer = d.response(second).await.unwrap();
    assert_eq!(answer["content"], "echo: second");
    assert_eq!(chat_requests(&fake).len(), 2);
    let status = d.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status["requests"]["queued"], 0);
    assert_eq!(status["requests"]["in_flight"], 0);
}

#[tokio::test]
async fn a_request_waiting_for_a_slot_ends_with_the_timeout_error() {
    let fake = FakeGateway::start().await;
    let (mut d, _dir) = daemon_with_file(&fake, "max_in_flight = 1\ntimeout_secs = 1\n").await;
    // The first request holds the only slot for as long as the test runs (a stream is
    // bounded by timeout_secs only until its headers arrive).
    let first = d.start_held_stream(&fake).await;
    let queued = d
        .start_request("cfgate/chat", json!({"messages": user("queued")}))
        .await;
    let err = d.response(queued).await.unwrap_err();
    assert_eq!(err["data"]["kind"], "timeout", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("waited"), "{message}");
    assert_eq!(
        chat_requests(&fake).len(),
        1,
        "the queued request reached the gateway"
    );
    // It left the queue; the first request still streams and can be cancelled.
    let status = d.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status["requests"]["queued"], 0, "{status}");
    d.notify("$/cancelRequest", json!({"id": first})).await;
    assert_eq!(d.response(first).await.unwrap_err()["code"], -32800);
}

#[tokio::test]
async fn without_a_tight_cap_requests_run_side_by_side() {
    let fake = FakeGateway::start().await;
    let (mut d, _dir) = daemon_with_file(&fake, "max_in_flight = 2\n").await;
    d.start_held_stream(&fake).await;
    let second = d
        .start_request("cfgate/chat", json!({"messages": user("second")}))
        .await;
    assert_eq!(d.response(second).await.unwrap()["content"], "echo: second");
}

fn frame(message: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(message).unwrap();
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend(body);
    out
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_with_a_logged_reason() {
    use std::process::Stdio;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let fake = FakeGateway::start().await;
    // 8 MiB of answer against a 1 MiB outbox (and a 64 KiB pipe).
    fake.push_script(Script {
        chunks: Some(vec!["x".repeat(1024); 8 * 1024]),
        ..Script::default()
    });
    let home = tempfile::tempdir().unwrap();
    let stderr_path = home.path().join("stderr.log");
    let mut child = command(home.path(), &[("CLOUDFLARE_API_TOKEN", TOKEN)])
        .args(["serve", "--max-outbox-bytes", "1048576"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped()) // never read
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut input = frame(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "processId": null, "capabilities": {},
        "initializationOptions": {"base_url": fake.compat_base("acc", "gw")}}}),
    );
    stdin.write_all(&input).await.unwrap();
    // Read up to initialize's answer (LSP wants it before other requests), then no more.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("serverInfo") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stdout.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stdout closed");
        seen.extend_from_slice(&buf[..n]);
    }
    input = frame(&json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
    input.extend(frame(
        &json!({"jsonrpc": "2.0", "id": 2, "method": "cfgate/chat",
        "params": {"messages": user("a lot"), "workDoneToken": "big"}}),
    ));
    stdin.write_all(&input).await.unwrap();
    stdin.flush().await.unwrap();
    // stdin stays open: only the unread output can end the daemon.
    let status = match tokio::time::timeout(WAIT, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => panic!(
            "the daemon kept buffering for a client that does not read ({} requests upstream); stderr:\n{}",
            fake.requests().len(),
            std::fs::read_to_string(&stderr_path).unwrap()
        ),
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.contains("cutting the client off")
            && stderr.contains("not reading its output")
            && stderr.contains("1048576-byte limit"),
        "no reason logged:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_no_token_in_logs(home.path());
    drop(stdin);
}

#[tokio::test]
async fn lying_or_broken_framing_gets_an_error_and_the_next_request_is_answered() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let deep = "{\"a\":".repeat(100_000);
    let bad_utf8_body =
        b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"cfgate/status\",\"params\":{\"x\":\"\xff\"}}";
    let mut cases: Vec<(&str, Vec<u8>, i64)> = vec![
        // Claims more than it sends: eats the start of the next frame.
        ("too long", b"Content-Length: 60\r\n\r\n{}".to_vec(), -32700),
        // Claims less: the rest of its body is junk before the next header.
        (
            "too short",
            b"Content-Length: 5\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"cfgate/status\"}"
                .to_vec(),
            -32700,
        ),
        ("negative", b"Content-Length: -1\r\n\r\n{}".to_vec(), -32700),
        (
            "not a number",
            b"Content-Length: 99999999999999999999999\r\n\r\n{}".to_vec(),
            -32700,
        ),
        (
            "missing",
            b"Content-Type: application/json\r\n\r\n{}".to_vec(),
            -32700,
        ),
        (
            "duplicated, disagreeing",
            b"Content-Length: 2\r\nContent-Length: 4\r\n\r\n{}".to_vec(),
            -32700,
        ),
        (
            "duplicated, agreeing (read; `{}` is then not JSON-RPC)",
            b"Content-Length: 2\r\ncontent-length: 2\r\n\r\n{}".to_vec(),
            -32600,
        ),
        (
            "header junk",
            b"\x00\x01garbage: :\r\n::::\r\n\r\n".to_vec(),
            -32700,
        ),
        (
            "invalid UTF-8 in the header",
            b"Content-Length: 2\r\nX-Name: \xff\xfe\r\n\r\n{}".to_vec(),
            -32700,
        ),
    ];
    let mut utf8 = format!("Content-Length: {}\r\n\r\n", bad_utf8_body.len()).into_bytes();
    utf8.extend_from_slice(bad_utf8_body);
    cases.push(("invalid UTF-8 in the body", utf8, -32700));
    let mut nested = format!("Content-Length: {}\r\n\r\n", deep.len()).into_bytes();
    nested.extend_from_slice(deep.as_bytes());
    cases.push(("100k nested objects", nested, -32700));

    for (what, bytes, code) in cases {
        d.send_raw(&bytes).await;
        // A lying frame may swallow (part of) the request after it: that one is sacrificed.
        d.start_request_without_params("cfgate/status").await;
        let next = d.start_request_without_params("cfgate/status").await;
        let answer = d.response(next).await;
        assert!(
            answer.is_ok(),
            "{what}: the next request failed: {answer:?}"
        );
        // Errors for bad input are written before the answer to a later request.
        let errors = d.take_pending(|m| m.get("error").is_some() && m["id"].is_null());
        assert!(
            errors.iter().any(|e| e["error"]["code"] == code),
            "{what}: expected error {code}, got {errors:?}"
        );
        d.take_pending(|m| m.get("result").is_some());
    }
    let stderr = d.stderr();
    assert!(stderr.contains("malformed frame"), "no log line:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let ok = d
        .request("cfgate/chat", json!({"messages": user("still here")}))
        .await
        .unwrap();
    assert_eq!(ok["content"], "echo: still here");
}

/// A frame that declares 500 bytes and sends 50, then six requests: each of the six is
/// answered (none swallowed by the lie), whether they come in the same write or one by one
/// with the client waiting for each answer before it sends the next.
#[tokio::test]
async fn a_length_longer_than_its_body_costs_none_of_the_requests_after_it() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let lying = || {
        let mut bytes = b"Content-Length: 500\r\n\r\n".to_vec();
        bytes.extend(&br#"{"jsonrpc":"2.0","id":999,"method":"cfgate/status","params":{}}"#[..50]);
        bytes
    };
    let status = |id: i64| frame(&json!({"jsonrpc": "2.0", "id": id, "method": "cfgate/status"}));

    // All in one write.
    let mut input = lying();
    for id in 101..=106 {
        input.extend(status(id));
    }
    d.send_raw(&input).await;
    for id in 101..=106 {
        let answer = d.response(id).await;
        assert!(answer.is_ok(), "request {id}: {answer:?}");
    }
    // One by one, each after the answer to the one before.
    d.send_raw(&lying()).await;
    for id in 201..=206 {
        d.send_raw(&status(id)).await;
        let answer = d.response(id).await;
        assert!(answer.is_ok(), "request {id}: {answer:?}");
    }
    let errors = d.take_pending(|m| m["error"]["code"] == -32700 && m["id"].is_null());
    assert_eq!(
        errors.len(),
        2,
        "one parse error per lying frame: {errors:?}"
    );
    assert!(
        errors[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Length said 500 bytes"),
        "{errors:?}"
    );
}
