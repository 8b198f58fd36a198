//! The relay's two ways: an editor's stdin and stdout that are pipes are handed to the
//! daemon, which serves them itself; any other stdio is copied.

#![cfg(unix)]

mod common;

use std::process::Stdio;

use common::world::*;
use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// What `/proc/PID/fd/N` points at (`pipe:[1234]`).
fn fd_target(pid: u32, fd: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn open_files(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

#[tokio::test]
async fn the_daemon_serves_the_editors_own_pipes() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut editor = world.client(&fake).await;
    let answer = editor
        .request("cfgate/chat", json!({"messages": user("piped")}))
        .await
        .unwrap();
    assert_eq!(answer["content"], "echo: piped");
    let daemon = world.pid_file().expect("a daemon");
    let (stdin, stdout) = (fd_target(editor.pid(), "0"), fd_target(editor.pid(), "1"));
    assert!(stdin.starts_with("pipe:") && stdout.starts_with("pipe:"));
    let held = open_files(daemon);
    assert!(
        held.contains(&stdin) && held.contains(&stdout),
        "the daemon holds {held:?}, not the editor's {stdin} and {stdout}"
    );
    editor.close_stdin();
    assert_eq!(editor.wait_exit().await.code(), Some(0));
    // The editor's pipes leave the daemon with the connection.
    eventually("the daemon to let the pipes go", || {
        !open_files(daemon).contains(&stdin)
    })
    .await;
}

#[tokio::test]
async fn a_relay_whose_stdout_is_a_file_copies() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let home = tempfile::tempdir().unwrap();
    let out_path = home.path().join("out");
    let env = world.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut relay = command(home.path(), &env)
        .args(["serve", "--shared"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = relay.stdin.take().unwrap();
    let frame = |v: serde_json::Value| {
        let body = v.to_string();
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    };
    let base = fake.compat_base("acc", "gw");
    let initialize = frame(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"capabilities": {}, "initializationOptions": {"base_url": base}}}));
    stdin.write_all(initialize.as_bytes()).await.unwrap();
    let written = || std::fs::read_to_string(&out_path).unwrap_or_default();
    eventually("initialize answered in the file", || {
        written().contains("\"id\":1}")
    })
    .await;
    let chat = [
        frame(json!({"jsonrpc": "2.0", "method": "initialized", "params": {}})),
        frame(json!({"jsonrpc": "2.0", "id": 2, "method": "cfgate/chat",
            "params": {"messages": user("copied")}})),
    ]
    .concat();
    stdin.write_all(chat.as_bytes()).await.unwrap();
    eventually("the chat answered in the file", || {
        written().contains("echo: copied")
    })
    .await;
    let daemon = world.pid_file().expect("a daemon");
    let relay_stdin = fd_target(relay.id().unwrap(), "0");
    assert!(
        !open_files(daemon).contains(&relay_stdin),
        "the daemon was handed the pipe"
    );
    drop(stdin);
    let status = tokio::time::timeout(WAIT, relay.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
