//! The gateway as it is in December 2026 (issue 12; wire notes section 10), end to end:
//! authentication on by default, each endpoint's own model spellings, the new refusals and
//! buffered answers. Each test drives the real `cfgate` against the fake gateway and
//! asserts what a user sees and what the gateway was sent. docs/gateway.md names them.

mod common;

use common::*;
use serde_json::{Value, json};

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// A gateway created today: authentication on, and the user's one Cloudflare token is
/// accepted for it.
async fn gateway_created_today() -> FakeGateway {
    FakeGateway::start_with(Config {
        api_token: Some(TOKEN.into()),
        authenticated: true,
        ..Config::default()
    })
    .await
}

/// The settings a user who followed the README has (token and account id from the
/// environment, gateway id left at `default`), with the fake standing in for Cloudflare's
/// two hosts.
fn new_user_settings(fake: &FakeGateway, endpoint: &str) -> Value {
    json!({
        "endpoint": endpoint,
        "gateway_url": format!("{}/v1", fake.url()),
        "api_url": format!("{}/client/v4", fake.url()),
    })
}

async fn new_user_daemon(fake: &FakeGateway, endpoint: &str, extra_env: &[(&str, &str)]) -> Daemon {
    let mut env = vec![
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_ACCOUNT_ID", ACCOUNT),
    ];
    env.extend_from_slice(extra_env);
    let mut d = Daemon::spawn(&env).await;
    d.initialize(new_user_settings(fake, endpoint)).await;
    d
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_new_users_token_is_answered_by_an_authenticated_gateway_on_both_endpoints() {
    let fake = gateway_created_today().await;
    for endpoint in ["compat", "rest"] {
        fake.clear_requests();
        let mut d = new_user_daemon(&fake, endpoint, &[]).await;
        let answer = d
            .request("cfgate/chat", json!({"messages": user("hello")}))
            .await
            .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        assert_eq!(answer["content"], "echo: hello", "{endpoint}");
        let sent = chat_requests(&fake).pop().unwrap();
        assert_eq!(sent.header("authorization"), Some(bearer(TOKEN).as_str()));
        if endpoint == "compat" {
            assert_eq!(
                sent.path,
                format!("/v1/{ACCOUNT}/default/compat/chat/completions")
            );
            assert_eq!(
                sent.header("cf-aig-authorization"),
                Some(bearer(TOKEN).as_str()),
                "compat: the gateway's authentication carries the API token"
            );
        } else {
            assert_eq!(
                sent.path,
                format!("/client/v4/accounts/{ACCOUNT}/ai/v1/chat/completions")
            );
            assert_eq!(
                sent.header("cf-aig-authorization"),
                None,
                "REST: Authorization only"
            );
            assert_eq!(sent.header("cf-aig-gateway-id"), Some("default"));
        }
        // What status says is what was sent.
        let status = d.request("cfgate/status", json!({})).await.unwrap();
        let headers: Vec<&str> = status["auth_headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["header"].as_str().unwrap())
            .collect();
        let want: &[&str] = if endpoint == "compat" {
            &["Authorization", "cf-aig-authorization"]
        } else {
            &["Authorization"]
        };
        assert_eq!(headers, want, "{status}");
        assert_eq!(status["endpoint"], endpoint);
        assert_no_token(&d.stderr(), "stderr");
    }
}

#[tokio::test]
async fn cfgate_chat_and_status_work_for_a_new_user_following_the_readme() {
    let fake = gateway_created_today().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "gateway_url = \"{}/v1\"\napi_url = \"{}/client/v4\"\n",
            fake.url(),
            fake.url()
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_ACCOUNT_ID", ACCOUNT),
        ("CFGATE_CONFIG", config.to_str().unwrap()),
    ];
    let out = run_cli(
        home.path(),
        &env,
        &["chat", "Write a haiku about latency"],
        "",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("echo: Write a haiku about latency"),
        "{stdout}"
    );
    let out = run_cli(home.path(), &env, &["status"], "").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("api_token (CLOUDFLARE_API_TOKEN) in Authorization")
            && stdout.contains("api_token (CLOUDFLARE_API_TOKEN) in cf-aig-authorization"),
        "{stdout}"
    );
    assert_no_token(&stdout, "status");
}

