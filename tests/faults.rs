//! Upstream faults and process faults: what the client sees, whether it was retried, and
//! that the daemon goes on serving (or ends, when its client is gone).

mod common;

use common::*;
use serde_json::{Value, json};

const UNAVAILABLE_7009: &str = r#"{"result":null,"success":false,"errors":[{"code":7009,"message":"Upstream service unavailable"}],"messages":[]}"#;

fn error_script(status: u16, body: &str, repeat: u32) -> Script {
    Script {
        status: Some(status),
        body: Some(body.into()),
        repeat,
        ..Script::default()
    }
}

async fn daemon(fake: &FakeGateway, extra: Value) -> Daemon {
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    let mut options = json!({ "base_url": fake.compat_base("acc", "gw") });
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    d.initialize(options).await;
    d
}

#[tokio::test]
async fn transient_failures_are_retried_then_answered() {
    let fake = FakeGateway::start().await;
    let mut d = daemon(&fake, json!({})).await;
    let transient = [
        error_script(503, UNAVAILABLE_7009, 1),
        error_script(500, "{}", 1),
        error_script(502, "<html>bad gateway</html>", 1),
        Script {
            status: Some(429),
            body: Some(
                r#"{"success":false,"error":[{"code":2003,"message":"Rate limited"}]}"#.into(),
            ),
            headers: vec![("retry-after".into(), "0".into())],
            ..Script::default()
        },
        Script {
            fault: Some(Fault::ResetBeforeHeaders),
            ..Script::default()
        },
    ];
    for (i, script) in transient.into_iter().enumerate() {
        let label = format!("{script:?}");
        fake.push_script(script);
        let answer = d
            .request(
                "cfgate/chat",
                json!({"messages": user(&format!("try {i}"))}),
            )
            .await
            .unwrap_or_else(|e| panic!("{label}: not retried: {e}"));
        assert_eq!(answer["content"], format!("echo: try {i}"), "{label}");
    }
    assert_eq!(chat_requests(&fake).len(), 10, "each fault was sent twice");
    let status = d.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status["requests"]["retries"], 5);
    assert_eq!(status["requests"]["failed"], 0);
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    let fake = FakeGateway::start().await;
    let mut d = daemon(&fake, json!({})).await;
    for status in [400u16, 401, 403, 404, 413, 422] {
        fake.clear_requests();
        fake.push_script(error_script(
            status,
            r#"{"error":{"message":"no","type":"x"}}"#,
            1,
        ));
        let err = d
            .request("cfgate/chat", json!({"messages": user("hi")}))
            .await
            .unwrap_err();
        assert_eq!(err["data"]["status"], status);
        assert_eq!(err["data"]["attempts"], 1);
        assert_eq!(chat_requests(&fake).len(), 1, "HTTP {status} was retried");
    }
}

#[tokio::test]
async fn persistent_failure_reports_every_attempt() {
    let fake = FakeGateway::start().await;
    let mut d = daemon(&fake, json!({"max_attempts": 3})).await;
    fake.push_script(error_script(503, UNAVAILABLE_7009, 3));
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["kind"], "unavailable");
    assert_eq!(err["data"]["upstream_code"], 7009);
    assert_eq!(err["data"]["attempts"], 3);
    assert_eq!(err["data"]["retryable"], true);
    assert_eq!(chat_requests(&fake).len(), 3);
    // max_attempts = 1 turns retries off.
    let mut d = daemon(&fake, json!({"max_attempts": 1})).await;
    fake.push_script(error_script(503, UNAVAILABLE_7009, 1));
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["attempts"], 1);
}

