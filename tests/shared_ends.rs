//! How a shared-daemon connection ends, as the editor sees it: `cfgate stop` answers what is
//! in flight and the relay says why it exits; a killed daemon ends the relay; the editor
//! closing its stdin ends the relay, not the daemon.

#![cfg(unix)]

mod common;

use common::world::*;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn stop_answers_the_stream_in_flight_and_the_relay_exits_saying_why() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut editor = world.client(&fake).await;
    let id = editor.start_held_stream(&fake).await;

    let out = world.cli_with(&world.env(), &["stop"]).await;
    assert!(out.status.success(), "{out:?}");

    let error = editor
        .response(id)
        .await
        .expect_err("answered with an error");
    assert_eq!(error["code"], 1030, "{error}");
    assert_eq!(error["data"]["kind"], "daemon_stopped", "{error}");
    let status = editor.wait_exit().await;
    assert_eq!(status.code(), Some(1));
    let stderr = editor.stderr();
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("cfgate: "))
        .collect();
    assert_eq!(
        said,
        ["cfgate: the shared daemon was stopped (`cfgate stop`)"],
        "{stderr}"
    );
    assert!(
        fake.wait_for_stream_dropped(WAIT).await,
        "the upstream stream was dropped"
    );
    assert!(world.daemons().is_empty());
}

#[tokio::test]
async fn a_killed_daemon_ends_the_relay_with_a_reason() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut editor = world.client(&fake).await;
    editor.start_held_stream(&fake).await;
    let daemon = world.pid_file().expect("a daemon");
    kill9(daemon);
    let status = editor.wait_exit().await;
    assert_eq!(status.code(), Some(1));
    let stderr = editor.stderr();
    assert!(
        stderr.contains("cfgate: the shared daemon closed the connection without a word"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_editor_closing_stdin_ends_its_relay_with_0_and_not_the_daemon() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut first = world.client(&fake).await;
    let mut second = world.client(&fake).await;
    let daemon = world.pid_file().expect("a daemon");
    first.close_stdin();
    let status = first.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", first.stderr());
    let answer: Value = second
        .request("cfgate/chat", json!({"messages": user("still")}))
        .await
        .unwrap();
    assert_eq!(answer["content"], "echo: still");
    assert_eq!(world.daemons(), vec![daemon]);
}
