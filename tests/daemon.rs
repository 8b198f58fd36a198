//! The daemon end to end: the real `cfgate serve` binary over stdio, against the fake
//! gateway, asserting what a plugin sees and what the gateway was sent.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn initialize_names_the_server_and_its_methods() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[]).await;
    let init = d
        .initialize(json!({ "base_url": fake.compat_base("a", "g") }))
        .await;
    assert_eq!(init["serverInfo"]["name"], "cfgate");
    assert_eq!(init["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    let methods = &init["capabilities"]["experimental"]["cfgate"]["methods"];
    for m in ["cfgate/chat", "cfgate/complete", "cfgate/status"] {
        assert!(
            methods.as_array().unwrap().contains(&json!(m)),
            "{m} missing from {methods}"
        );
    }
}

#[tokio::test]
async fn chat_without_streaming_returns_the_whole_answer() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let answer = d
        .request(
            "cfgate/chat",
            json!({"messages": user("hello there"), "model": "@cf/meta/llama-3.1-8b-instruct"}),
        )
        .await
        .expect("chat answers");
    assert_eq!(answer["content"], "echo: hello there");
    assert_eq!(answer["finish_reason"], "stop");
    assert_eq!(answer["model"], "workers-ai/@cf/meta/llama-3.1-8b-instruct");
    assert!(
        answer["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{answer}"
    );
    assert!(
        answer["gateway"]["log_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{answer}"
    );
    assert_eq!(answer["gateway"]["cache_status"], "MISS");

    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req.path, "/v1/acc/gw/compat/chat/completions");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        req.body["model"],
        "workers-ai/@cf/meta/llama-3.1-8b-instruct"
    );
    assert_eq!(req.body["messages"], user("hello there"));
    assert!(
        req.body.get("stream").is_none(),
        "non-streamed request must not ask for a stream: {}",
        req.body
    );
}

#[tokio::test]
async fn streamed_chat_reports_every_piece_before_the_answer() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let (progress, answer) = d
        .streamed(
            "cfgate/chat",
            json!({"messages": user("one two three four five")}),
        )
        .await;
    let answer = answer.expect("chat answers");
    assert_eq!(answer["content"], "echo: one two three four five");
    assert_eq!(progress.first().unwrap()["kind"], "begin");
    assert_eq!(progress.first().unwrap()["title"], "cfgate/chat");
    assert_eq!(progress.last().unwrap()["kind"], "end");
    let reports = progress.iter().filter(|p| p["kind"] == "report").count();
    assert!(
        reports >= 5,
        "expected one report per piece, got {progress:?}"
    );
    assert_eq!(
        joined_content(&progress),
        answer["content"].as_str().unwrap()
    );
    assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let req = &chat_requests(&fake)[0];
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["stream_options"]["include_usage"], true);
    assert_eq!(
        req.body["model"], "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast",
        "default model"
    );
}

#[tokio::test]
async fn openai_fields_pass_through_unchanged() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let fields = json!({
        "max_tokens": 77, "temperature": 0.3, "top_p": 0.9, "stop": ["\n\n"], "seed": 42,
        "frequency_penalty": 0.1, "presence_penalty": 0.2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto", "user": "u-1", "some_future_field": {"nested": [1, 2]},
    });
    let mut params = fields.clone();
    params["messages"] = user("hi");
    params["model"] = json!("openai/gpt-5-mini");
    params["stream"] = json!(true); // the daemon's, not the caller's
    fake.push_script(Script {
        content: Some("{}".into()), // JSON was asked for: the answer is checked
        ..Script::default()
    });
    d.request("cfgate/chat", params)
        .await
        .expect("chat answers");
    let body = &chat_requests(&fake)[0].body;
    for (k, v) in fields.as_object().unwrap() {
        assert_eq!(&body[k], v, "field {k} changed on the way");
    }
    assert_eq!(body["model"], "openai/gpt-5-mini");
    assert!(
        body.get("stream").is_none(),
        "caller's stream flag must not leak: {body}"
    );
}