#[tokio::test]
async fn a_stream_cut_after_it_began_is_reported_not_replayed() {
    let fake = FakeGateway::start().await;
    let mut d = daemon(&fake, json!({})).await;
    fake.push_script(Script {
        chunks: Some(vec!["one ".into(), "two ".into(), "three".into()]),
        fault: Some(Fault::ResetAfterChunks(2)),
        ..Script::default()
    });
    let (progress, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    let err = answer.unwrap_err();
    assert_eq!(err["data"]["kind"], "stream_cut", "{err}");
    assert_eq!(err["data"]["partial_content"], "one two ");
    assert_eq!(joined_content(&progress), "one two ");
    assert_eq!(
        chat_requests(&fake).len(),
        1,
        "a begun stream must not be sent again"
    );
    assert_eq!(
        d.request("cfgate/chat", json!({"messages": user("next")}))
            .await
            .unwrap()["content"],
        "echo: next"
    );
}

#[tokio::test]
async fn a_stalled_stream_ends_with_a_clear_error() {
    let fake = FakeGateway::start().await;
    let mut d = daemon(&fake, json!({"idle_timeout_secs": 1})).await;
    fake.push_script(Script {
        chunks: Some(vec!["before ".into(), "after".into()]),
        fault: Some(Fault::StallAfterChunks(1)),
        ..Script::default()
    });
    let (_, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    let err = answer.unwrap_err();
    assert_eq!(err["data"]["kind"], "timeout");
    assert!(
        err["message"].as_str().unwrap().contains("stalled"),
        "{err}"
    );
    assert_eq!(err["data"]["partial_content"], "before ");
    assert!(
        fake.wait_for_stream_dropped(WAIT).await,
        "the stalled request was not dropped"
    );

    // Stalled before any header: bounded by timeout_secs, and retried within the deadline.
    let mut d = daemon(&fake, json!({"timeout_secs": 1, "max_attempts": 1})).await;
    fake.push_script(Script {
        fault: Some(Fault::StallBeforeHeaders),
        ..Script::default()
    });
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["kind"], "timeout");
    assert_eq!(
        d.request("cfgate/chat", json!({"messages": user("ok")}))
            .await
            .unwrap()["content"],
        "echo: ok"
    );
}

#[tokio::test]
async fn a_panic_stays_inside_its_request() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_TEST_PANIC", "boom"),
    ])
    .await;
    d.initialize(json!({ "base_url": fake.compat_base("acc", "gw") }))
        .await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("boom")}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32603);
    assert!(
        err["message"].as_str().unwrap().contains("internal error"),
        "{err}"
    );
    let ok = d
        .request("cfgate/chat", json!({"messages": user("after")}))
        .await
        .unwrap();
    assert_eq!(ok["content"], "echo: after");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_and_sigint_end_the_daemon() {
    for signal in ["TERM", "INT"] {
        let fake = FakeGateway::start().await;
        let mut d = Daemon::start(&fake).await;
        d.start_held_stream(&fake).await;
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &d.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        d.wait_exit().await;
        assert!(
            fake.wait_for_stream_dropped(WAIT).await,
            "SIG{signal}: upstream request outlived the daemon"
        );
    }
}

/// The daemon's pid is gone, or a zombie waiting for whoever adopted it.
#[cfg(target_os = "linux")]
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_daemon_exits_when_its_parent_dies_with_stdin_still_open() {
    let home = tempfile::tempdir().unwrap();
    exits_when_its_parent_dies(home.path(), &[], "serve").await;
}

/// The same for `serve --shared`: its relay ends with its parent, and the shared daemon
/// (detached, the relay's child) is stopped here.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_relay_exits_when_its_parent_dies_with_stdin_still_open() {
    let home = tempfile::tempdir().unwrap();
    let run_dir = home.path().join("run");
    let run = run_dir.display().to_string();
    exits_when_its_parent_dies(
        home.path(),
        &[("CFGATE_RUNTIME_DIR", &run)],
        "serve --shared",
    )
    .await;
    let stop = command_for(env!("CARGO_BIN_EXE_cfgate"), home.path(), &[])
        .env("CFGATE_RUNTIME_DIR", &run)
        .arg("stop")
        .output()
        .await
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
}

