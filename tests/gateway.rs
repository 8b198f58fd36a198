//! The AI Gateway surface end to end (issue 8): `cf-aig-*` options, caching, stored keys,
//! both endpoints, tool calls, structured output, the Workers AI stream, the model list and
//! the error hints. Each test drives the real `cfgate serve` against the fake gateway and
//! asserts what a plugin sees and what the gateway was sent. docs/gateway.md names them.

mod common;

use common::*;
use serde_json::{Value, json};

/// A daemon with the token in its environment, initialized with `options` over the fake's
/// compat base URL.
async fn daemon_with(fake: &FakeGateway, options: Value) -> Daemon {
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    let mut init = json!({ "base_url": fake.compat_base("acc", "gw") });
    for (k, v) in options.as_object().unwrap() {
        init[k] = v.clone();
    }
    d.initialize(init).await;
    d
}

/// Settings for the rest endpoint on the fake.
fn rest_settings(fake: &FakeGateway) -> Value {
    json!({
        "endpoint": "rest",
        "api_url": format!("{}/client/v4", fake.url()),
        "account_id": "acc",
        "gateway_id": "gw",
    })
}

/// The `cf-aig-*` option headers (the gateway's own authentication left out).
fn cf_aig_headers(req: &RecordedRequest) -> Vec<(String, String)> {
    req.headers
        .iter()
        .filter(|(n, _)| n.starts_with("cf-aig-") && n != "cf-aig-authorization")
        .cloned()
        .collect()
}