#[tokio::test]
async fn json_mode_asks_for_json_and_says_so_in_the_system_message() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let messages = json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "give json"}]);
    fake.push_script(Script {
        content: Some(r#"{"a": 1}"#.into()),
        ..Script::default()
    });
    d.request(
        "cfgate/chat",
        json!({"messages": messages, "json_mode": true}),
    )
    .await
    .expect("chat answers");
    let body = &chat_requests(&fake)[0].body;
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(system.starts_with("You are terse."), "{system}");
    assert!(system.contains("JSON"), "{system}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn complete_answers_only_the_insertion() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    fake.push_script(Script {
        chunks: Some(vec![
            "```py".into(),
            "thon\n".into(),
            "    return a".into(),
            " + b\n".into(),
            "```".into(),
        ]),
        ..Script::default()
    });
    let params = json!({
        "prefix": "def add(a, b):\n", "suffix": "\n\nprint(add(1, 2))\n",
        "language": "python", "path": "src/add.py", "max_tokens": 64,
    });
    let (progress, answer) = d.streamed("cfgate/complete", params).await;
    let answer = answer.expect("complete answers");
    assert_eq!(answer["text"], "    return a + b");
    assert_eq!(
        joined_content(&progress),
        "    return a + b",
        "streamed pieces must join to the text"
    );
    assert_eq!(answer["finish_reason"], "stop");

    let body = &chat_requests(&fake)[0].body;
    assert_eq!(body["max_tokens"], 64);
    let prompt = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("def add(a, b):\n<CURSOR>\n\nprint(add(1, 2))"),
        "{prompt}"
    );
    assert!(
        prompt.contains("src/add.py") && prompt.contains("python"),
        "{prompt}"
    );
}

#[tokio::test]
async fn complete_without_streaming() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    // The model repeats the line it was given; only the insertion comes back.
    fake.push_script(Script {
        content: Some("y = 2 * x".into()),
        ..Script::default()
    });
    let answer = d
        .request("cfgate/complete", json!({"prefix": "x = 1\ny = "}))
        .await
        .unwrap();
    assert_eq!(answer["text"], "2 * x");
    assert_eq!(
        answer["model"],
        "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast"
    );
}

#[tokio::test]
async fn each_model_id_form_reaches_the_gateway_routed() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let cases = [
        (
            "@cf/google/gemma-4-26b-a4b-it",
            "workers-ai/@cf/google/gemma-4-26b-a4b-it",
        ),
        (
            "workers-ai/@cf/meta/llama-3.1-8b-instruct",
            "workers-ai/@cf/meta/llama-3.1-8b-instruct",
        ),
        ("openai/gpt-5-mini", "openai/gpt-5-mini"),
        (
            "google-ai-studio/gemini-2.5-flash",
            "google-ai-studio/gemini-2.5-flash",
        ),
        ("anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"),
        ("dynamic/support", "dynamic/support"),
    ];
    for (i, (given, routed)) in cases.iter().enumerate() {
        let answer = d
            .request(
                "cfgate/chat",
                json!({"messages": user("hi"), "model": given}),
            )
            .await
            .unwrap_or_else(|e| panic!("{given}: {e}"));
        assert_eq!(answer["model"], *routed);
        assert_eq!(chat_requests(&fake)[i].body["model"], *routed, "{given}");
        if given.starts_with("dynamic/") {
            assert_eq!(answer["gateway"]["provider"], "workers-ai", "{answer}");
            assert!(answer["gateway"]["model"].as_str().is_some(), "{answer}");
        }
    }
    // An id with no vendor is refused before any request.
    let before = chat_requests(&fake).len();
    let err = d
        .request(
            "cfgate/chat",
            json!({"messages": user("hi"), "model": "kimi-k2.6"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], 1003);
    assert_eq!(err["data"]["kind"], "invalid_model");
    assert!(err["message"].as_str().unwrap().contains("kimi-k2.6"));
    assert!(err["data"]["hint"].as_str().unwrap().contains("@cf/"));
    assert_eq!(
        chat_requests(&fake).len(),
        before,
        "nothing may be sent for a refused id"
    );
}