#[tokio::test]
async fn a_separate_gateway_token_and_stored_keys_each_send_what_the_gateway_wants() {
    let fake = FakeGateway::start_with(Config {
        gateway_token: Some("gw-secret".into()),
        ..Config::default()
    })
    .await;
    // A separate gateway token wins for cf-aig-authorization; the API token stays the
    // vendor's `Authorization`.
    let mut d = new_user_daemon(
        &fake,
        "compat",
        &[("CLOUDFLARE_AI_GATEWAY_TOKEN", "gw-secret")],
    )
    .await;
    d.request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap();
    let sent = chat_requests(&fake).pop().unwrap();
    assert_eq!(sent.header("authorization"), Some(bearer(TOKEN).as_str()));
    assert_eq!(
        sent.header("cf-aig-authorization"),
        Some("Bearer gw-secret")
    );

    // Stored keys with only the API token: it authenticates to the gateway, and no vendor
    // `Authorization` is sent.
    let fake = gateway_created_today().await;
    let mut d = Daemon::spawn(&[
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_ACCOUNT_ID", ACCOUNT),
    ])
    .await;
    let mut settings = new_user_settings(&fake, "compat");
    settings["byok"] = json!(true);
    d.initialize(settings).await;
    fake.clear_requests();
    d.request(
        "cfgate/chat",
        json!({"messages": user("hi"), "model": "openai/gpt-5-mini"}),
    )
    .await
    .unwrap();
    let sent = chat_requests(&fake).pop().unwrap();
    assert_eq!(sent.header("authorization"), None, "{:?}", sent.headers);
    assert_eq!(
        sent.header("cf-aig-authorization"),
        Some(bearer(TOKEN).as_str())
    );
}

#[tokio::test]
async fn a_refused_gateway_authentication_says_which_token_went_in_which_header() {
    // The gateway accepts only a token the user does not have.
    let fake = FakeGateway::start_with(Config {
        gateway_token: Some("only-this-one".into()),
        ..Config::default()
    })
    .await;
    let mut d = new_user_daemon(&fake, "compat", &[]).await;
    let err = d
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(err["data"]["upstream_code"], 2009);
    assert_eq!(err["data"]["kind"], "unauthorized");
    let hint = err["data"]["hint"].as_str().unwrap();
    assert!(
        hint.contains("api_token (CLOUDFLARE_API_TOKEN) in cf-aig-authorization")
            && hint.contains("AI Gateway - Edit")
            && hint.contains("set gateway_token"),
        "{hint}"
    );
    assert_no_token(&err.to_string(), "the error");
}

#[tokio::test]
async fn each_model_spelling_reaches_each_endpoint_in_its_own_form() {
    let fake = gateway_created_today().await;
    // (written, sent on compat, sent on REST); `None` written = the default model.
    let table: &[(Option<&str>, &str, &str)] = &[
        (
            None,
            "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast",
            "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
        ),
        (
            Some("workers-ai/@cf/google/gemma-4-26b-a4b-it"),
            "workers-ai/@cf/google/gemma-4-26b-a4b-it",
            "@cf/google/gemma-4-26b-a4b-it",
        ),
        (
            Some("google/gemini-2.5-flash"),
            "google-ai-studio/gemini-2.5-flash",
            "google/gemini-2.5-flash",
        ),
        (
            Some("google-ai-studio/gemini-2.5-flash"),
            "google-ai-studio/gemini-2.5-flash",
            "google/gemini-2.5-flash",
        ),
        (Some("xai/grok-4.3"), "grok/grok-4.3", "xai/grok-4.3"),
        (Some("grok/grok-4.3"), "grok/grok-4.3", "xai/grok-4.3"),
        (
            Some("anthropic/claude-sonnet-4-5"),
            "anthropic/claude-sonnet-4-5",
            "anthropic/claude-sonnet-4.5",
        ),
        (
            Some("openai/gpt-5-mini"),
            "openai/gpt-5-mini",
            "openai/gpt-5-mini",
        ),
        (
            Some("dynamic/support"),
            "dynamic/support",
            "dynamic/support",
        ),
    ];
    for endpoint in ["compat", "rest"] {
        let mut d = new_user_daemon(&fake, endpoint, &[]).await;
        for (written, compat, rest) in table {
            let want = if endpoint == "compat" { compat } else { rest };
            fake.clear_requests();
            let mut params = json!({"messages": user("which model")});
            if let Some(model) = written {
                params["model"] = json!(model);
            }
            // Streamed, as editors ask: the pieces arrive on either endpoint.
            let (progress, answer) = d.streamed("cfgate/chat", params).await;
            let answer = answer.unwrap_or_else(|e| panic!("{written:?} on {endpoint}: {e}"));
            assert_eq!(joined_content(&progress), "echo: which model");
            assert_eq!(answer["content"], "echo: which model");
            let sent = chat_requests(&fake).pop().unwrap();
            assert_eq!(sent.body["model"], *want, "{written:?} on {endpoint}");
            if endpoint == "rest" {
                assert_eq!(sent.header("cf-aig-gateway-id"), Some("default"));
            }
        }
    }
    // A model alias exists on REST only (wire notes 10.1): sent as written, with the
    // gateway that owns it.
    let mut d = new_user_daemon(&fake, "rest", &[]).await;
    fake.clear_requests();
    d.request(
        "cfgate/chat",
        json!({"messages": user("hi"), "model": "custom/fast"}),
    )
    .await
    .unwrap();
    let sent = chat_requests(&fake).pop().unwrap();
    assert_eq!(sent.body["model"], "custom/fast");
    assert_eq!(sent.header("cf-aig-gateway-id"), Some("default"));
}