fn hint(err: &Value) -> String {
    err["data"]["hint"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn gateway_options_are_sent_as_cf_aig_headers_and_none_when_unset() {
    let fake = FakeGateway::start().await;
    // Nothing configured: not one cf-aig-* header goes out.
    let mut plain = Daemon::start(&fake).await;
    plain
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap();
    assert_eq!(cf_aig_headers(&chat_requests(&fake)[0]), vec![]);
    fake.clear_requests();

    // Defaults from initializationOptions' `gateway`, the request's own over them.
    let mut d = daemon_with(
        &fake,
        json!({"gateway": {"cache_ttl": 600, "collect_log": true, "metadata": {"app": "vim", "team": "a"}}}),
    )
    .await;
    let options = json!({
        "skip_cache": true, "cache_key": "k-1", "metadata": {"team": "b", "n": 2, "ok": false},
        "collect_log": false, "request_timeout_ms": 2500, "max_attempts": 3,
        "retry_delay_ms": 400, "backoff": "linear", "event_id": "ev-42",
        "custom_cost": {"per_token_in": 0.5, "per_token_out": 1.5}, "byok_alias": "prod",
    });
    d.request(
        "cfgate/chat",
        json!({"messages": user("hi"), "gateway": options}),
    )
    .await
    .unwrap();
    let req = &chat_requests(&fake)[0];
    let expect = [
        ("cf-aig-cache-ttl", "600"),
        ("cf-aig-skip-cache", "true"),
        ("cf-aig-cache-key", "k-1"),
        ("cf-aig-collect-log", "false"),
        ("cf-aig-request-timeout", "2500"),
        ("cf-aig-max-attempts", "3"),
        ("cf-aig-retry-delay", "400"),
        ("cf-aig-backoff", "linear"),
        ("cf-aig-event-id", "ev-42"),
        ("cf-aig-byok-alias", "prod"),
    ];
    for (name, value) in expect {
        assert_eq!(req.header(name), Some(value), "{name}: {:?}", req.headers);
    }
    let metadata: Value = serde_json::from_str(req.header("cf-aig-metadata").unwrap()).unwrap();
    assert_eq!(
        metadata,
        json!({"app": "vim", "team": "b", "n": 2, "ok": false})
    );
    let cost: Value = serde_json::from_str(req.header("cf-aig-custom-cost").unwrap()).unwrap();
    assert_eq!(cost, json!({"per_token_in": 0.5, "per_token_out": 1.5}));
    assert_eq!(cf_aig_headers(req).len(), 12, "{:?}", cf_aig_headers(req));
    assert!(
        req.body.get("gateway").is_none(),
        "gateway options must not reach the OpenAI body: {}",
        req.body
    );

    // cfgate/complete takes the same object.
    d.request(
        "cfgate/complete",
        json!({"prefix": "fn main() {", "gateway": {"event_id": "ev-complete"}}),
    )
    .await
    .unwrap();
    let req = chat_requests(&fake).pop().unwrap();
    assert_eq!(req.header("cf-aig-event-id"), Some("ev-complete"));
    assert_eq!(req.header("cf-aig-cache-ttl"), Some("600"));
}

#[tokio::test]
async fn gateway_table_in_the_config_file_sets_defaults() {
    let fake = FakeGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfgate.toml");
    std::fs::write(
        &path,
        format!(
            "base_url = \"{}\"\n[gateway]\ncache_ttl = 120\nbackoff = \"exponential\"\nmetadata = {{ app = \"cli\" }}\n",
            fake.compat_base("acc", "gw")
        ),
    )
    .unwrap();
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", path.to_str().unwrap()),
    ])
    .await;
    d.initialize(json!({"gateway": {"backoff": "constant"}}))
        .await;
    d.request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap();
    let req = &chat_requests(&fake)[0];
    assert_eq!(req.header("cf-aig-cache-ttl"), Some("120"));
    assert_eq!(
        req.header("cf-aig-backoff"),
        Some("constant"),
        "the client's setting beats the file's"
    );
    assert_eq!(req.header("cf-aig-metadata"), Some(r#"{"app":"cli"}"#));
}

#[tokio::test]
async fn invalid_gateway_options_are_refused_before_sending() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let cases = [
        (
            json!({"metadata": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}}),
            "at most 5",
        ),
        (
            json!({"metadata": {"nested": {"x": 1}}}),
            "gateway.metadata.nested",
        ),
        (json!({"metadata": {"list": [1]}}), "string, number or bool"),
        (json!({"max_attempts": 9}), "max_attempts"),
        (json!({"backoff": "sometimes"}), "backoff"),
        (json!({"cache_ttl": 5}), "cache_ttl"),
        (json!({"colect_log": true}), "colect_log"),
    ];
    for (options, says) in cases {
        let err = d
            .request(
                "cfgate/chat",
                json!({"messages": user("hi"), "gateway": options}),
            )
            .await
            .unwrap_err();
        assert_eq!(err["code"], -32602, "{options}: {err}");
        assert_eq!(err["data"]["kind"], "invalid_params");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(says), "{options}: {message}");
    }
    assert!(chat_requests(&fake).is_empty(), "nothing may be sent");
    // A bad `[gateway]` in initializationOptions fails initialize, naming the key.
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    let err = d
        .request(
            "initialize",
            json!({"capabilities": {}, "initializationOptions": {"gateway": {"cache_tll": 60}}}),
        )
        .await
        .unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("cache_tll"),
        "{err}"
    );
}

#[tokio::test]
async fn cache_ttl_gives_a_hit_on_the_second_identical_request() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let params = json!({"messages": user("cache me"), "gateway": {"cache_ttl": 3600}});
    let first = d.request("cfgate/chat", params.clone()).await.unwrap();
    let second = d.request("cfgate/chat", params.clone()).await.unwrap();
    assert_eq!(first["gateway"]["cache_status"], "MISS");
    assert_eq!(second["gateway"]["cache_status"], "HIT");
    assert_eq!(first["content"], second["content"]);
    // skip_cache goes past it.
    let mut skipping = params.clone();
    skipping["gateway"]["skip_cache"] = json!(true);
    let third = d.request("cfgate/chat", skipping).await.unwrap();
    assert_eq!(third["gateway"]["cache_status"], "MISS");
    // A custom cache key caches too (5 minutes when no TTL is given).
    let keyed = json!({"messages": user("keyed"), "gateway": {"cache_key": "my-key"}});
    let miss = d.request("cfgate/chat", keyed.clone()).await.unwrap();
    let hit = d.request("cfgate/chat", keyed).await.unwrap();
    assert_eq!(miss["gateway"]["cache_status"], "MISS");
    assert_eq!(hit["gateway"]["cache_status"], "HIT");
    // Without caching options nothing is cached.
    let plain = json!({"messages": user("cache me")});
    d.request("cfgate/chat", plain.clone()).await.unwrap();
    let again = d.request("cfgate/chat", plain).await.unwrap();
    assert_eq!(again["gateway"]["cache_status"], "MISS");
}