/// Starts `cfgate <args>` as the child of a shell, with the shell's stdin (our pipe, kept
/// open throughout), sends one request, kills the shell and waits for cfgate to exit.
#[cfg(target_os = "linux")]
async fn exits_when_its_parent_dies(home: &std::path::Path, env: &[(&str, &str)], args: &str) {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let stderr_path = home.join("stderr.log");
    // sh stands in for the editor. A background job's stdin would be /dev/null (and its EOF
    // alone would end the daemon), so the daemon gets sh's stdin, our pipe, explicitly: only
    // the parent's death can end it. We keep the pipe's write end open throughout.
    let script = format!(
        "exec 3<&0; '{}' {args} <&3 3<&- 2>'{}' & echo $!; wait",
        env!("CARGO_BIN_EXE_cfgate"),
        stderr_path.display()
    );
    let mut parent = command_for("sh", home, env)
        .env("CLOUDFLARE_API_TOKEN", TOKEN)
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = parent.stdin.take().unwrap();
    let mut stdout = BufReader::new(parent.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(WAIT, stdout.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    let pid: u32 = line.trim().parse().expect("daemon pid from sh");
    // The daemon is up and serving (its parent-watch is running) before the parent goes.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"cfgate/status"}"#;
    stdin
        .write_all(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let mut header = String::new();
    tokio::time::timeout(WAIT, stdout.read_line(&mut header))
        .await
        .unwrap()
        .unwrap();
    assert!(header.starts_with("Content-Length"), "{header:?}");
    assert!(!process_gone(pid));

    parent.start_kill().unwrap();
    parent.wait().await.unwrap();
    let killed = std::time::Instant::now();
    while !process_gone(pid) {
        if killed.elapsed() > WAIT {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!(
                "`cfgate {args}` outlived its parent; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let took = killed.elapsed();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(stderr.contains("is gone; exiting"), "{stderr}");
    eprintln!("`cfgate {args}` exited {took:?} after its parent died");
    drop(stdin);
}

#[tokio::test]
async fn a_whole_answer_that_stalls_mid_body_ends_after_the_idle_timeout() {
    let fake = FakeGateway::start().await;
    // timeout_secs stays at its 300 s default: only the idle timeout can end this.
    let mut d = daemon(&fake, json!({"idle_timeout_secs": 1, "max_attempts": 1})).await;
    fake.push_script(Script {
        fault: Some(Fault::StallAfterChunks(1)),
        ..Script::default()
    });
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["kind"], "timeout", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("stalled"),
        "{err}"
    );
    assert_eq!(
        d.request("cfgate/chat", json!({"messages": user("ok")}))
            .await
            .unwrap()["content"],
        "echo: ok"
    );
}

#[tokio::test]
async fn odd_streams_malformed_lines_huge_pieces_drips_and_no_done() {
    let fake = FakeGateway::start().await;
    let mut d = daemon(&fake, json!({})).await;

    // An event that is not JSON: a clear error, not retried, and the daemon goes on.
    fake.push_script(Script {
        raw_sse: Some(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok \"}}]}\n\ndata: {not json\n\n"
                .into(),
        ),
        ..Script::default()
    });
    let (_, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    let err = answer.unwrap_err();
    assert_eq!(err["data"]["kind"], "bad_response", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("not JSON"),
        "{err}"
    );
    assert_eq!(
        chat_requests(&fake).len(),
        1,
        "a begun stream was sent again"
    );

    // Lines SSE ignores (comments, unknown fields, a stray `event:`) change nothing.
    fake.push_script(Script {
        raw_sse: Some(
            ": keep-alive\n\nevent: message\nnonsense line\nid: 7\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"fine\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
                .into(),
        ),
        ..Script::default()
    });
    let (_, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    assert_eq!(answer.unwrap()["content"], "fine");

    // A huge piece (4 MiB in one event) arrives whole.
    let huge = "h".repeat(4 * 1024 * 1024);
    fake.push_script(Script {
        chunks: Some(vec![huge.clone(), "!".into()]),
        ..Script::default()
    });
    let (progress, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    assert_eq!(joined_content(&progress).len(), huge.len() + 1);
    assert_eq!(
        answer.unwrap()["content"].as_str().unwrap().len(),
        huge.len() + 1
    );

    // One byte per write: the same answer.
    fake.push_script(Script {
        chunks: Some(vec!["drip ".into(), "drop é😀".into()]),
        fault: Some(Fault::DripBytes),
        ..Script::default()
    });
    let (progress, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    assert_eq!(answer.unwrap()["content"], "drip drop é😀");
    assert_eq!(joined_content(&progress), "drip drop é😀");

    // A finish reason without `[DONE]` is a complete answer; neither is a cut.
    fake.push_script(Script {
        chunks: Some(vec!["done ".into(), "anyway".into()]),
        omit_done: true,
        ..Script::default()
    });
    let (_, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    assert_eq!(answer.unwrap()["content"], "done anyway");

    // 429 without Retry-After: retried after a backoff, then answered.
    fake.clear_requests();
    fake.push_script(Script {
        status: Some(429),
        body: Some(r#"{"error":{"message":"Rate limited"}}"#.into()),
        ..Script::default()
    });
    let answer = d
        .request("cfgate/chat", json!({"messages": user("again")}))
        .await
        .unwrap();
    assert_eq!(answer["content"], "echo: again");
    assert_eq!(chat_requests(&fake).len(), 2);
}

#[tokio::test]
async fn a_connect_that_hangs_ends_after_connect_timeout_secs_and_is_retried() {
    // A listener that never accepts, its queue filled: further connects get no answer to
    // their SYN and hang (for minutes, without a connect timeout).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(stream)) =
            tokio::time::timeout(std::time::Duration::from_millis(300), connect).await
        {
            fillers.push(stream);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfgate.toml");
    std::fs::write(&config, "connect_timeout_secs = 1\n").unwrap();
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", config.to_str().unwrap()),
    ])
    .await;
    d.initialize(json!({
        "base_url": format!("http://{addr}/v1/a/g/compat"),
        "max_attempts": 2,
    }))
    .await;
    let started = std::time::Instant::now();
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err["data"]["kind"], "network", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("cannot connect"),
        "{err}"
    );
    assert_eq!(
        err["data"]["attempts"], 2,
        "a connect timeout is retried: {err}"
    );
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
    drop(fillers);
}
