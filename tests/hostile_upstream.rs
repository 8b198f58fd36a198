//! Answers no real gateway sends, from something posing as it: an absurd tool-call index,
//! an endless stream, one endless SSE line. Each ends its request with a clear error, keeps
//! the daemon's memory bounded while it arrives (peak RSS, VmHWM), and leaves the same
//! daemon answering the next request.

mod common;

use common::*;
use serde_json::{Value, json};

/// The daemon's peak resident set so far, in KiB (Linux: VmHWM in /proc/<pid>/status).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

/// What a hostile answer may cost the daemon at its peak: the 32 MiB answer bound, the
/// text kept of it, and the progress notifications on their way out, with room to spare.
/// An unbounded daemon passes it within seconds (it grew by gigabytes before the fix).
const PEAK_RSS_BOUND_KIB: u64 = 256 * 1024;

/// A streamed chat, answered by the script queued before it.
async fn streamed_chat(d: &mut Daemon, text: &str) -> (Vec<Value>, Result<Value, Value>) {
    d.streamed("cfgate/chat", json!({"messages": user(text)}))
        .await
}

/// The same daemon still answers, and within the memory bound.
async fn still_serving(d: &mut Daemon) {
    let answer = d
        .request("cfgate/chat", json!({"messages": user("after")}))
        .await
        .expect("the next request is answered");
    assert_eq!(answer["content"], "echo: after");
    let peak = peak_rss_kib(d.pid());
    assert!(
        peak < PEAK_RSS_BOUND_KIB,
        "the daemon's peak RSS reached {peak} KiB (bound {PEAK_RSS_BOUND_KIB} KiB)"
    );
}

#[tokio::test]
async fn an_absurd_tool_call_index_is_a_malformed_answer_and_the_daemon_goes_on() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    for index in [json!(1_000_000_000_000u64), json!(-1), json!(1.5)] {
        fake.push_script(Script {
            hostile: Some(Hostile::ToolCallIndex(index.clone())),
            ..Script::default()
        });
        let (_, answer) = streamed_chat(&mut d, "call a tool").await;
        let err = answer.expect_err("a malformed answer is an error");
        assert_eq!(err["data"]["kind"], "bad_response", "{index}: {err}");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("tool call index {index}")),
            "{message}"
        );
        still_serving(&mut d).await;
    }
    // The raw event is in the log, at debug, for whoever reports the upstream's fault
    // (stderr gets each line as it is logged; the file through a background thread).
    assert!(d.stderr().contains("call_h"), "{}", d.stderr());
}

#[tokio::test]
async fn an_endless_stream_is_cut_at_the_answer_bound_and_the_daemon_goes_on() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    fake.push_script(Script {
        hostile: Some(Hostile::EndlessStream(4096)),
        ..Script::default()
    });
    let (progress, answer) = streamed_chat(&mut d, "talk forever").await;
    let err = answer.expect_err("an endless answer is an error");
    assert_eq!(err["data"]["kind"], "too_large", "{err}");
    assert_eq!(err["data"]["retryable"], false);
    assert!(err["message"].as_str().unwrap().contains("32 MiB"), "{err}");
    let partial = err["data"]["partial_content"].as_str().unwrap();
    assert!(partial.starts_with(Hostile::OPENING));
    // Everything up to the cut, and nothing past the bound.
    assert!(partial.len() > 16 * 1024 * 1024, "{}", partial.len());
    assert!(partial.len() < 32 * 1024 * 1024, "{}", partial.len());
    assert_eq!(joined_content(&progress), partial);
    assert!(
        fake.wait_for_stream_dropped(WAIT).await,
        "the upstream request was not dropped"
    );
    still_serving(&mut d).await;
}

#[tokio::test]
async fn one_endless_sse_line_is_cut_at_the_event_bound() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    fake.push_script(Script {
        hostile: Some(Hostile::EndlessLine),
        ..Script::default()
    });
    let (_, answer) = streamed_chat(&mut d, "one long line").await;
    let err = answer.expect_err("an endless line is an error");
    assert_eq!(err["data"]["kind"], "too_large", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("one event"),
        "{err}"
    );
    assert_eq!(err["data"]["partial_content"], Hostile::OPENING);
    assert!(
        fake.wait_for_stream_dropped(WAIT).await,
        "the upstream request was not dropped"
    );
    still_serving(&mut d).await;
}

