//! Tests over real TCP with a hyper client. Everything waits on events (responses, watch
//! channels) with generous timeouts; nothing sleeps to synchronise.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::{Config, FakeGateway, Fault, Script};

const T: Duration = Duration::from_secs(10);

async fn connect(fake: &FakeGateway) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(fake.addr()).await.expect("connect");
    let (sender, conn) = handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> hyper::Result<Response<Incoming>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    sender.ready().await?;
    sender.send_request(req).await
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request on a fresh connection, body read to the end.
async fn call(
    fake: &FakeGateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut sender = connect(fake).await;
    let resp = tokio::time::timeout(T, send(&mut sender, method, path, headers, body))
        .await
        .expect("timeout")
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = tokio::time::timeout(T, resp.into_body().collect())
        .await
        .expect("timeout")
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

const CHAT: &str = "/v1/acct/gw/compat/chat/completions";

async fn chat(fake: &FakeGateway, body: Value) -> Reply {
    call(fake, "POST", CHAT, &[], &body.to_string()).await
}

fn user(text: &str) -> Value {
    json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": text}])
}

fn assert_gateway_error(r: &Reply, status: u16, code: u64, message: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["result"], json!([]));
    assert_eq!(v["error"][0]["code"], code, "{}", r.text);
    assert_eq!(v["error"][0]["message"], message);
    assert_eq!(v["name"], "AiGatewayError");
    assert_eq!(v["httpCode"], status);
    assert_eq!(v["internalCode"], code);
}

fn assert_v4_error(r: &Reply, status: u16, code: u64, message: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let v = r.json();
    assert_eq!(v["success"], false);
    assert!(v["result"].is_null());
    assert_eq!(v["errors"][0]["code"], code, "{}", r.text);
    assert_eq!(v["errors"][0]["message"], message);
    assert_eq!(v["messages"], json!([]));
}

fn assert_standard_headers(r: &Reply) {
    // Section 10.6: one lowercase UUIDv7 for the three ids of a single-step request.
    let log = r.header("cf-aig-log-id").expect("log id");
    assert_eq!(log.len(), 36, "{log}");
    assert_eq!(&log[14..15], "7", "UUIDv7: {log}");
    assert_eq!(log, log.to_ascii_lowercase());
    assert_eq!(r.header("cf-aig-event-id"), Some(log));
    assert_eq!(r.header("cf-aig-request-id"), Some(log));
    assert_eq!(r.header("cf-aig-step"), Some("0"));
    assert!(r.header("cf-aig-cache-status").is_some());
}