#[tokio::test]
async fn every_cf_aig_response_header_reaches_the_answer() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let answer = d
        .request(
            "cfgate/chat",
            json!({"messages": user("route me"), "model": "dynamic/support"}),
        )
        .await
        .unwrap();
    let gateway = &answer["gateway"];
    assert_eq!(
        gateway["model"], "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
        "{answer}"
    );
    assert_eq!(gateway["provider"], "workers-ai");
    assert_eq!(gateway["step"], "0");
    assert_eq!(gateway["cache_status"], "MISS");
    for key in ["log_id", "event_id", "request_id"] {
        assert!(
            gateway[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key}: {answer}"
        );
    }
    // Streamed too, and headers the fake was told to add (any cf-aig-* name) come along.
    fake.push_script(Script {
        headers: vec![("cf-aig-trace-id".into(), "0123abcd".into())],
        ..Script::default()
    });
    let (_, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    let answer = answer.unwrap();
    assert_eq!(answer["gateway"]["trace_id"], "0123abcd");
    assert_eq!(answer["gateway"]["step"], "0");
}

#[tokio::test]
async fn byok_leaves_out_the_vendor_key_and_needs_a_token_for_the_gateway() {
    let fake = FakeGateway::start_with(Config {
        gateway_token: Some("gw-secret".into()),
        byok_aliases: Some(vec!["default".into(), "prod".into()]),
        ..Config::default()
    })
    .await;
    // Stored keys without any token: refused before sending, naming the one variable a
    // new user sets (the API token also authenticates to the gateway).
    let mut d = Daemon::spawn(&[]).await;
    d.initialize(json!({"base_url": fake.compat_base("acc", "gw"), "byok": true}))
        .await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["kind"], "missing_credentials");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("CLOUDFLARE_API_TOKEN"),
        "{err}"
    );
    assert!(chat_requests(&fake).is_empty());

    // With it: no Authorization at all, only cf-aig-authorization (no API token needed).
    let mut d = Daemon::spawn(&[("CLOUDFLARE_AI_GATEWAY_TOKEN", "gw-secret")]).await;
    d.initialize(json!({"base_url": fake.compat_base("acc", "gw"), "byok": true}))
        .await;
    let answer = d
        .request(
            "cfgate/chat",
            json!({"messages": user("hi"), "model": "openai/gpt-5-mini", "gateway": {"byok_alias": "prod"}}),
        )
        .await
        .unwrap();
    assert_eq!(answer["content"], "echo: hi");
    let req = chat_requests(&fake).pop().unwrap();
    assert_eq!(req.header("authorization"), None, "{:?}", req.headers);
    assert_eq!(req.header("cf-aig-authorization"), Some("Bearer gw-secret"));
    assert_eq!(req.header("cf-aig-byok-alias"), Some("prod"));

    // An alias the gateway does not hold: 2040 with its hint.
    let err = d
        .request(
            "cfgate/chat",
            json!({"messages": user("hi"), "model": "openai/gpt-5-mini", "gateway": {"byok_alias": "staging"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["data"]["upstream_code"], 2040);
    assert!(hint(&err).contains("alias"), "{err}");

    // The vendor refusing the stored key is told apart from the gateway refusing us.
    fake.push_script(Script {
        status: Some(401),
        body: Some(r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#.into()),
        ..Script::default()
    });
    let err = d
        .request(
            "cfgate/chat",
            json!({"messages": user("hi"), "model": "openai/gpt-5-mini"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], 1011);
    let text = hint(&err);
    assert!(
        text.contains("stored in the gateway (BYOK)") && text.contains("authentication succeeded"),
        "{err}"
    );
}

#[tokio::test]
async fn gateway_401_and_vendor_401_have_different_hints() {
    let fake = FakeGateway::start_with(Config {
        gateway_token: Some("gw-secret".into()),
        ..Config::default()
    })
    .await;
    // No gateway token set: the API token went in cf-aig-authorization and was refused.
    let mut d = Daemon::start(&fake).await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["upstream_code"], 2009);
    assert!(
        hint(&err).contains("api_token (CLOUDFLARE_API_TOKEN) in cf-aig-authorization"),
        "{err}"
    );
    // A wrong one: 2009, check it.
    let mut d = daemon_with(&fake, json!({"gateway_token": "wrong"})).await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["upstream_code"], 2009);
    assert!(
        hint(&err).contains("refused its own authentication"),
        "{err}"
    );
    assert!(hint(&err).contains("not the vendor's key"), "{err}");
    // Past the gateway, the vendor refuses the key cfgate sent.
    let mut d = daemon_with(&fake, json!({"gateway_token": "gw-secret"})).await;
    fake.push_script(Script {
        status: Some(401),
        body: Some(r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#.into()),
        ..Script::default()
    });
    let err = d
        .request(
            "cfgate/chat",
            json!({"messages": user("hi"), "model": "anthropic/claude-sonnet-4-5"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], 1011);
    assert!(hint(&err).contains("vendor refused the key"), "{err}");
    assert!(!hint(&err).contains("gateway_token"), "{err}");
}

#[tokio::test]
async fn the_same_chat_works_through_both_endpoints() {
    let fake = FakeGateway::start().await;
    let mut answers = Vec::new();
    for endpoint in ["compat", "rest"] {
        fake.clear_requests();
        let settings = if endpoint == "rest" {
            rest_settings(&fake)
        } else {
            json!({"base_url": fake.compat_base("acc", "gw")})
        };
        let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
        d.initialize(settings).await;
        let whole = d
            .request(
                "cfgate/chat",
                json!({"messages": user("same on both"), "gateway": {"event_id": "e1"}}),
            )
            .await
            .unwrap();
        let (progress, streamed) = d
            .streamed("cfgate/chat", json!({"messages": user("same on both")}))
            .await;
        let streamed = streamed.unwrap();
        assert_eq!(joined_content(&progress), "echo: same on both");
        fake.push_script(Script {
            tool_calls: Some(json!([{"id": "call1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}])),
            ..Script::default()
        });
        let (_, tools) = d
            .streamed("cfgate/chat", json!({"messages": user("use a tool")}))
            .await;
        let tools = tools.unwrap();
        let sent = chat_requests(&fake);
        assert_eq!(sent.len(), 3, "{endpoint}");
        for req in &sent {
            assert_eq!(
                req.header("authorization"),
                Some(format!("Bearer {TOKEN}").as_str())
            );
            if endpoint == "rest" {
                assert_eq!(req.path, "/client/v4/accounts/acc/ai/v1/chat/completions");
                assert_eq!(req.header("cf-aig-gateway-id"), Some("gw"));
            } else {
                assert_eq!(req.path, "/v1/acc/gw/compat/chat/completions");
                assert_eq!(req.header("cf-aig-gateway-id"), None);
            }
        }
        assert_eq!(sent[0].header("cf-aig-event-id"), Some("e1"));
        // Each endpoint echoes the model in its own spelling.
        let model = if endpoint == "rest" {
            "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
        } else {
            "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast"
        };
        assert_eq!(whole["model"], model);
        answers.push((
            whole["content"].clone(),
            streamed["content"].clone(),
            tools["tool_calls"].clone(),
        ));
    }
    assert_eq!(answers[0], answers[1], "both endpoints answer alike");
    assert_eq!(answers[0].0, "echo: same on both");
    assert_eq!(answers[0].2[0]["function"]["arguments"], "{\"a\":1}");
}

#[tokio::test]
async fn rest_endpoint_needs_an_account_id() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    d.initialize(json!({"endpoint": "rest", "api_url": format!("{}/client/v4", fake.url())}))
        .await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["kind"], "missing_credentials");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("CLOUDFLARE_ACCOUNT_ID")
    );
}

/// SSE text from chunk JSONs.
fn sse(chunks: &[Value]) -> String {
    let mut out: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    out.push_str("data: [DONE]\n\n");
    out
}

fn tool_delta(calls: Value) -> Value {
    json!({"choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": null}]})
}

#[tokio::test]
async fn tool_calls_assemble_in_each_stream_shape() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let finish = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]});

    // 1. Two calls interleaved, arguments split: merged by index.
    fake.push_script(Script {
        raw_sse: Some(sse(&[
            tool_delta(json!([{"index": 0, "id": "callA", "type": "function", "function": {"name": "get_weather", "arguments": ""}}])),
            tool_delta(json!([{"index": 1, "id": "callB", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":"}}])),
            tool_delta(json!([{"index": 0, "function": {"arguments": "{\"city\":"}}])),
            tool_delta(json!([{"index": 1, "function": {"arguments": "\"UTC\"}"}}])),
            tool_delta(json!([{"index": 0, "function": {"arguments": "\"Paris\"}"}}])),
            finish.clone(),
        ])),
        ..Script::default()
    });
    let (progress, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("weather and time")}))
        .await;
    let answer = answer.unwrap();
    let calls = answer["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{answer}");
    assert_eq!(calls[0]["id"], "callA");
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(calls[1]["function"]["name"], "get_time");
    assert_eq!(calls[1]["function"]["arguments"], "{\"tz\":\"UTC\"}");
    assert_eq!(answer["finish_reason"], "tool_calls");
    let reported = progress
        .iter()
        .filter(|p| p["tool_calls"].is_array())
        .count();
    assert_eq!(reported, 5, "one report per tool-call chunk: {progress:?}");

    // 2. Workers AI: a call, then the null finalisation delta (no index), which adds nothing.
    fake.push_script(Script {
        tool_calls: Some(json!([{"id": "Ab3dE6gH9", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"rust\"}"}}])),
        workers_ai_style: true,
        ..Script::default()
    });
    let (_, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("look it up")}))
        .await;
    let answer = answer.unwrap();
    assert_eq!(
        answer["tool_calls"],
        json!([{"id": "Ab3dE6gH9", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"rust\"}"}}]),
        "{answer}"
    );

    // 3. Text first, then a whole call in one delta (glm-4.7-flash).
    fake.push_script(Script {
        raw_sse: Some(sse(&[
            json!({"choices": [{"index": 0, "delta": {"content": "Let me check."}, "finish_reason": null}]}),
            tool_delta(json!([{"index": 0, "id": "c9", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}])),
            finish,
        ])),
        ..Script::default()
    });
    let (_, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("go")}))
        .await;
    let answer = answer.unwrap();
    assert_eq!(answer["content"], "Let me check.");
    assert_eq!(
        answer["tool_calls"],
        json!([{"id": "c9", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}])
    );

    // Not streamed: the calls come whole.
    fake.push_script(Script {
        tool_calls: Some(
            json!([{"id": "w1", "type": "function", "function": {"name": "g", "arguments": "{}"}}]),
        ),
        ..Script::default()
    });
    let answer = d
        .request("cfgate/chat", json!({"messages": user("go")}))
        .await
        .unwrap();
    assert_eq!(answer["tool_calls"][0]["id"], "w1");
    assert_eq!(answer["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn tool_results_go_back_as_tool_messages() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let messages = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call1", "content": "{\"temp\":18}"},
    ]);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    d.request(
        "cfgate/chat",
        json!({"messages": messages, "tools": tools, "tool_choice": "auto"}),
    )
    .await
    .unwrap();
    let body = &chat_requests(&fake)[0].body;
    assert_eq!(body["messages"], messages, "messages pass unchanged");
    assert_eq!(body["tools"], tools);
    assert_eq!(body["tool_choice"], "auto");
}

