//! The shared daemon spends one rate budget for all its clients (issue 17): editors typing
//! and a person chatting at once stay under the gateway's limit with every chat answered,
//! and identical completions from two clients reach the gateway once.

#![cfg(unix)]

mod common;

use std::time::Duration;

use common::world::*;
use common::*;
use serde_json::{Value, json};
use tokio::time::Instant;

fn completion(n: usize) -> Value {
    json!({
        "prefix": format!("fn step_{n}() {{\n    let x = "),
        "suffix": "\n}\n",
        "language": "rust",
    })
}

/// What one client saw of its completions: answers, and refusals with how long each took.
#[derive(Default)]
struct Typing {
    answered: usize,
    refused: Vec<Duration>,
}

/// A client completing every 100 ms (or as soon as the last answer came, if later) until
/// `until`, each prefix new.
async fn type_until(mut client: Daemon, first: usize, until: Instant) -> (Daemon, Typing) {
    let mut typing = Typing::default();
    let mut n = first;
    while Instant::now() < until {
        let sent = Instant::now();
        match client.request("cfgate/complete", completion(n)).await {
            Ok(answer) => {
                assert!(answer["text"].is_string(), "{answer}");
                typing.answered += 1;
            }
            Err(err) => {
                assert_eq!(err["data"]["kind"], "rate_limited", "{err}");
                assert!(err["data"]["retry_after_ms"].as_u64().is_some(), "{err}");
                typing.refused.push(sent.elapsed());
            }
        }
        n += 1;
        // The pace of a person typing, not a wait for an event.
        tokio::time::sleep_until(sent + Duration::from_millis(100)).await;
    }
    (client, typing)
}

/// The fake's fixed window replayed over what it recorded: for each request, whether it
/// was refused with 429, and the Retry-After it carried.
fn replay_windows(sent: &[RecordedRequest], limit: &RateLimit) -> Vec<Vec<(u64, Option<u64>)>> {
    let window_ms = limit.window.as_millis() as u64;
    let mut windows: Vec<Vec<(u64, Option<u64>)>> = Vec::new();
    let mut start = None;
    for request in sent {
        let at = request.at_ms;
        if start.is_none_or(|s| at - s >= window_ms) {
            start = Some(at);
            windows.push(Vec::new());
        }
        let window = windows.last_mut().unwrap();
        let refused = (window.len() >= limit.requests).then(|| {
            let left = window_ms - (at - start.unwrap());
            left.div_ceil(1000).max(1)
        });
        window.push((at, refused));
    }
    windows
}

