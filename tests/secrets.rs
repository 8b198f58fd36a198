//! No log level writes a secret, whichever way the client sent it, and the log files are
//! the user's alone.

mod common;

use common::*;
use serde_json::json;

/// The second token, sent later through `workspace/didChangeConfiguration`.
const SECOND_TOKEN: &str = "cf-second-token-4d82b6a0e3";

/// Every place a secret could leave by: what the daemon wrote on stdout, its stderr, and
/// every file under its HOME (the log files among them).
fn assert_nowhere(d: &Daemon, secret: &str) {
    let transcript = d.transcript.lock().unwrap().join("\n");
    assert!(
        !transcript.contains(secret),
        "{secret} in a frame on stdout"
    );
    let mut dirs = vec![d.home.path().to_path_buf()];
    let mut files = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files += 1;
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                assert!(!text.contains(secret), "{secret} in {}", path.display());
            }
        }
    }
    assert!(files >= 2, "no stderr capture or no log file to check");
}

#[tokio::test]
async fn trace_level_writes_no_token_sent_in_settings() {
    // Trace everywhere, and trace asked for by name for the library that traces frames.
    for level in ["trace", "trace,tower_lsp_server::codec=trace"] {
        no_token_at(level).await;
    }
}

async fn no_token_at(level: &str) {
    let fake = FakeGateway::start().await;
    // No token in the environment: the client's settings are its only source.
    let mut d = Daemon::spawn(&[("CFGATE_LOG", level)]).await;
    d.initialize(json!({"base_url": fake.compat_base("acc", "gw"), "api_token": TOKEN}))
        .await;
    let answer = d
        .request("cfgate/chat", json!({"messages": user("first")}))
        .await
        .unwrap();
    assert_eq!(answer["content"], "echo: first");
    d.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"cfgate": {"api_token": SECOND_TOKEN}}}),
    )
    .await;
    let answer = d
        .request("cfgate/chat", json!({"messages": user("second")}))
        .await
        .unwrap();
    assert_eq!(answer["content"], "echo: second");
    let sent: Vec<_> = chat_requests(&fake)
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        sent,
        [format!("Bearer {TOKEN}"), format!("Bearer {SECOND_TOKEN}")],
        "each token was used"
    );
    d.request("cfgate/status", json!({})).await.unwrap();
    // The daemon's exit flushes its log file.
    d.close_stdin();
    d.wait_exit().await;
    // Trace logging was on: the frames arrived and were logged, without their contents.
    assert!(d.logs().contains("TRACE"), "no trace line in the log");
    assert_nowhere(&d, TOKEN);
    assert_nowhere(&d, SECOND_TOKEN);
}

#[cfg(unix)]
#[tokio::test]
async fn the_log_file_and_its_folder_are_the_users_alone() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    d.request("cfgate/status", json!({})).await.unwrap();
    d.close_stdin();
    d.wait_exit().await;
    let dir = d.home.path().join("state").join("cfgate");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert!(!logs.is_empty(), "no log file in {}", dir.display());
    for log in logs {
        assert_eq!(mode(&log), 0o600, "{}", log.display());
    }
}