#[tokio::test]
async fn json_answers_are_checked_when_json_was_asked_for() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let schema = json!({"type": "json_schema", "json_schema": {"name": "Person", "schema": {"type": "object", "properties": {"name": {"type": "string"}}}, "strict": true}});
    // json_schema passes through; a JSON answer is returned as it came.
    fake.push_script(Script {
        content: Some("{\"name\": \"Ada\"}".into()),
        ..Script::default()
    });
    let answer = d
        .request(
            "cfgate/chat",
            json!({"messages": user("who?"), "response_format": schema}),
        )
        .await
        .unwrap();
    assert_eq!(answer["content"], "{\"name\": \"Ada\"}");
    assert_eq!(chat_requests(&fake)[0].body["response_format"], schema);

    // Not JSON: a clear error with the raw text, streamed or not, json_mode or schema.
    for params in [
        json!({"messages": user("who?"), "response_format": schema}),
        json!({"messages": user("who?"), "json_mode": true}),
    ] {
        for stream in [false, true] {
            fake.push_script(Script {
                content: Some("Sure! Here is the JSON: {name: Ada".into()),
                ..Script::default()
            });
            let err = if stream {
                d.streamed("cfgate/chat", params.clone())
                    .await
                    .1
                    .unwrap_err()
            } else {
                d.request("cfgate/chat", params.clone()).await.unwrap_err()
            };
            assert_eq!(err["code"], 1024, "{err}");
            assert_eq!(err["data"]["kind"], "not_json");
            assert_eq!(
                err["data"]["raw_content"],
                "Sure! Here is the JSON: {name: Ada"
            );
            assert!(err["message"].as_str().unwrap().contains("not valid JSON"));
        }
    }
    // Without a JSON request, the same text is a normal answer.
    fake.push_script(Script {
        content: Some("Sure! {name: Ada".into()),
        ..Script::default()
    });
    d.request("cfgate/chat", json!({"messages": user("who?")}))
        .await
        .unwrap();
}