#[tokio::test]
async fn two_editors_typing_and_one_chatting_stay_under_the_limit_and_every_chat_is_answered() {
    let limit = RateLimit {
        requests: 4,
        window: Duration::from_secs(3),
        retry_after: true,
    };
    let fake = FakeGateway::start_with(Config {
        rate_limit: Some(limit),
        ..Config::default()
    })
    .await;
    let world = World::new("");
    let typist_a = world.client(&fake).await;
    let typist_b = world.client(&fake).await;
    let mut chatter = world.client(&fake).await;

    // Four windows of typing from two editors, and chats meanwhile.
    let until = Instant::now() + limit.window * 4;
    let a = tokio::spawn(type_until(typist_a, 0, until));
    let b = tokio::spawn(type_until(typist_b, 100_000, until));
    let mut chats = 0;
    while Instant::now() < until {
        let text = format!("question {chats}");
        let answer = chatter
            .request("cfgate/chat", json!({"messages": user(&text)}))
            .await
            .expect("every chat is answered, waiting out the cool-downs");
        assert_eq!(answer["content"], format!("echo: {text}"));
        chats += 1;
    }
    let (_a, typed_a) = a.await.unwrap();
    let (_b, typed_b) = b.await.unwrap();
    assert!(chats >= 2, "the chat got through {chats} times");

    let sent = chat_requests(&fake);
    let windows = replay_windows(&sent, &limit);
    for (i, window) in windows.iter().enumerate() {
        // The limit, the request refused, and at most the other two clients' requests
        // already on their way when that 429 came.
        assert!(
            window.len() <= limit.requests + 3,
            "window {i} saw {} requests: {windows:?}",
            window.len()
        );
    }
    // After a 429 saying Retry-After: N, nothing but the requests already on their way
    // reached the gateway for N seconds.
    let refusals: Vec<(u64, u64)> = windows
        .iter()
        .flatten()
        .filter_map(|(at, refused)| refused.map(|secs| (*at, secs)))
        .collect();
    assert!(
        !refusals.is_empty(),
        "the load never met the limit: {windows:?}"
    );
    for (at, secs) in &refusals {
        let too_soon = sent
            .iter()
            .filter(|r| r.at_ms > *at && r.at_ms < at + secs * 1000)
            .count();
        assert!(
            too_soon <= 2,
            "{too_soon} requests within {secs} s of the 429 at {at} ms: {windows:?}"
        );
    }
    // Completions were shed, at once (never queued behind a cool-down of a second or more).
    let mut refused: Vec<Duration> = typed_a.refused.into_iter().chain(typed_b.refused).collect();
    assert!(!refused.is_empty(), "no completion was refused");
    assert!(typed_a.answered + typed_b.answered > 0);
    refused.sort();
    let median = refused[refused.len() / 2];
    assert!(
        median < Duration::from_millis(50),
        "refusals took {median:?} (median)"
    );
    let slowest = *refused.last().unwrap();
    assert!(
        slowest < Duration::from_millis(900),
        "a refusal took {slowest:?}: it waited for the budget"
    );

    // Every request the daemon sent is in its budget's count, and no more.
    let status = chatter.request("cfgate/status", json!({})).await.unwrap();
    let budgets = status["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 1, "one gateway, one budget: {status}");
    assert_eq!(
        budgets[0]["used_last_minute"].as_u64().unwrap() as usize,
        sent.len(),
        "{status}"
    );
    // And `cfgate status` in a terminal says the same (it exits 1 here: this world's own
    // settings have no account id; the clients sent their base_url themselves).
    let (_, printed) = world.cli(&["status"]).await;
    let budget_line = printed
        .lines()
        .find(|l| l.starts_with("rate budget"))
        .unwrap_or_else(|| panic!("no rate budget in:\n{printed}"));
    assert!(
        budget_line.contains(&format!("{} sent in the last minute", sent.len())),
        "{budget_line}"
    );
    assert!(budget_line.contains("/compat"), "{budget_line}");
}

/// Waits until the shared daemon counts `n` requests in flight.
async fn in_flight(client: &mut Daemon, n: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = client.request("cfgate/status", json!({})).await.unwrap();
        if status["requests"]["in_flight"].as_u64() == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "never {n} in flight: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two clients of one shared daemon; the first has asked for `first_params`, which the
/// fake holds (answering `held_text` once released), and the second for `second_params`,
/// sent once the first is surely in flight. Returns once the daemon counts both.
struct TwoAsking {
    fake: FakeGateway,
    _world: World,
    first: Daemon,
    second: Daemon,
    a: i64,
    b: i64,
}

async fn two_asking(held_text: &str, first_params: Value, second_params: Value) -> TwoAsking {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut first = world.client(&fake).await;
    let mut second = world.client(&fake).await;
    fake.push_script(Script {
        content: Some(held_text.into()),
        held: true,
        ..Script::default()
    });
    let a = first.start_request("cfgate/complete", first_params).await;
    fake.wait_for_requests(1, WAIT).await;
    let b = second.start_request("cfgate/complete", second_params).await;
    in_flight(&mut first, 2).await;
    TwoAsking {
        fake,
        _world: world,
        first,
        second,
        a,
        b,
    }
}

#[tokio::test]
async fn identical_completions_from_two_clients_reach_the_gateway_once() {
    // The second client asks the very same while the first is surely in flight, streamed.
    let mut streamed = completion(7);
    streamed["workDoneToken"] = json!("b");
    let TwoAsking {
        fake,
        mut first,
        mut second,
        a,
        b,
        // Kept to the end: dropping the world stops its daemon.
        _world: _kept,
    } = two_asking("42;", completion(7), streamed).await;
    fake.release();
    let answer_a = first.response(a).await.expect("the first is answered");
    let answer_b = second.response(b).await.expect("the second is answered");
    assert_eq!(answer_a["text"], "42;");
    assert_eq!(answer_b["text"], "42;");
    // The streamed one still sees its text as progress.
    let progress = second.take_progress(&json!("b"));
    assert_eq!(joined_content(&progress), "42;");
    assert_eq!(chat_requests(&fake).len(), 1, "sent upstream once");

    // A different completion is its own request.
    first
        .request("cfgate/complete", completion(8))
        .await
        .unwrap();
    assert_eq!(chat_requests(&fake).len(), 2);
}

#[tokio::test]
async fn a_cancelled_completion_leaves_the_identical_one_to_go_on() {
    let TwoAsking {
        fake,
        mut first,
        mut second,
        a,
        b,
        // Kept to the end: dropping the world stops its daemon.
        _world: _kept,
    } = two_asking("never seen", completion(1), completion(1)).await;
    // The first user typed on: their completion is cancelled, the second's is not.
    first.notify("$/cancelRequest", json!({"id": a})).await;
    let cancelled = first.response(a).await.expect_err("cancelled");
    assert_eq!(cancelled["code"], -32800, "{cancelled}");
    let answer = second
        .response(b)
        .await
        .expect("the second goes on by itself");
    assert!(answer["text"].is_string(), "{answer}");
    assert_eq!(chat_requests(&fake).len(), 2, "the second was sent itself");
}
