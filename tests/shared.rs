//! The shared daemon end to end: several `cfgate serve --shared` clients (real processes,
//! as editors start them) on one background daemon, against the fake gateway.

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use common::world::*;
use common::*;
use serde_json::{Value, json};

async fn chat(c: &mut Daemon, session: &str, text: &str) -> Value {
    c.request(
        "cfgate/chat",
        json!({"session": session, "messages": user(text)}),
    )
    .await
    .expect("chat answered")
}

#[tokio::test]
async fn two_clients_share_one_daemon_one_pool_and_sessions() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut a = world.client(&fake).await;
    assert_eq!(
        chat(&mut a, "pair", "from a").await["content"],
        "echo: from a"
    );
    let mut b = world.client(&fake).await;

    // B reads the turn A wrote, and continues the conversation.
    let session = b
        .request("cfgate/session", json!({"name": "pair"}))
        .await
        .unwrap();
    assert_eq!(session["turns"], 1, "{session}");
    assert_eq!(session["messages"][1]["content"], "echo: from a");
    assert_eq!(
        chat(&mut b, "pair", "from b").await["content"],
        "echo: from b"
    );
    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].body["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        chat(&mut a, "pair", "again").await["content"],
        "echo: again"
    );

    // Two more tools; one daemon, one upstream pool for all four. hyper's pool may, rarely,
    // open a second connection when a request races the previous one's return to the
    // pool; four private daemons would need four.
    for i in 0..2 {
        let mut c = world.client(&fake).await;
        chat(&mut c, "other", &format!("c{i}")).await;
    }
    assert_eq!(world.daemons().len(), 1);
    let connections = fake.connections_accepted();
    assert!(
        connections <= 2,
        "{connections} upstream connections: no shared pool"
    );
    let status = b.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status["requests"]["total"], 5, "{status}");

    // The folder and the socket are the user's alone.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&world.run_dir()), 0o700);
    assert_eq!(mode(&world.socket()), 0o600);
}

#[tokio::test]
async fn racing_clients_start_one_daemon() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(world.spawn_client().await);
    }
    for c in &mut clients {
        c.initialize(json!({ "base_url": fake.compat_base("acc", "gw") }))
            .await;
        let status = c.request("cfgate/status", json!({})).await.unwrap();
        assert_eq!(status["credentials_complete"], true);
    }
    // Losers of the race exit on their own; one daemon is left, the one in the pid file.
    eventually("one daemon", || world.daemons().len() == 1).await;
    assert_eq!(world.daemons(), vec![world.pid_file().unwrap()]);
}

#[tokio::test]
async fn a_killed_daemon_is_replaced_by_the_next_client() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut a = world.client(&fake).await;
    chat(&mut a, "k", "before").await;
    let first = world.pid_file().unwrap();
    kill9(first);
    // The client's connection ends with its daemon; the socket file is left behind. The
    // daemon's listening socket may outlive its connections by a moment while the kernel
    // tears the process down: a crash in the past is what this test is about.
    a.wait_exit().await;
    eventually("the killed daemon gone", || exited(first)).await;
    assert!(world.socket().exists(), "test premise: a stale socket");

    let mut b = world.client(&fake).await;
    assert_eq!(chat(&mut b, "k", "after").await["content"], "echo: after");
    let second = world.pid_file().unwrap();
    assert_ne!(first, second);
    assert_eq!(world.daemons(), vec![second]);
    let session = b
        .request("cfgate/session", json!({"name": "k"}))
        .await
        .unwrap();
    assert_eq!(session["turns"], 2);
}

#[tokio::test]
async fn an_idle_daemon_exits_and_removes_its_socket() {
    let fake = FakeGateway::start().await;
    let world = World::new("idle_exit_secs = 1\n");
    let mut a = world.client(&fake).await;
    chat(&mut a, "i", "hello").await;
    assert!(world.socket().exists());
    a.close_stdin();
    a.wait_exit().await;
    eventually("the daemon exits", || world.daemons().is_empty()).await;
    assert!(!world.socket().exists(), "socket left behind");
}

#[tokio::test]
async fn stop_terminates_the_daemon_and_removes_its_socket() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut a = world.client(&fake).await;
    chat(&mut a, "s", "hello").await;
    let env = world.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let home = tempfile::tempdir().unwrap();
    let out = command(home.path(), &env)
        .arg("stop")
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(world.daemons().is_empty());
    assert!(!world.socket().exists(), "socket left behind");
    a.wait_exit().await;
}

async fn init_as(c: &mut Daemon, fake: &FakeGateway, name: &str, version: &str) {
    c.request(
        "initialize",
        json!({
            "processId": null,
            "capabilities": {},
            "clientInfo": {"name": name, "version": version},
            "initializationOptions": { "base_url": fake.compat_base("acc", "gw") },
        }),
    )
    .await
    .expect("initialize");
    c.notify("initialized", json!({})).await;
}

async fn next_status(c: &mut Daemon) -> Value {
    let msg = c
        .wait_for("cfgate/didChangeStatus", |m| {
            m["method"] == "cfgate/didChangeStatus"
        })
        .await;
    msg["params"].clone()
}