#[tokio::test]
async fn workers_ai_stream_quirks_end_to_end() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    // Padding `p`, usage on every chunk then the cumulative `{"choices":[]}` chunk and the
    // native `{"response":"",usage}` trailer, CRLF, `-external` model echo, reasoning.
    fake.push_script(Script {
        workers_ai_style: true,
        content: Some("one two three".into()),
        reasoning: Some(vec!["thinking ".into(), "hard".into()]),
        finish_reason: Some("model_length".into()),
        usage: Some(json!({"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14})),
        ..Script::default()
    });
    let (progress, answer) = d
        .streamed(
            "cfgate/chat",
            json!({"messages": user("count"), "model": "@cf/google/gemma-4-26b-a4b-it"}),
        )
        .await;
    let answer = answer.unwrap();
    assert_eq!(answer["content"], "one two three");
    assert_eq!(joined_content(&progress), "one two three");
    assert_eq!(answer["reasoning"], "thinking hard");
    assert_eq!(
        answer["finish_reason"], "length",
        "model_length maps to length"
    );
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}),
        "usage counted once, not summed"
    );
    assert_eq!(
        answer["model"], "workers-ai/@cf/google/gemma-4-26b-a4b-it",
        "the routed id, not the -external echo"
    );

    // `reasoning` spelled without `_content`, and a native-only stream.
    fake.push_script(Script {
        raw_sse: Some(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"hmm\"}}],\"p\":\"xx\"}\r\n\r\n\
             data: {\"response\":\"Hi\",\"p\":\"abc\"}\r\n\r\n\
             data: {\"response\":\" there\"}\r\n\r\n\
             data: {\"response\":\"\",\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4}}\r\n\r\n\
             data: [DONE]\r\n\r\n"
                .into(),
        ),
        ..Script::default()
    });
    let (_, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    let answer = answer.unwrap();
    assert_eq!(answer["reasoning"], "hmm");
    assert_eq!(answer["content"], "Hi there");
    assert_eq!(answer["usage"]["total_tokens"], 4);
}