/// The JSON payloads of an SSE body, asserting `data: ` framing with `eol` separators.
fn sse_events(text: &str, eol: &str) -> Vec<String> {
    let sep = format!("{eol}{eol}");
    assert!(text.ends_with(&sep), "unterminated SSE: {text:?}");
    text[..text.len() - sep.len()]
        .split(&sep)
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad event {e:?}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn routing_errors_follow_the_wire_notes() {
    let fake = FakeGateway::start_with(Config {
        known_gateways: Some(vec!["gw".into()]),
        ..Config::default()
    })
    .await;

    let r = chat(
        &fake,
        json!({"model": "@cf/meta/llama-3.3-70b-instruct-fp8-fast", "messages": user("hi")}),
    )
    .await;
    assert_gateway_error(&r, 400, 2008, "Invalid provider");
    assert_standard_headers(&r);
    assert_eq!(r.header("content-type"), Some("application/json"));

    let r = chat(&fake, json!({"model": "kimi-k2.6", "messages": user("hi")})).await;
    assert_gateway_error(&r, 400, 2005, "Failed to get response from provider");

    let r = chat(
        &fake,
        json!({"model": "workers-ai/@cf/google/gemini-2.5-flash", "messages": user("hi")}),
    )
    .await;
    assert_v4_error(&r, 400, 5007, "No such model");

    let r = call(&fake, "POST", CHAT, &[], "not json").await;
    assert_gateway_error(&r, 400, 2019, "Chat completion bad format");
    let r = chat(&fake, json!({"model": "openai/gpt-5-mini"})).await;
    assert_gateway_error(&r, 400, 2019, "Chat completion bad format");

    let doubled = "/v1/acct/gw/compat/chat/completions/chat/completions";
    let r = call(&fake, "POST", doubled, &[], "{}").await;
    assert_gateway_error(
        &r,
        400,
        2019,
        "Compatibility endpoint: chat/completions/chat/completions is not supported.",
    );

    let body = json!({"model": "openai/gpt-5-mini", "messages": user("hi")}).to_string();
    let r = call(
        &fake,
        "POST",
        "/v1/acct/other/compat/chat/completions",
        &[],
        &body,
    )
    .await;
    assert_gateway_error(
        &r,
        400,
        2001,
        "Please configure AI Gateway in the Cloudflare dashboard",
    );

    let rest = "/client/v4/accounts/acct/ai/v1/chat/completions";
    let r = call(&fake, "POST", rest, &[], &body).await;
    assert_gateway_error(
        &r,
        400,
        2001,
        "Please configure AI Gateway in the Cloudflare dashboard",
    );
    let r = call(&fake, "POST", rest, &[("cf-aig-gateway-id", "gw")], &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "echo: hi");

    let r = call(&fake, "GET", "/nowhere", &[], "").await;
    assert_eq!(r.status, 404);
    assert_standard_headers(&r);

    let r = chat(
        &fake,
        json!({"model": "dynamic/customer-support", "messages": user("hi")}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("cf-aig-model"),
        Some("@cf/meta/llama-3.3-70b-instruct-fp8-fast")
    );
    assert_eq!(r.header("cf-aig-provider"), Some("workers-ai"));
    assert_eq!(r.json()["model"], "dynamic/customer-support");

    let r = call(&fake, "GET", "/v1/acct/gw/compat/models", &[], "").await;
    assert_eq!(r.status, 200);
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast".to_string()));
    assert!(ids.contains(&"openai/gpt-5-mini".to_string()));

    // Every request above was recorded, in order.
    let recorded = fake.requests();
    assert_eq!(recorded.len(), 12);
    assert_eq!(recorded[0].path, CHAT);
    assert_eq!(
        recorded[0].body["model"],
        "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
    );
    assert_eq!(recorded[3].raw_body, "not json");
    assert!(recorded[3].body.is_null());
    assert_eq!(recorded[8].header("CF-AIG-Gateway-Id"), Some("gw"));
}

#[tokio::test]
async fn authentication_matrix() {
    let fake = FakeGateway::start_with(Config {
        gateway_token: Some("gwt".into()),
        ..Config::default()
    })
    .await;
    let body = json!({"model": "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast", "messages": user("hi")}).to_string();
    let r = call(&fake, "POST", CHAT, &[], &body).await;
    assert_gateway_error(&r, 401, 2009, "Unauthorized");
    let r = call(
        &fake,
        "POST",
        CHAT,
        &[("authorization", "Bearer gwt")],
        &body,
    )
    .await;
    assert_gateway_error(&r, 401, 2009, "Unauthorized");
    let r = call(
        &fake,
        "POST",
        CHAT,
        &[("cf-aig-authorization", "Bearer gwt")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let fake = FakeGateway::start_with(Config {
        api_token: Some("cft".into()),
        ..Config::default()
    })
    .await;
    let r = call(&fake, "POST", CHAT, &[], &body).await;
    assert_v4_error(&r, 401, 10000, "Authentication error");
    assert_standard_headers(&r);
    let r = call(
        &fake,
        "POST",
        CHAT,
        &[("authorization", "Bearer wrong")],
        &body,
    )
    .await;
    assert_v4_error(&r, 401, 10000, "Authentication error");
    let r = call(
        &fake,
        "POST",
        CHAT,
        &[("authorization", "Bearer cft")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &fake,
        "POST",
        CHAT,
        &[("cf-aig-authorization", "Bearer cft")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Section 10.2: a gateway with authentication on takes the Cloudflare token in
/// `cf-aig-authorization` on compat and in `Authorization` on REST.
#[tokio::test]
async fn authenticated_gateway_takes_the_api_token_in_each_endpoints_header() {
    let fake = FakeGateway::start_with(Config {
        api_token: Some("cft".into()),
        authenticated: true,
        ..Config::default()
    })
    .await;
    let body = json!({"model": "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast", "messages": user("hi")}).to_string();
    let r = call(
        &fake,
        "POST",
        CHAT,
        &[("authorization", "Bearer cft")],
        &body,
    )
    .await;
    assert_gateway_error(&r, 401, 2009, "Unauthorized");
    let both = [
        ("authorization", "Bearer cft"),
        ("cf-aig-authorization", "Bearer cft"),
    ];
    let r = call(&fake, "POST", CHAT, &both, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rest = "/client/v4/accounts/acc/ai/v1/chat/completions";
    let rest_body =
        json!({"model": "@cf/meta/llama-3.3-70b-instruct-fp8-fast", "messages": user("hi")})
            .to_string();
    let r = call(
        &fake,
        "POST",
        rest,
        &[("authorization", "Bearer cft"), ("cf-aig-gateway-id", "gw")],
        &rest_body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &fake,
        "POST",
        rest,
        &[
            ("authorization", "Bearer nope"),
            ("cf-aig-gateway-id", "gw"),
        ],
        &rest_body,
    )
    .await;
    assert_gateway_error(&r, 401, 2009, "Unauthorized");
}

/// Sections 10.3, 10.4: with response scanning on, a streamed request gets the whole
/// answer as JSON, not an event stream.
#[tokio::test]
async fn buffered_answers_to_streamed_requests() {
    let fake = FakeGateway::start_with(Config {
        buffer_streams: true,
        ..Config::default()
    })
    .await;
    let r = chat(
        &fake,
        json!({"model": "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast", "stream": true, "messages": user("hi")}),
    )
    .await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["choices"][0]["message"]["content"], "echo: hi");
    let fake = FakeGateway::start().await;
    fake.push_script(Script {
        buffered: true,
        ..Script::default()
    });
    let r = chat(
        &fake,
        json!({"model": "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast", "stream": true, "messages": user("hi")}),
    )
    .await;
    assert_eq!(r.json()["object"], "chat.completion");
}

#[tokio::test]
async fn non_streamed_answer_shape() {
    let fake = FakeGateway::start().await;
    let r = chat(
        &fake,
        json!({"model": "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]},
        ]}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_standard_headers(&r);
    assert_eq!(r.header("cf-aig-cache-status"), Some("MISS"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        v["model"],
        "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast"
    );
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello world");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 7);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn stream_format_pieces_and_done() {
    let fake = FakeGateway::start().await;
    let text = "the quick  brown fox\njumps";
    let r = chat(
        &fake,
        json!({"model": "openai/gpt-5-mini", "messages": user(text), "stream": true,
               "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_standard_headers(&r);
    let events = sse_events(&r.text, "\n");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(chunks.iter().all(|c| c["model"] == "openai/gpt-5-mini"));
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, format!("echo: {text}"));
    let pieces = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["content"].is_string())
        .count();
    assert_eq!(pieces, 6);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 6);

    // max_tokens: cut after that many pieces with finish_reason "length"; no usage chunk
    // without include_usage.
    let r = chat(
        &fake,
        json!({"model": "openai/gpt-5-mini", "messages": user(text), "stream": true, "max_tokens": 2}),
    )
    .await;
    let events = sse_events(&r.text, "\n");
    assert_eq!(events.len(), 4, "{events:?}");
    let finish: Value = serde_json::from_str(&events[2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert_eq!(fake.streams_dropped(), 0);
}

#[tokio::test]
async fn cache_hit_on_repeat_never_for_streams() {
    let fake = FakeGateway::start().await;
    let body = json!({"model": "openai/gpt-5-mini", "messages": user("cache me")}).to_string();
    let ttl = [("cf-aig-cache-ttl", "3600")];
    let first = call(&fake, "POST", CHAT, &ttl, &body).await;
    assert_eq!(first.header("cf-aig-cache-status"), Some("MISS"));
    let second = call(&fake, "POST", CHAT, &ttl, &body).await;
    assert_eq!(second.header("cf-aig-cache-status"), Some("HIT"));
    assert_eq!(second.text, first.text);
    assert_ne!(
        second.header("cf-aig-log-id"),
        first.header("cf-aig-log-id")
    );
    let skipped = call(
        &fake,
        "POST",
        CHAT,
        &[("cf-aig-cache-ttl", "3600"), ("cf-aig-skip-cache", "true")],
        &body,
    )
    .await;
    assert_eq!(skipped.header("cf-aig-cache-status"), Some("MISS"));
    assert_ne!(skipped.text, first.text, "fresh id expected");
    // No caching headers: never cached.
    let plain = call(&fake, "POST", CHAT, &[], &body).await;
    assert_eq!(plain.header("cf-aig-cache-status"), Some("MISS"));
    // A different body misses.
    let other = json!({"model": "openai/gpt-5-mini", "messages": user("other")}).to_string();
    let r = call(&fake, "POST", CHAT, &ttl, &other).await;
    assert_eq!(r.header("cf-aig-cache-status"), Some("MISS"));
    // Custom key.
    let key = [("cf-aig-cache-key", "k1")];
    assert_eq!(
        call(&fake, "POST", CHAT, &key, &other)
            .await
            .header("cf-aig-cache-status"),
        Some("MISS")
    );
    assert_eq!(
        call(&fake, "POST", CHAT, &key, &other)
            .await
            .header("cf-aig-cache-status"),
        Some("HIT")
    );
    // Streams never.
    let stream =
        json!({"model": "openai/gpt-5-mini", "messages": user("s"), "stream": true}).to_string();
    for _ in 0..2 {
        let r = call(&fake, "POST", CHAT, &ttl, &stream).await;
        assert_eq!(r.header("cf-aig-cache-status"), Some("MISS"));
    }
}

#[tokio::test]
async fn script_queue_is_fifo_with_repeat_then_default() {
    let fake = FakeGateway::start().await;
    fake.push_script(Script {
        status: Some(429),
        body: Some(crate::wire::gateway_error(429, 2003, "Rate limited")),
        headers: vec![("retry-after".into(), "7".into())],
        repeat: 2,
        ..Script::default()
    });
    fake.push_script(Script {
        content: Some("scripted answer".into()),
        ..Script::default()
    });
    // Scripts skip model validation (this model would be 2005).
    let req = json!({"model": "bare", "messages": user("q")});
    for _ in 0..2 {
        let r = chat(&fake, req.clone()).await;
        assert_gateway_error(&r, 429, 2003, "Rate limited");
        assert_eq!(r.header("retry-after"), Some("7"));
        assert_standard_headers(&r);
    }
    let r = chat(&fake, req.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "scripted answer"
    );
    let r = chat(&fake, req).await;
    assert_gateway_error(&r, 400, 2005, "Failed to get response from provider");

    // The same through the control endpoints, which are not recorded.
    let before = fake.requests().len();
    let script = json!({"chunks": ["a", "b"], "workers_ai_style": true, "fault": null});
    let r = call(&fake, "POST", "/__fake/script", &[], &script.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(&fake, "POST", "/__fake/script", &[], "{\"fault\": 3}").await;
    assert_eq!(r.status, 400);
    let r = chat(
        &fake,
        json!({"model": "workers-ai/@cf/google/gemma-4-26b-a4b-it", "messages": user("q"), "stream": true}),
    )
    .await;
    assert!(r.text.contains("\r\n\r\n"));
    let stats = call(&fake, "GET", "/__fake/stats", &[], "").await.json();
    assert_eq!(stats["requests"], before + 1);
    assert!(stats["connections_accepted"].as_u64().unwrap() >= 7);
    let listed = call(&fake, "GET", "/__fake/requests", &[], "").await.json();
    assert_eq!(listed.as_array().unwrap().len(), before + 1);
    let r = call(&fake, "POST", "/__fake/reset", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn connections_are_counted_and_kept_alive() {
    let fake = FakeGateway::start().await;
    let mut sender = connect(&fake).await;
    let body = json!({"model": "openai/gpt-5-mini", "messages": user("hi")}).to_string();
    for _ in 0..3 {
        let resp = send(&mut sender, "POST", CHAT, &[], &body)
            .await
            .expect("response");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.expect("body");
    }
    assert_eq!(fake.connections_accepted(), 1);
    let _second = call(&fake, "POST", CHAT, &[], &body).await;
    assert_eq!(fake.connections_accepted(), 2);
    let recorded = fake.wait_for_requests(4, T).await;
    assert_eq!(recorded.len(), 4);
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn abandoned_stream_is_detected() {
    let fake = FakeGateway::start().await;
    fake.push_script(Script {
        chunks: Some(vec!["one ".into(), "two".into()]),
        hold_open: true,
        ..Script::default()
    });
    let mut sender = connect(&fake).await;
    let body =
        json!({"model": "openai/gpt-5-mini", "messages": user("hi"), "stream": true}).to_string();
    let resp = send(&mut sender, "POST", CHAT, &[], &body)
        .await
        .expect("response");
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(T, body.frame())
        .await
        .expect("timeout")
        .expect("frame")
        .expect("ok");
    let text = String::from_utf8_lossy(frame.data_ref().expect("data")).into_owned();
    assert!(text.contains("\"role\":\"assistant\""), "{text}");
    assert_eq!(fake.streams_dropped(), 0);
    drop(body);
    drop(sender);
    assert!(fake.wait_for_stream_dropped(T).await);
    assert_eq!(fake.streams_dropped(), 1);
}

#[tokio::test]
async fn paced_stream_abandoned_mid_delay_is_detected() {
    let fake = FakeGateway::start_with(Config {
        chunk_delay: Duration::from_secs(30),
        ..Config::default()
    })
    .await;
    let mut sender = connect(&fake).await;
    let body = json!({"model": "openai/gpt-5-mini", "messages": user("a b c"), "stream": true})
        .to_string();
    let resp = send(&mut sender, "POST", CHAT, &[], &body)
        .await
        .expect("response");
    let mut body = resp.into_body();
    tokio::time::timeout(T, body.frame())
        .await
        .expect("timeout");
    drop(body);
    drop(sender);
    assert!(fake.wait_for_stream_dropped(T).await);
}

#[tokio::test]
async fn faults() {
    let fake = FakeGateway::start().await;
    let body =
        json!({"model": "openai/gpt-5-mini", "messages": user("one two three"), "stream": true})
            .to_string();

    fake.push_script(Script {
        fault: Some(Fault::ResetBeforeHeaders),
        ..Script::default()
    });
    let mut sender = connect(&fake).await;
    let err = tokio::time::timeout(T, send(&mut sender, "POST", CHAT, &[], &body))
        .await
        .expect("timeout");
    assert!(err.is_err(), "expected a reset, got {err:?}");
    assert_eq!(
        fake.requests().len(),
        1,
        "the request was read and recorded"
    );

    fake.push_script(Script {
        fault: Some(Fault::ResetAfterChunks(2)),
        ..Script::default()
    });
    let mut sender = connect(&fake).await;
    let resp = send(&mut sender, "POST", CHAT, &[], &body)
        .await
        .expect("headers");
    assert_eq!(resp.status(), 200);
    let mut body_stream = resp.into_body();
    let mut frames = 0;
    let outcome = loop {
        match tokio::time::timeout(T, body_stream.frame())
            .await
            .expect("timeout")
        {
            Some(Ok(_)) => frames += 1,
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    assert!(outcome.is_err(), "body must end in an error");
    assert_eq!(frames, 2);

    fake.push_script(Script {
        fault: Some(Fault::DripBytes),
        ..Script::default()
    });
    let r = call(&fake, "POST", CHAT, &[], &body).await;
    let events = sse_events(&r.text, "\n");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Stall before headers: no answer; dropping the fake releases the client.
    fake.push_script(Script {
        fault: Some(Fault::StallBeforeHeaders),
        ..Script::default()
    });
    let mut sender = connect(&fake).await;
    let pending = tokio::spawn(async move {
        send(&mut sender, "POST", CHAT, &[], &body)
            .await
            .map(|_| ())
    });
    fake.wait_for_requests(4, T).await;
    drop(fake);
    let result = tokio::time::timeout(T, pending)
        .await
        .expect("released")
        .expect("join");
    assert!(result.is_err());
}

#[tokio::test]
async fn raw_sse_is_sent_verbatim_in_pieces() {
    let fake = FakeGateway::start().await;
    let raw = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n";
    fake.push_script(Script {
        raw_sse: Some(raw.into()),
        split_raw_at: Some(vec![10, 60, 62]),
        ..Script::default()
    });
    let mut sender = connect(&fake).await;
    let body =
        json!({"model": "openai/gpt-5-mini", "messages": user("hi"), "stream": true}).to_string();
    let resp = send(&mut sender, "POST", CHAT, &[], &body)
        .await
        .expect("response");
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = tokio::time::timeout(T, body.frame())
        .await
        .expect("timeout")
    {
        if let Ok(data) = frame.expect("frame").into_data() {
            frames.push(data);
        }
    }
    assert_eq!(frames.concat(), raw.as_bytes());
    assert_eq!(frames.len(), 4, "one frame per split");
}

#[tokio::test]
async fn workers_ai_style_stream() {
    let fake = FakeGateway::start().await;
    fake.push_script(Script {
        workers_ai_style: true,
        ..Script::default()
    });
    let r = chat(
        &fake,
        json!({"model": "workers-ai/@cf/google/gemma-4-26b-a4b-it", "messages": user("hello there"), "stream": true}),
    )
    .await;
    let events = sse_events(&r.text, "\r\n");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let trailer = chunks.last().unwrap();
    assert_eq!(trailer["response"], "");
    assert!(trailer.get("choices").is_none());
    let cumulative = &trailer["usage"];
    let openai = &chunks[..chunks.len() - 1];
    assert!(openai.iter().all(|c| c["p"].is_string()));
    assert!(
        openai
            .iter()
            .all(|c| c["model"] == "@cf/google/gemma-4-26b-a4b-it-external")
    );
    assert_eq!(openai.last().unwrap()["choices"], json!([]));
    assert_eq!(&openai.last().unwrap()["usage"], cumulative);
    let with_choices = &openai[..openai.len() - 1];
    assert!(with_choices.iter().all(|c| c["usage"].is_object()));
    assert!(with_choices[0]["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(with_choices[0]["choices"][0]["delta"]["reasoning_content"].is_null());
    assert!(with_choices[0]["choices"][0].get("logprobs").is_some());
    let sum: u64 = with_choices
        .iter()
        .map(|c| c["usage"]["completion_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, cumulative["completion_tokens"].as_u64().unwrap());
    let joined: String = with_choices
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, "echo: hello there");
}

#[tokio::test]
async fn tool_calls_and_reasoning() {
    let fake = FakeGateway::start().await;
    let calls = json!([{"id": "abc123XYZ", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]);
    let script = Script {
        tool_calls: Some(calls.clone()),
        reasoning: Some(vec!["think ".into(), "hard".into()]),
        repeat: 2,
        ..Script::default()
    };
    fake.push_script(script);
    let req = json!({"model": "openai/gpt-5-mini", "messages": user("weather?"), "stream": true});
    let r = chat(&fake, req.clone()).await;
    let events = sse_events(&r.text, "\n");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["reasoning_content"],
        "think "
    );
    let tool_deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(tool_deltas[0][0]["id"], "abc123XYZ");
    assert_eq!(tool_deltas[0][0]["function"]["name"], "get_weather");
    let args: String = tool_deltas[1..]
        .iter()
        .filter_map(|d| d[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    assert_eq!(
        tool_deltas.len(),
        5,
        "start + 3 argument parts + null finalisation"
    );
    let last = tool_deltas.last().unwrap();
    assert!(last[0]["id"].is_null() && last[0]["type"].is_null());
    assert!(last[0]["function"]["name"].is_null());
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    let mut plain = req;
    plain["stream"] = json!(false);
    let v = chat(&fake, plain).await.json();
    assert_eq!(v["choices"][0]["message"]["tool_calls"], calls);
    assert!(v["choices"][0]["message"]["content"].is_null());
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "think hard"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn truncated_streams() {
    let fake = FakeGateway::start().await;
    fake.push_script(Script {
        omit_done: true,
        omit_finish: true,
        ..Script::default()
    });
    let r = chat(
        &fake,
        json!({"model": "openai/gpt-5-mini", "messages": user("x"), "stream": true}),
    )
    .await;
    assert!(!r.text.contains("[DONE]"));
    assert!(!r.text.contains("finish_reason\":\"stop"));
    assert!(r.text.contains("echo: "));
}

#[tokio::test]
#[should_panic(expected = "timed out")]
async fn wait_for_requests_panics_on_timeout() {
    let fake = FakeGateway::start().await;
    fake.wait_for_requests(1, Duration::from_millis(50)).await;
}

#[tokio::test]
async fn drop_closes_open_streams() {
    let fake = FakeGateway::start().await;
    fake.push_script(Script {
        hold_open: true,
        ..Script::default()
    });
    let mut sender = connect(&fake).await;
    let body =
        json!({"model": "openai/gpt-5-mini", "messages": user("hi"), "stream": true}).to_string();
    let resp = send(&mut sender, "POST", CHAT, &[], &body)
        .await
        .expect("response");
    let addr = fake.addr();
    drop(fake);
    let mut body = resp.into_body();
    // The open stream ends (with an error: no terminating chunk) once the fake is gone.
    let ended =
        tokio::time::timeout(T, async { while let Some(Ok(_)) = body.frame().await {} }).await;
    assert!(ended.is_ok());
    // And the listener is closed.
    let refused = tokio::time::timeout(T, async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok());
}

#[test]
fn script_json_for_control_clients() {
    let s: Script = serde_json::from_str(
        r#"{"fault": {"reset_after_chunks": 2}, "headers": [["retry-after", "3"]], "status": 503}"#,
    )
    .expect("script");
    assert!(matches!(s.fault, Some(Fault::ResetAfterChunks(2))));
    assert_eq!(s.headers, [("retry-after".to_string(), "3".to_string())]);
    let s: Script =
        serde_json::from_str(r#"{"fault": "drip_bytes", "repeat": 3}"#).expect("script");
    assert!(matches!(s.fault, Some(Fault::DripBytes)));
    assert_eq!(s.repeat, 3);
}

#[tokio::test]
async fn byok_aliases_are_checked() {
    let fake = FakeGateway::start_with(Config {
        gateway_token: Some("gwt".into()),
        byok_aliases: Some(vec!["default".into(), "prod".into()]),
        ..Config::default()
    })
    .await;
    let body = json!({"model": "openai/gpt-5-mini", "messages": user("hi")}).to_string();
    let auth = ("cf-aig-authorization", "Bearer gwt");
    let r = call(&fake, "POST", CHAT, &[auth], &body).await;
    assert_eq!(r.status, 200, "no alias: the default key");
    let r = call(
        &fake,
        "POST",
        CHAT,
        &[auth, ("cf-aig-byok-alias", "prod")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &fake,
        "POST",
        CHAT,
        &[auth, ("cf-aig-byok-alias", "dev")],
        &body,
    )
    .await;
    assert_gateway_error(
        &r,
        400,
        2040,
        "Provider 'openai' has no BYOK credential named 'dev'. Configured aliases: default, prod",
    );
}

#[tokio::test]
async fn model_catalog_search_is_paged_and_filtered_by_task() {
    let fake = FakeGateway::start_with(Config {
        api_token: Some("cft".into()),
        ..Config::default()
    })
    .await;
    let path = "/client/v4/accounts/acct/ai/models/search?task=Text%20Generation&per_page=2&page=1";
    let r = call(&fake, "GET", path, &[], "").await;
    assert_v4_error(&r, 401, 10000, "Authentication error");
    let auth = [("authorization", "Bearer cft")];
    let r = call(&fake, "GET", path, &auth, "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["result"].as_array().unwrap().len(), 2);
    assert_eq!(v["result_info"]["total_count"], 3);
    assert_eq!(v["result"][0]["task"]["name"], "Text Generation");
    let props = v["result"][0]["properties"].as_array().unwrap();
    assert!(
        props
            .iter()
            .any(|p| p["property_id"] == "context_window" && p["value"] == "24000")
    );
    let page2 = path.replace("page=1", "page=2");
    let r = call(&fake, "GET", &page2, &auth, "").await;
    assert_eq!(r.json()["result"].as_array().unwrap().len(), 1);
    let all = "/client/v4/accounts/acct/ai/models/search";
    let r = call(&fake, "GET", all, &auth, "").await;
    assert_eq!(
        r.json()["result_info"]["total_count"],
        4,
        "no task: every model"
    );
}
