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
    drop(stdin);
}