#[tokio::test]
async fn models_are_listed_cached_and_refreshed() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let first = d.request("cfgate/models", json!({})).await.unwrap();
    assert_eq!(first["source"], "compat");
    assert_eq!(first["cached"], false);
    let models = first["models"].as_array().unwrap();
    assert!(
        models.iter().any(
            |m| m["id"] == "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast"
                && m["cost_in"] == 0.29
        ),
        "{first}"
    );
    let second = d.request("cfgate/models", json!({})).await.unwrap();
    assert_eq!(second["cached"], true);
    assert_eq!(second["models"], first["models"]);
    let gets = |fake: &FakeGateway| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/models"))
            .count()
    };
    assert_eq!(gets(&fake), 1, "the second list came from the cache");
    let third = d
        .request("cfgate/models", json!({"refresh": true}))
        .await
        .unwrap();
    assert_eq!(third["cached"], false);
    assert_eq!(gets(&fake), 2);
    let req = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .unwrap();
    assert_eq!(req.path, "/v1/acc/gw/compat/models");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // The rest endpoint reads the catalog: context window, function calling, price.
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    d.initialize(rest_settings(&fake)).await;
    let catalog = d.request("cfgate/models", json!({})).await.unwrap();
    assert_eq!(catalog["source"], "catalog");
    let models = catalog["models"].as_array().unwrap();
    assert_eq!(models.len(), 3, "text generation only: {catalog}");
    // Listed in the REST endpoint's own spelling (no `workers-ai/`).
    let llama = models
        .iter()
        .find(|m| m["id"] == "@cf/meta/llama-3.3-70b-instruct-fp8-fast")
        .unwrap();
    assert_eq!(llama["context_window"], 24000);
    assert_eq!(llama["function_calling"], true);
    assert_eq!(llama["cost_out"], 2.25);
    let search = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/ai/models/search"))
        .unwrap();
    assert_eq!(search.path, "/client/v4/accounts/acc/ai/models/search");
    assert!(
        search
            .query
            .as_deref()
            .unwrap()
            .contains("task=Text+Generation"),
        "{:?}",
        search.query
    );
    // Keys a method does not know are ignored, as by every method but chat
    // (docs/protocol.md): a newer plugin's extra key does not break an older daemon.
    let listed = d
        .request("cfgate/models", json!({"refresh": false, "newer_key": 1}))
        .await
        .expect("an unknown key is ignored");
    assert_eq!(listed["source"], "catalog");
}