#[tokio::test]
async fn account_and_gateway_ids_from_the_environment_build_the_path() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_ACCOUNT_ID", "acct123"),
        ("CLOUDFLARE_AI_GATEWAY_ID", "my-gw"),
    ])
    .await;
    d.initialize(json!({ "gateway_url": format!("{}/v1", fake.url()) }))
        .await;
    d.request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .expect("chat answers");
    assert_eq!(
        chat_requests(&fake)[0].path,
        "/v1/acct123/my-gw/compat/chat/completions"
    );

    // Without CLOUDFLARE_AI_GATEWAY_ID the gateway is `default`.
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_ACCOUNT_ID", "acct123"),
    ])
    .await;
    d.initialize(json!({ "gateway_url": format!("{}/v1", fake.url()) }))
        .await;
    d.request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .expect("chat answers");
    assert_eq!(
        chat_requests(&fake)[1].path,
        "/v1/acct123/default/compat/chat/completions"
    );

    // An id that would change the path is refused, never sent.
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_ACCOUNT_ID", "../x"),
    ])
    .await;
    d.initialize(json!({ "gateway_url": format!("{}/v1", fake.url()) }))
        .await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["kind"], "invalid_setting");
    assert!(
        err["message"].as_str().unwrap().contains("account_id"),
        "{err}"
    );
    assert_eq!(chat_requests(&fake).len(), 2);
}

#[tokio::test]
async fn missing_credentials_name_the_variable_and_send_nothing() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[]).await;
    d.initialize(json!({})).await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], 1001);
    assert_eq!(err["data"]["kind"], "missing_credentials");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("CLOUDFLARE_API_TOKEN") && message.contains("CLOUDFLARE_ACCOUNT_ID"),
        "{message}"
    );

    let status = d.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status["credentials_complete"], false);
    assert_eq!(
        status["missing"],
        json!(["CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID"])
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn status_reports_settings_and_counts_but_never_the_token() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_ACCOUNT_ID", "0123456789abcdef0123456789abcdef"),
    ])
    .await;
    d.initialize(json!({"base_url": fake.compat_base("a", "g"), "model": "openai/gpt-5-mini", "completion_context_chars": 1200}))
        .await;
    d.request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap();
    d.request(
        "cfgate/chat",
        json!({"messages": user("hi"), "model": "bad"}),
    )
    .await
    .unwrap_err();
    // No params at all is accepted too.
    let id = d.start_request_without_params("cfgate/status").await;
    let status = d.response(id).await.unwrap();
    assert_eq!(status["credentials_complete"], true);
    assert_eq!(status["account_id"], "0123…ef");
    assert_eq!(status["gateway_id"], "default");
    assert_eq!(status["model"], "openai/gpt-5-mini");
    // The plugins size their completion context with it.
    assert_eq!(status["completion_context_chars"], 1200);
    assert_eq!(status["base_url"], fake.compat_base("a", "g"));
    assert_eq!(status["requests"]["total"], 2);
    assert_eq!(status["requests"]["failed"], 1);
    assert_eq!(status["requests"]["in_flight"], 0);
    assert!(!status.to_string().contains(TOKEN));
}

#[tokio::test]
async fn upstream_errors_carry_code_status_and_hint() {
    let fake = FakeGateway::start_with(Config {
        known_gateways: Some(vec!["gw".into()]),
        ..Config::default()
    })
    .await;
    // Unknown gateway id: 2001.
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    d.initialize(json!({ "base_url": fake.compat_base("acc", "nope") }))
        .await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["status"], 400);
    assert_eq!(err["data"]["upstream_code"], 2001);
    assert!(
        err["data"]["hint"]
            .as_str()
            .unwrap()
            .contains("CLOUDFLARE_AI_GATEWAY_ID"),
        "{err}"
    );
    assert_eq!(err["data"]["retryable"], false);

    let mut d = Daemon::start(&fake).await;
    // Gemini on Workers AI: the gateway refuses it; the hint says where Gemini lives.
    let err = d
        .request(
            "cfgate/chat",
            json!({"messages": user("hi"), "model": "@cf/google/gemini-2.0-flash"}),
        )
        .await
        .unwrap_err();
    assert!(
        err["data"]["hint"]
            .as_str()
            .unwrap()
            .contains("google-ai-studio/"),
        "{err}"
    );

    // 7009 in the Cloudflare API envelope: unavailable, retryable.
    fake.push_script(Script {
        status: Some(503),
        body: Some(r#"{"result":null,"success":false,"errors":[{"code":7009,"message":"Upstream service unavailable"}],"messages":[]}"#.into()),
        repeat: 3, // every attempt fails
        ..Script::default()
    });
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], 1013);
    assert_eq!(err["data"]["kind"], "unavailable");
    assert_eq!(err["data"]["upstream_code"], 7009);
    assert_eq!(err["data"]["message"], "Upstream service unavailable");
    assert_eq!(err["data"]["retryable"], true);

    // The daemon goes on serving after every error.
    let ok = d
        .request("cfgate/chat", json!({"messages": user("still there?")}))
        .await
        .unwrap();
    assert_eq!(ok["content"], "echo: still there?");
}

