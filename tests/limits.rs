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