/// What a user reads for each refusal of section 10, and how often it was sent.
#[tokio::test]
async fn every_new_refusal_is_a_typed_error_with_a_hint_and_the_right_attempts() {
    let fake = FakeGateway::start().await;
    let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
    d.initialize(json!({"base_url": fake.compat_base("acc", "gw"), "max_attempts": 3}))
        .await;
    // (script, kind, status, code, hint words, attempts)
    let cases: Vec<(Script, &str, u16, i64, &str, u64)> = vec![
        (
            Script::guardrails_block(true),
            "blocked",
            424,
            2016,
            "Guardrails blocked the prompt",
            1,
        ),
        (
            Script::guardrails_block(false),
            "blocked",
            424,
            2017,
            "Guardrails blocked the model's answer",
            1,
        ),
        (
            Script::guardrails_out_of_credits(),
            "quota_exceeded",
            402,
            2021,
            "scanner has no credits",
            1,
        ),
        (Script::dlp_block(true), "blocked", 400, 2029, "DLP", 1),
        (Script::dlp_block(false), "blocked", 400, 2030, "DLP", 1),
        (
            Script::spend_limit(),
            "quota_exceeded",
            429,
            2045,
            "Spend limits",
            1,
        ),
        (
            Script::gateway_rate_limit(),
            "rate_limited",
            429,
            2003,
            "Rate limiting",
            3,
        ),
        (
            Script::unified_billing_rate_limit(),
            "rate_limited",
            429,
            2018,
            "200 requests a minute",
            3,
        ),
        (
            Script::guardrails_unavailable(),
            "unavailable",
            503,
            7013,
            "Flag-only",
            3,
        ),
    ];
    for (script, kind, status, code, says, attempts) in cases {
        fake.clear_requests();
        // As many answers as the attempts expected: a retry too many gets the fake's echo,
        // and the test sees a success where it wanted the refusal.
        fake.push_script(Script {
            repeat: attempts as u32,
            ..script
        });
        let err = d
            .request("cfgate/chat", json!({"messages": user("hi")}))
            .await
            .unwrap_err();
        let data = &err["data"];
        assert_eq!(data["kind"], kind, "{code}: {err}");
        assert_eq!(data["status"], status, "{code}: {err}");
        assert_eq!(data["upstream_code"], code, "{err}");
        assert!(
            data["hint"].as_str().unwrap().contains(says),
            "{code}: {err}"
        );
        assert_eq!(data["attempts"], attempts, "{code}: {err}");
        assert_eq!(chat_requests(&fake).len() as u64, attempts, "{code}");
        if code == 2029 || code == 2030 {
            assert_eq!(data["dlp"]["action"], "BLOCK", "{err}");
            let profile = &data["dlp"]["findings"][0]["profile"]["profile_id"];
            assert_eq!(profile, "credit-card-numbers");
            assert!(
                data["hint"]
                    .as_str()
                    .unwrap()
                    .contains("credit-card-numbers")
            );
        }
    }
}

#[tokio::test]
async fn a_buffered_answer_to_a_streamed_chat_still_reaches_the_plugin_in_reports() {
    // Guardrails or DLP response scanning: the gateway answers a stream with one JSON.
    let fake = FakeGateway::start_with(Config {
        buffer_streams: true,
        ..Config::default()
    })
    .await;
    let mut d = Daemon::start(&fake).await;
    let (progress, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("scanned")}))
        .await;
    let answer = answer.unwrap();
    assert_eq!(answer["content"], "echo: scanned");
    assert_eq!(joined_content(&progress), "echo: scanned");
    assert_eq!(progress.first().unwrap()["kind"], "begin");
    assert_eq!(progress.last().unwrap()["kind"], "end");
    let sent = chat_requests(&fake).pop().unwrap();
    assert_eq!(sent.body["stream"], true, "a stream was asked for");

    // Tool calls in a buffered answer are reported too.
    fake.push_script(Script {
        tool_calls: Some(json!([{"id": "call1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}])),
        ..Script::default()
    });
    let (progress, answer) = d
        .streamed("cfgate/chat", json!({"messages": user("use a tool")}))
        .await;
    let answer = answer.unwrap();
    assert_eq!(answer["tool_calls"][0]["function"]["name"], "lookup");
    let reported: Vec<&Value> = progress
        .iter()
        .filter_map(|p| p.get("tool_calls"))
        .collect();
    assert_eq!(reported.len(), 1, "{progress:?}");
    assert_eq!(reported[0][0]["function"]["name"], "lookup");
    assert_eq!(reported[0][0]["index"], 0);
}