#[tokio::test]
async fn gateway_authentication_errors_are_told_apart() {
    let fake = FakeGateway::start_with(Config {
        gateway_token: Some("gw-secret".into()),
        ..Config::default()
    })
    .await;
    let mut d = Daemon::start(&fake).await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], 1011);
    assert_eq!(err["data"]["upstream_code"], 2009);
    assert!(
        err["data"]["hint"]
            .as_str()
            .unwrap()
            .contains("gateway_token"),
        "{err}"
    );

    // With the gateway token set it goes through, sent as cf-aig-authorization.
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_AI_GATEWAY_TOKEN", "gw-secret"),
    ])
    .await;
    d.initialize(json!({ "base_url": fake.compat_base("acc", "gw") }))
        .await;
    d.request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .expect("authenticated");
    let last = chat_requests(&fake).pop().unwrap();
    assert_eq!(
        last.header("cf-aig-authorization"),
        Some("Bearer gw-secret")
    );
}

#[tokio::test]
async fn a_cut_stream_is_an_error_with_what_arrived() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    fake.push_script(Script {
        chunks: Some(vec!["partial ".into(), "answer".into()]),
        omit_done: true,
        omit_finish: true,
        ..Script::default()
    });
    let (progress, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("hi")}))
        .await;
    let err = answer.unwrap_err();
    assert_eq!(err["data"]["kind"], "stream_cut");
    assert!(
        err["message"].as_str().unwrap().contains("cut off"),
        "{err}"
    );
    assert_eq!(err["data"]["partial_content"], "partial answer");
    assert_eq!(joined_content(&progress), "partial answer");
    assert_eq!(
        progress.last().unwrap()["kind"],
        "end",
        "progress ends even on error"
    );
}

#[tokio::test]
async fn cancel_drops_the_upstream_request() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    fake.push_script(Script {
        chunks: Some(vec!["first ".into()]),
        hold_open: true,
        ..Script::default()
    });
    let token = json!("cancel-me");
    let id = d
        .start_request(
            "cfgate/chat",
            json!({"messages": user("hi"), "workDoneToken": token}),
        )
        .await;
    d.wait_for("first report", |m| {
        m["method"] == "$/progress" && m["params"]["value"]["kind"] == "report"
    })
    .await;
    d.notify("$/cancelRequest", json!({"id": id})).await;
    let err = d.response(id).await.unwrap_err();
    assert_eq!(err["code"], -32800);
    assert!(
        fake.wait_for_stream_dropped(WAIT).await,
        "the gateway never saw the request dropped"
    );
    // And the daemon still answers.
    d.request("cfgate/status", json!({})).await.unwrap();
}

#[tokio::test]
async fn a_slow_stream_does_not_block_other_requests() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    fake.push_script(Script {
        chunks: Some(vec!["slow ".into()]),
        hold_open: true,
        ..Script::default()
    });
    let slow = d
        .start_request(
            "cfgate/chat",
            json!({"messages": user("slow"), "workDoneToken": "s"}),
        )
        .await;
    d.wait_for("slow stream started", |m| {
        m["method"] == "$/progress" && m["params"]["value"]["kind"] == "report"
    })
    .await;
    let fast = d
        .request("cfgate/chat", json!({"messages": user("fast")}))
        .await
        .unwrap();
    assert_eq!(fast["content"], "echo: fast");
    let status = d.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status["requests"]["in_flight"], 1);
    d.notify("$/cancelRequest", json!({"id": slow})).await;
    assert_eq!(d.response(slow).await.unwrap_err()["code"], -32800);
}

