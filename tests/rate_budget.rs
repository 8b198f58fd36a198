//! One rate budget for every tool (issue 17): a 429 cools the whole daemon down for that
//! gateway, chat waits it out, completions are refused at once; a `requests_per_minute`
//! budget sheds completions first and keeps a reserve for chat; `cfgate/status` and
//! `cfgate/didChangeStatus` show it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn complete_params() -> Value {
    json!({"prefix": "fn main() {\n    let x = ", "suffix": "\n}\n", "language": "rust"})
}

/// A fake gateway allowing `requests` per fixed `window`, answering 429 with `Retry-After`.
async fn limited_to(requests: usize, window: Duration) -> FakeGateway {
    FakeGateway::start_with(Config {
        rate_limit: Some(RateLimit {
            requests,
            window,
            retry_after: true,
        }),
        ..Config::default()
    })
    .await
}

#[tokio::test]
async fn a_429_cools_the_daemon_down_chat_waits_and_completions_are_refused_at_once() {
    let fake = limited_to(2, Duration::from_secs(3)).await;
    let mut d = Daemon::start(&fake).await;
    for n in 0..2 {
        d.request(
            "cfgate/chat",
            json!({"messages": user(&format!("chat {n}"))}),
        )
        .await
        .expect("within the limit");
    }
    // The third is refused by the gateway (429, Retry-After); the chat waits it out.
    let chat = d
        .start_request("cfgate/chat", json!({"messages": user("the patient one")}))
        .await;
    let limited = fake.wait_for_requests(3, WAIT).await;
    let limited_at = limited[2].at_ms;
    let change = d
        .wait_for("didChangeStatus rate_limited", |m| {
            m["method"] == "cfgate/didChangeStatus" && m["params"]["state"] == "rate_limited"
        })
        .await;
    assert!(
        change["params"]["message"]
            .as_str()
            .unwrap()
            .contains("429")
    );

    // Meanwhile a completion is not queued: refused at once, nothing sent.
    let err = d
        .request("cfgate/complete", complete_params())
        .await
        .expect_err("a completion during a cool-down");
    assert_eq!(err["data"]["kind"], "rate_limited", "{err}");
    assert!(err["data"]["retry_after_ms"].as_u64().unwrap() > 0, "{err}");
    let status = d.request("cfgate/status", json!({})).await.unwrap();
    let budget = &status["budgets"][0];
    assert!(budget["cool_down_ms"].as_u64().unwrap() > 0, "{status}");
    // The gateway said when to come back: waiting is enough, no rate is learned.
    assert_eq!(budget["learned"], false, "{status}");

    let answer = d
        .response(chat)
        .await
        .expect("the chat waited and got through");
    assert_eq!(answer["content"], "echo: the patient one");
    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 4, "the completion never reached the gateway");
    // Nothing reached the gateway before its Retry-After (at least a second) had passed.
    assert!(
        sent[3].at_ms >= limited_at + 1000,
        "sent again {} ms after the 429",
        sent[3].at_ms - limited_at
    );
    d.wait_for("didChangeStatus after the cool-down", |m| {
        m["method"] == "cfgate/didChangeStatus" && m["params"]["state"] != "rate_limited"
    })
    .await;
}

#[tokio::test]
async fn requests_per_minute_sheds_completions_first_and_keeps_a_reserve_for_chat() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    d.initialize(json!({
        "base_url": fake.compat_base("acc", "gw"),
        "requests_per_minute": 5,
    }))
    .await;
    // Five a minute, a fifth kept for chat: four completions go, the fifth is shed.
    let mut answered = 0;
    let mut refused = None;
    for _ in 0..6 {
        match d.request("cfgate/complete", complete_params()).await {
            Ok(_) => answered += 1,
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    assert_eq!(answered, 4);
    let refused = refused.expect("a completion past the budget is shed");
    assert_eq!(refused["data"]["kind"], "rate_limited", "{refused}");
    assert!(refused["data"]["retry_after_ms"].as_u64().unwrap() > 0);
    // The reserve is chat's.
    let answer = d
        .request(
            "cfgate/chat",
            json!({"messages": user("still room for me")}),
        )
        .await
        .expect("chat uses the reserve");
    assert_eq!(answer["content"], "echo: still room for me");
    assert_eq!(chat_requests(&fake).len(), 5, "never more than the budget");
    let status = d.request("cfgate/status", json!({})).await.unwrap();
    let budget = &status["budgets"][0];
    assert_eq!(budget["limit"], 5, "{status}");
    assert_eq!(budget["used_last_minute"], 5, "{status}");
    assert_eq!(budget["learned"], false, "{status}");
    assert!(budget["gateway"].as_str().unwrap().contains("/compat"));
    assert_no_token(&status.to_string(), "status");
}

#[tokio::test]
async fn a_streamed_chat_waiting_for_the_budget_says_how_long_before_its_answer() {
    let fake = limited_to(1, Duration::from_secs(2)).await;
    let mut d = Daemon::start(&fake).await;
    d.request("cfgate/chat", json!({"messages": user("first")}))
        .await
        .expect("within the limit");
    // The second is refused (429, Retry-After) and waits out the cool-down, streamed.
    let (progress, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("second")}))
        .await;
    let answer = answer.expect("the chat waited and got through");
    assert_eq!(answer["content"], "echo: second");
    let waiting = progress
        .iter()
        .position(|p| p["kind"] == "report" && p.get("message").is_some())
        .unwrap_or_else(|| panic!("no report of the wait: {progress:#?}"));
    let message = progress[waiting]["message"].as_str().unwrap();
    let secs: u64 = message
        .strip_prefix("rate limited: waiting ")
        .and_then(|rest| rest.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected message {message:?}"));
    assert!((1..=2).contains(&secs), "{message}");
    // The wait is told before any of the answer, and is not part of it.
    let first_content = progress
        .iter()
        .position(|p| p.get("content").is_some())
        .expect("the answer streamed");
    assert!(waiting < first_content, "{progress:#?}");
    assert!(progress[waiting].get("content").is_none());
    assert_eq!(joined_content(&progress), "echo: second");
}