#[tokio::test]
async fn a_whole_answer_past_the_bound_is_too_large_and_the_daemon_goes_on() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let text = "x".repeat(33 * 1024 * 1024);
    fake.push_script(Script {
        body: Some(format!(
            r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}]}}"#
        )),
        ..Script::default()
    });
    drop(text);
    // Without a progress token: a whole (non-streamed) answer.
    let err = d
        .request("cfgate/chat", json!({"messages": user("a lot")}))
        .await
        .expect_err("an answer past the bound is an error");
    assert_eq!(err["data"]["kind"], "too_large", "{err}");
    assert!(err["message"].as_str().unwrap().contains("32 MiB"), "{err}");
    still_serving(&mut d).await;
}

/// Reads one frame body from cfgate's stdout; `None` at its end.
async fn read_frame<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Option<Value> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = value.trim().parse().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// Tiny events (one character each) turn into notifications several times their size. A
/// client that reads nothing while the answer arrives must still not be cut off: what one
/// answer can queue for it stays under its 64 MiB outbox.
#[tokio::test]
async fn tiny_events_cannot_flood_a_client_that_is_not_reading() {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;

    let fake = FakeGateway::start().await;
    fake.push_script(Script {
        hostile: Some(Hostile::EndlessTinyEvents),
        ..Script::default()
    });
    let home = tempfile::tempdir().unwrap();
    let stderr_path = home.path().join("stderr.log");
    let mut child = command(home.path(), &[("CLOUDFLARE_API_TOKEN", TOKEN)])
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let frame = |message: Value| {
        let body = serde_json::to_vec(&message).unwrap();
        let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend(body);
        out
    };
    stdin
        .write_all(&frame(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"processId": null, "capabilities": {},
            "initializationOptions": {"base_url": fake.compat_base("acc", "gw")}}}),
        ))
        .await
        .unwrap();
    let initialized = tokio::time::timeout(WAIT, read_frame(&mut stdout))
        .await
        .unwrap()
        .expect("initialize answered");
    assert_eq!(initialized["id"], 1);
    let mut input = frame(json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
    input.extend(frame(
        json!({"jsonrpc": "2.0", "id": 2, "method": "cfgate/chat",
        "params": {"messages": user("tiny"), "workDoneToken": "tiny"}}),
    ));
    stdin.write_all(&input).await.unwrap();
    // Nothing is read until the daemon has let go of the upstream request: at the bound,
    // or because it cut this client off.
    assert!(
        fake.wait_for_stream_dropped(3 * WAIT).await,
        "the upstream request was never dropped"
    );
    let answer = loop {
        let message = tokio::time::timeout(WAIT, read_frame(&mut stdout))
            .await
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "stdout ended before the answer; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap()
                )
            });
        if message["id"] == 2 {
            break message;
        }
    };
    assert_eq!(answer["error"]["data"]["kind"], "too_large", "{answer}");
    // The same daemon answers the next request, within the memory bound.
    stdin
        .write_all(&frame(
            json!({"jsonrpc": "2.0", "id": 3, "method": "cfgate/chat",
            "params": {"messages": user("after")}}),
        ))
        .await
        .unwrap();
    let next = loop {
        let message = tokio::time::timeout(WAIT, read_frame(&mut stdout))
            .await
            .unwrap()
            .expect("stdout open");
        if message["id"] == 3 {
            break message;
        }
    };
    assert_eq!(next["result"]["content"], "echo: after", "{next}");
    let peak = peak_rss_kib(pid);
    assert!(peak < PEAK_RSS_BOUND_KIB, "peak RSS {peak} KiB");
    drop(stdin);
    child.wait().await.unwrap();
    assert_no_token_in_logs(home.path());
}