#[tokio::test]
async fn compat_models_get_workers_ai_details_from_the_catalog() {
    let fake = FakeGateway::start().await;
    let mut d = daemon_with(
        &fake,
        json!({"account_id": "acc", "api_url": format!("{}/client/v4", fake.url())}),
    )
    .await;
    let answer = d.request("cfgate/models", json!({})).await.unwrap();
    assert_eq!(answer["source"], "compat+catalog");
    let models = answer["models"].as_array().unwrap();
    assert_eq!(
        models.len(),
        5,
        "the gateway's list decides which models: {answer}"
    );
    let llama = models
        .iter()
        .find(|m| m["id"] == "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast")
        .unwrap();
    assert_eq!(llama["context_window"], 24000);
    assert_eq!(llama["function_calling"], true);
    let openai = models
        .iter()
        .find(|m| m["id"] == "openai/gpt-5-mini")
        .unwrap();
    assert!(openai["context_window"].is_null());
    let search = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/ai/models/search"))
        .expect("catalog asked");
    assert_eq!(
        search.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // The catalog out of reach: the list still comes, without details.
    let mut d = daemon_with(
        &fake,
        json!({"account_id": "acc", "api_url": "http://127.0.0.1:1/client/v4"}),
    )
    .await;
    let answer = d.request("cfgate/models", json!({})).await.unwrap();
    assert_eq!(answer["source"], "compat");
    assert_eq!(answer["models"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn models_command_prints_a_table() {
    let fake = FakeGateway::start().await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "endpoint = \"rest\"\napi_url = \"{}/client/v4\"\naccount_id = \"acc\"\n",
            fake.url()
        ),
    )
    .unwrap();
    let out = command(
        home.path(),
        &[
            ("CLOUDFLARE_API_TOKEN", TOKEN),
            ("CFGATE_CONFIG", config.to_str().unwrap()),
        ],
    )
    .arg("models")
    .kill_on_drop(true)
    .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("MODEL"), "{text}");
    assert!(lines[0].contains("CONTEXT"), "{text}");
    let llama = lines
        .iter()
        .find(|l| l.contains("llama-3.3-70b"))
        .expect("llama row");
    let cells: Vec<&str> = llama.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
            "workers-ai",
            "24000",
            "yes",
            "0.29",
            "2.25"
        ]
    );
}