#[tokio::test]
async fn status_lists_every_client_and_session_usage_and_state_changes_reach_everyone() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut a = world.spawn_client().await;
    init_as(&mut a, &fake, "nvim", "0.11.4").await;
    let mut b = world.spawn_client().await;
    init_as(&mut b, &fake, "shell", "1").await;

    // A chats; both see busy, then ready.
    chat(&mut a, "talk", "hello").await;
    for c in [&mut a, &mut b] {
        assert_eq!(next_status(c).await, json!({"state": "busy"}));
        assert_eq!(next_status(c).await, json!({"state": "ready"}));
    }

    let status = b.request("cfgate/status", json!({})).await.unwrap();
    let mut clients = status["clients"].as_array().unwrap().clone();
    clients.sort_by_key(|c| c["name"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        clients,
        [
            json!({"name": "nvim", "version": "0.11.4"}),
            json!({"name": "shell", "version": "1"})
        ]
    );
    let sessions = status["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{status}");
    assert_eq!(sessions[0]["name"], "talk");
    assert_eq!(sessions[0]["turns"], 1);
    assert!(sessions[0]["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // A refused token turns every client's icon to unauthorized; a good answer clears it.
    fake.push_script(Script {
        status: Some(401),
        body: Some(r#"{"result":null,"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[]}"#.into()),
        ..Script::default()
    });
    b.request("cfgate/chat", json!({"messages": user("x")}))
        .await
        .expect_err("refused");
    for c in [&mut a, &mut b] {
        assert_eq!(next_status(c).await["state"], "busy");
        let change = next_status(c).await;
        assert_eq!(change["state"], "unauthorized", "{change}");
        assert!(change["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    chat(&mut b, "talk", "again").await;
    for c in [&mut a, &mut b] {
        assert_eq!(next_status(c).await["state"], "busy");
        assert_eq!(next_status(c).await["state"], "ready");
    }

    // A client that leaves is no longer listed.
    a.close_stdin();
    a.wait_exit().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = b.request("cfgate/status", json!({})).await.unwrap();
        if status["clients"].as_array().unwrap().len() == 1 {
            assert_eq!(status["clients"][0]["name"], "shell");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
    }
}

#[tokio::test]
async fn the_cli_continues_a_session_an_editor_sees_through_the_shared_daemon() {
    let fake = FakeGateway::start().await;
    let world = World::new(&format!(
        "base_url = \"{}\"\n",
        fake.compat_base("acc", "gw")
    ));
    // No daemon yet: the CLI starts it.
    let (ok, out) = world.cli(&["chat", "--session", "talk", "one"]).await;
    assert!(ok);
    assert_eq!(out, "echo: one\n");
    assert_eq!(world.daemons().len(), 1);

    let mut editor = world.client(&fake).await;
    let session = editor
        .request("cfgate/session", json!({"name": "talk"}))
        .await
        .unwrap();
    assert_eq!(session["turns"], 1);
    chat(&mut editor, "talk", "two").await;

    let (ok, out) = world.cli(&["chat", "--session", "talk", "three"]).await;
    assert!(ok);
    assert_eq!(out, "echo: three\n");
    let sent = chat_requests(&fake);
    let texts: Vec<&str> = sent[2].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "echo: one", "two", "echo: two", "three"]);
    // Three processes (two CLI runs, one editor), one pool (a second connection may rarely
    // win a race with the pool; without sharing there would be three).
    let connections = fake.connections_accepted();
    assert!(
        connections <= 2,
        "{connections} upstream connections: no shared pool"
    );

    let (ok, out) = world.cli(&["sessions"]).await;
    assert!(ok);
    assert!(
        out.starts_with("talk ") && out.contains(" 3 turns"),
        "{out}"
    );

    let (ok, out) = world.cli(&["status"]).await;
    assert!(ok);
    assert!(out.contains("shared daemon running"), "{out}");
    assert!(out.contains("client        cfgate-tests 1"), "{out}");
    assert!(out.contains("session       talk (3 turns"), "{out}");

    let (ok, _) = world.cli(&["chat", "--session", "../x", "hi"]).await;
    assert!(!ok, "a bad session name is refused");
    assert_eq!(world.daemons().len(), 1);
}

/// Even when the folder and socket are opened up to everyone (by mistake), a process of
/// another user is refused: the daemon checks the peer's uid (SO_PEERCRED).
#[tokio::test]
async fn a_connection_from_another_user_is_refused() {
    if rustix_uid() != 0 || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to act as another user");
        return;
    }
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut a = world.client(&fake).await;
    let open = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    open(world.runtime.path(), 0o755).unwrap();
    open(&world.run_dir(), 0o755).unwrap();
    open(&world.socket(), 0o666).unwrap();
    let probe = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(sys.argv[1])
body = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}'
try:
    s.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    print("answered" if s.recv(100) else "closed")
except (BrokenPipeError, ConnectionResetError):
    print("closed")
"#;
    let out = tokio::process::Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            probe,
        ])
        .arg(world.socket())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "closed",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The owner is still served.
    assert_eq!(
        chat(&mut a, "u", "still here").await["content"],
        "echo: still here"
    );
}

fn rustix_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX)
}

/// An editor quitting (shutdown, exit) ends its relay, not the daemon other tools use.
#[tokio::test]
async fn exit_from_one_client_ends_its_relay_not_the_daemon() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut a = world.client(&fake).await;
    let mut b = world.client(&fake).await;
    let daemon = world.pid_file().unwrap();
    a.request("shutdown", Value::Null).await.unwrap();
    a.notify("exit", Value::Null).await;
    a.wait_exit().await;
    assert_eq!(chat(&mut b, "e", "still").await["content"], "echo: still");
    assert_eq!(world.daemons(), vec![daemon]);
}