#[tokio::test]
async fn stdin_closing_ends_the_daemon_with_a_stream_in_flight() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    d.start_held_stream(&fake).await;
    d.close_stdin();
    let status = d.wait_exit().await;
    assert!(status.success(), "{status:?}");
    assert!(
        fake.wait_for_stream_dropped(WAIT).await,
        "upstream request outlived the daemon"
    );
}

#[tokio::test]
async fn exit_ends_the_daemon_even_with_stdin_open() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    d.start_held_stream(&fake).await;
    assert_eq!(d.request("shutdown", Value::Null).await, Ok(Value::Null));
    d.notify("exit", Value::Null).await;
    let status = d.wait_exit().await;
    assert_eq!(status.code(), Some(0));
    assert!(fake.wait_for_stream_dropped(WAIT).await);

    // `exit` without `shutdown` first exits with 1, as LSP says.
    let mut d = Daemon::start(&fake).await;
    d.notify("exit", Value::Null).await;
    assert_eq!(d.wait_exit().await.code(), Some(1));
}

#[tokio::test]
async fn fifty_sequential_requests_share_one_upstream_connection() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    for i in 0..50 {
        let params = json!({"messages": user(&format!("n{i}"))});
        if i % 2 == 0 {
            d.request("cfgate/chat", params).await.unwrap();
        } else {
            d.streamed("cfgate/chat", params).await.1.unwrap();
        }
    }
    assert_eq!(chat_requests(&fake).len(), 50);
    // One keep-alive connection serves them all. hyper's pool may, rarely, open a second
    // one when a request races the previous connection's return to the pool (a few µs on
    // loopback); without pooling this would be 50.
    let connections = fake.connections_accepted();
    assert!(
        connections <= 2,
        "{connections} upstream connections for 50 sequential requests"
    );
}

#[tokio::test]
async fn bad_input_gets_errors_and_the_daemon_keeps_serving() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    let cases: &[(&[u8], i64)] = &[
        (b"Content-Length: 9\r\n\r\n{not json", -32700),
        (b"Content-Length: nine\r\n\r\n{}", -32700),
        (b"this is not a header\r\n\r\n", -32700),
        (b"Content-Length: 4\r\n\r\n\xff\xfe{}", -32700),
        (b"Content-Length: 7\r\n\r\n[1,2,3]", -32600),
        (
            b"Content-Length: 32\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1.5,\"x\":1}",
            -32600,
        ),
    ];
    for (bytes, code) in cases {
        d.send_raw(bytes).await;
        let err = d
            .wait_for("error reply", |m| {
                m.get("error").is_some() && m["id"].is_null()
            })
            .await;
        assert_eq!(
            err["error"]["code"],
            *code,
            "for {:?}: {err}",
            String::from_utf8_lossy(bytes)
        );
        let status = d.request("cfgate/status", json!({})).await;
        assert!(
            status.is_ok(),
            "daemon stopped serving after {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Deeply nested JSON.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    d.send_raw(format!("Content-Length: {}\r\n\r\n{deep}", deep.len()).as_bytes())
        .await;
    let err = d
        .wait_for("error reply", |m| {
            m.get("error").is_some() && m["id"].is_null()
        })
        .await;
    assert_eq!(err["error"]["code"], -32700);

    // Wrong params name the field; unknown methods are -32601.
    let err = d
        .request("cfgate/chat", json!({"model": "openai/x"}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602);
    assert!(
        err["message"].as_str().unwrap().contains("messages"),
        "{err}"
    );
    let err = d
        .request("cfgate/chat", json!({"messages": [{"content": "no role"}]}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].role"),
        "{err}"
    );
    let err = d
        .request("cfgate/complete", json!({"suffix": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602);
    assert!(err["message"].as_str().unwrap().contains("prefix"), "{err}");
    let err = d.request("cfgate/nope", json!({})).await.unwrap_err();
    assert_eq!(err["code"], -32601);

    let ok = d
        .request("cfgate/chat", json!({"messages": user("alive")}))
        .await
        .unwrap();
    assert_eq!(ok["content"], "echo: alive");
}

#[tokio::test]
async fn did_change_configuration_updates_the_settings() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    d.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"cfgate": {"model": "openai/gpt-5-mini", "max_tokens": 12}}}),
    )
    .await;
    d.request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap();
    let body = &chat_requests(&fake)[0].body;
    assert_eq!(body["model"], "openai/gpt-5-mini");
    assert_eq!(body["max_tokens"], 12);
    // A request's own model still wins.
    d.request(
        "cfgate/chat",
        json!({"messages": user("hi"), "model": "@cf/x/y"}),
    )
    .await
    .unwrap();
    assert_eq!(chat_requests(&fake)[1].body["model"], "workers-ai/@cf/x/y");
}