/// Every Cloudflare code of the issue, in the body shape the wire notes give it, and the
/// hint the user sees.
#[tokio::test]
async fn every_documented_error_code_gets_its_hint() {
    fn gateway_body(code: u32, message: &str, http: u16) -> String {
        json!({"success": false, "result": [], "messages": [],
            "error": [{"code": code, "message": message}], "name": "AiGatewayError",
            "httpCode": http, "internalCode": code, "message": message, "description": message})
        .to_string()
    }
    fn v4_body(code: u32, message: &str) -> String {
        json!({"result": null, "success": false, "errors": [{"code": code, "message": message}], "messages": []})
            .to_string()
    }
    let cases: Vec<(u16, String, &str, &str)> = vec![
        (
            400,
            gateway_body(
                2001,
                "Please configure AI Gateway in the Cloudflare dashboard",
                400,
            ),
            "upstream",
            "CLOUDFLARE_AI_GATEWAY_ID",
        ),
        (
            400,
            gateway_body(2005, "Failed to get response from provider", 400),
            "upstream",
            "could not get an answer from the provider",
        ),
        (
            400,
            gateway_body(2008, "Invalid provider", 400),
            "upstream",
            "`workers-ai/@cf/...`",
        ),
        (
            401,
            gateway_body(2009, "Unauthorized", 401),
            "unauthorized",
            "cf-aig-authorization",
        ),
        (
            424,
            gateway_body(2016, "Prompt blocked due to security configurations", 424),
            "blocked",
            "Guardrails blocked the prompt",
        ),
        (
            424,
            gateway_body(2017, "Response blocked due to security configurations", 424),
            "blocked",
            "Guardrails blocked the model's answer",
        ),
        (
            400,
            gateway_body(
                2019,
                "Compatibility endpoint: chat/completions/chat/completions is not supported.",
                400,
            ),
            "upstream",
            "base_url must end at the API root",
        ),
        (
            402,
            gateway_body(2021, "Insufficient wholesale credits", 402),
            "quota_exceeded",
            "no credits left (Unified Billing",
        ),
        (
            429,
            gateway_body(
                2041,
                "Spend limit exceeded: rule 'r1' (cost limit 5 per 86400s, sliding)",
                429,
            ),
            "quota_exceeded",
            "spend limit",
        ),
        (
            429,
            gateway_body(2018, "Wholesale Rate limited", 429),
            "rate_limited",
            "Unified Billing rate limit",
        ),
        (
            429,
            gateway_body(2003, "Rate limited", 429),
            "rate_limited",
            "gateway's own rate limit",
        ),
        (
            429,
            v4_body(
                3036,
                "You have used up your daily free allocation of 10,000 neurons",
            ),
            "quota_exceeded",
            "10,000 free Workers AI neurons",
        ),
        (
            429,
            v4_body(3040, "Out of capacity"),
            "rate_limited",
            "out of capacity",
        ),
        (
            400,
            v4_body(5007, "No such model"),
            "upstream",
            "`cfgate models`",
        ),
        (
            401,
            v4_body(10000, "Authentication error"),
            "unauthorized",
            "CLOUDFLARE_API_TOKEN",
        ),
    ];
    let fake = FakeGateway::start().await;
    let mut d = daemon_with(&fake, json!({"max_attempts": 1})).await;
    for (status, body, kind, says) in cases {
        fake.push_script(Script {
            status: Some(status),
            body: Some(body.clone()),
            ..Script::default()
        });
        let err = d
            .request("cfgate/chat", json!({"messages": user("hi")}))
            .await
            .unwrap_err();
        let code: Value = serde_json::from_str::<Value>(&body).unwrap()["error"][0]["code"].clone();
        let code = if code.is_null() {
            serde_json::from_str::<Value>(&body).unwrap()["errors"][0]["code"].clone()
        } else {
            code
        };
        assert_eq!(err["data"]["upstream_code"], code, "{err}");
        assert_eq!(err["data"]["status"], status, "{err}");
        assert_eq!(err["data"]["kind"], kind, "code {code}: {err}");
        assert!(
            hint(&err).contains(says),
            "code {code}: hint {:?} lacks {says:?}",
            hint(&err)
        );
    }
}