#[tokio::test]
async fn a_request_sent_right_after_a_settings_change_always_uses_it() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    // The change and the request go out back to back, many times: the notification is
    // applied before the request that follows it is served, never after.
    for n in 0..20 {
        let model = format!("openai/model-{n}");
        d.notify(
            "workspace/didChangeConfiguration",
            json!({"settings": {"cfgate": {"model": model}}}),
        )
        .await;
        let id = d
            .start_request("cfgate/chat", json!({"messages": user("hi")}))
            .await;
        d.response(id).await.unwrap();
        let sent = chat_requests(&fake);
        assert_eq!(sent[n].body["model"], model, "request {n}");
    }
}

#[tokio::test]
async fn config_file_is_the_lowest_source() {
    let fake = FakeGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfgate.toml");
    std::fs::write(
        &path,
        format!("api_token = \"{TOKEN}\"\nbase_url = \"{}\"\nmodel = \"openai/from-file\"\nmax_tokens = 5\n", fake.compat_base("f", "g")),
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let mut d = Daemon::spawn(&[("CFGATE_CONFIG", path)]).await;
    d.initialize(json!({"max_tokens": 9})).await;
    d.request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .expect("configured by file");
    let req = &chat_requests(&fake)[0];
    assert_eq!(req.body["model"], "openai/from-file");
    assert_eq!(
        req.body["max_tokens"], 9,
        "initializationOptions beat the file"
    );
    assert_eq!(req.path, "/v1/f/g/compat/chat/completions");
    // The token is readable by others (tempfile default mode): a warning says so.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let d = Daemon::spawn(&[("CFGATE_CONFIG", path)]).await;
        let mut d = d;
        d.initialize(json!({})).await;
        assert!(
            d.stderr().contains("chmod 600"),
            "no permission warning in:\n{}",
            d.stderr()
        );
    }
}

#[tokio::test]
async fn the_token_never_appears_in_output_or_logs() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    d.request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap();
    fake.push_script(Script {
        status: Some(401),
        body: Some(r#"{"result":null,"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[]}"#.into()),
        ..Script::default()
    });
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert!(
        err["data"]["hint"]
            .as_str()
            .unwrap()
            .contains("CLOUDFLARE_API_TOKEN")
    );
    d.request("cfgate/status", json!({})).await.unwrap();
    d.request("shutdown", Value::Null).await.unwrap();
    d.notify("exit", Value::Null).await;
    d.wait_exit().await;
    let stdout = d.transcript.lock().unwrap().join("\n");
    assert!(!stdout.contains(TOKEN), "token in protocol output");
    let stderr = d.stderr();
    assert!(stderr.contains("DEBUG"), "debug logging was on: {stderr}");
    assert!(!stderr.contains(TOKEN), "token in stderr log");
    let state = d.home.path().join("state");
    for entry in walk(&state) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(TOKEN),
            "token in log file {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_daemon_never_dumps_core() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::start(&fake).await;
    d.request("cfgate/status", json!({})).await.unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let values: Vec<&str> = core.split_whitespace().skip(4).take(2).collect();
    assert_eq!(values, ["0", "0"], "{core}");
}
