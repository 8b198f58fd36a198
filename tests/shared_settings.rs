//! Each client of the shared daemon is served with its own settings: its environment and its
//! config file, sent when it connects, never the environment the daemon was started with.

#![cfg(unix)]

mod common;

use common::world::*;
use common::*;
use serde_json::{Value, json};

const OTHER_TOKEN: &str = "cf-other-token-2b8d4e6f10";

/// `env` with `extra` set over it.
fn with(env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

async fn ask(c: &mut Daemon, text: &str) -> Result<Value, Value> {
    c.request("cfgate/chat", json!({ "messages": user(text) }))
        .await
}

fn bearer(r: &RecordedRequest) -> String {
    r.header("authorization").unwrap_or_default().to_string()
}

#[tokio::test]
async fn each_client_is_answered_with_its_own_settings() {
    let fake = FakeGateway::start().await;
    let world = World::new(&format!("gateway_url = \"{}/v1\"\n", fake.url()));
    // The first client has no token: the daemon it starts has none in its environment.
    let bare = with(
        world.env_without_token(),
        &[("CLOUDFLARE_ACCOUNT_ID", "acc")],
    );
    let mut without = world.spawn_client_with(&bare).await;
    without.initialize(json!({})).await;
    let refused = ask(&mut without, "a").await.expect_err("no token anywhere");
    assert_eq!(refused["data"]["kind"], "missing_credentials", "{refused}");
    assert!(fake.requests().is_empty());

    // Then two editors with their own tokens and gateways, on the same daemon.
    let mut first = world
        .spawn_client_with(&with(
            bare.clone(),
            &[
                ("CLOUDFLARE_API_TOKEN", TOKEN),
                ("CLOUDFLARE_AI_GATEWAY_ID", "gw-first"),
            ],
        ))
        .await;
    first.initialize(json!({})).await;
    let mut second = world
        .spawn_client_with(&with(
            bare.clone(),
            &[
                ("CLOUDFLARE_API_TOKEN", OTHER_TOKEN),
                ("CLOUDFLARE_AI_GATEWAY_ID", "gw-second"),
            ],
        ))
        .await;
    second.initialize(json!({})).await;
    assert_eq!(
        ask(&mut first, "one").await.unwrap()["content"],
        "echo: one"
    );
    assert_eq!(
        ask(&mut second, "two").await.unwrap()["content"],
        "echo: two"
    );
    assert_eq!(world.daemons().len(), 1, "one daemon for all three");

    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].path, "/v1/acc/gw-first/compat/chat/completions");
    assert_eq!(bearer(&sent[0]), format!("Bearer {TOKEN}"));
    assert_eq!(sent[1].path, "/v1/acc/gw-second/compat/chat/completions");
    assert_eq!(bearer(&sent[1]), format!("Bearer {OTHER_TOKEN}"));

    // The one without a token is still refused: nobody else's token is lent to it.
    let refused = ask(&mut without, "b").await.expect_err("still no token");
    assert_eq!(refused["data"]["kind"], "missing_credentials", "{refused}");
    assert_eq!(chat_requests(&fake).len(), 2);

    // Each one's status shows its own settings beside the daemon's shared facts.
    let status = |s: &Value| {
        (
            s["gateway_id"].as_str().unwrap_or_default().to_string(),
            s["credentials_complete"].as_bool(),
            s["clients"].as_array().map_or(0, Vec::len),
        )
    };
    let mine = without.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status(&mine), ("default".into(), Some(false), 3), "{mine}");
    let mine = first.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status(&mine), ("gw-first".into(), Some(true), 3), "{mine}");
    let mine = second.request("cfgate/status", json!({})).await.unwrap();
    assert_eq!(status(&mine), ("gw-second".into(), Some(true), 3), "{mine}");
    // The layers travelled with both tokens; neither is in the daemon's log (it logs to the
    // home of the relay that started it) or in any answer (the harness checks `TOKEN`).
    let logs = without.logs();
    assert!(logs.contains("a client sent its settings"), "no log read");
    assert!(
        !logs.contains(OTHER_TOKEN),
        "the second token is in the log"
    );
    for c in [&without, &first, &second] {
        let said = c.transcript.lock().unwrap().join("\n");
        assert!(!said.contains(OTHER_TOKEN), "the second token in an answer");
    }
}

/// The first report: `cfgate chat --session` once without the token starts a
/// daemon without it; after exporting the token the next one works at once.
#[tokio::test]
async fn the_cli_uses_its_own_environment_not_the_daemons() {
    let fake = FakeGateway::start().await;
    let world = World::new(&format!("gateway_url = \"{}/v1\"\n", fake.url()));
    let bare = with(
        world.env_without_token(),
        &[("CLOUDFLARE_ACCOUNT_ID", "acc")],
    );
    let out = world
        .cli_with(&bare, &["chat", "--session", "x", "hi"])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CLOUDFLARE_API_TOKEN"), "{stderr}");
    assert_eq!(world.daemons().len(), 1, "the CLI started the daemon");

    let token = with(bare.clone(), &[("CLOUDFLARE_API_TOKEN", TOKEN)]);
    let out = world
        .cli_with(&token, &["chat", "--session", "x", "again"])
        .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo: again\n");
    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 1);
    assert_eq!(bearer(&sent[0]), format!("Bearer {TOKEN}"));

    // Another config file names another gateway: the session chat goes where status says.
    let other = world.data.path().join("other.toml");
    std::fs::write(
        &other,
        format!(
            "gateway_url = \"{}/v1\"\ngateway_id = \"gw-other\"\n",
            fake.url()
        ),
    )
    .unwrap();
    let other_env = with(token, &[("CFGATE_CONFIG", other.to_str().unwrap())]);
    let out = world.cli_with(&other_env, &["status"]).await;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("gw-other"), "{printed}");
    let out = world
        .cli_with(&other_env, &["chat", "--session", "x", "there"])
        .await;
    assert!(out.status.success(), "{out:?}");
    let sent = chat_requests(&fake);
    assert_eq!(sent[1].path, "/v1/acc/gw-other/compat/chat/completions");
    assert_eq!(world.daemons().len(), 1);
}

#[tokio::test]
async fn a_config_error_in_one_clients_file_reaches_that_client_only() {
    let fake = FakeGateway::start().await;
    let world = World::new(&format!(
        "base_url = \"{}\"\n",
        fake.compat_base("acc", "gw")
    ));
    let broken = world.data.path().join("broken.toml");
    std::fs::write(&broken, "modle = \"x\"\n").unwrap();
    // The broken one starts the daemon.
    let mut bad = world
        .spawn_client_with(&with(
            world.env(),
            &[("CFGATE_CONFIG", broken.to_str().unwrap())],
        ))
        .await;
    let refused = bad
        .request("initialize", json!({"capabilities": {}}))
        .await
        .expect_err("initialize refused");
    assert_eq!(refused["code"], 1002, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("broken.toml") && message.contains("modle"),
        "{message}"
    );

    let mut good = world.spawn_client_with(&world.env()).await;
    good.initialize(json!({})).await;
    assert_eq!(
        ask(&mut good, "fine").await.unwrap()["content"],
        "echo: fine"
    );
    let status = good.request("cfgate/status", json!({})).await.unwrap();
    assert!(status["settings_error"].is_null(), "{status}");
    assert_eq!(world.daemons().len(), 1);
}

#[tokio::test]
async fn listen_to_a_daemon_running_without_the_endpoint_is_warned_and_in_status() {
    let fake = FakeGateway::start().await;
    let world = World::new("");
    let mut plain = world.client(&fake).await;
    let env = world.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut asking =
        Daemon::spawn_args(&env, &["serve", "--shared", "--listen", "127.0.0.1:0"]).await;
    asking
        .initialize(json!({ "base_url": fake.compat_base("acc", "gw") }))
        .await;
    // Printed by the relay as it joins; the daemon may answer `initialize` before that.
    eventually("the relay's warning", || {
        asking
            .stderr()
            .contains("cfgate: warning: --listen 127.0.0.1:0 was not applied")
    })
    .await;
    let stderr = asking.stderr();
    assert!(stderr.contains("`cfgate stop`"), "{stderr}");
    let status = asking.request("cfgate/status", json!({})).await.unwrap();
    let warnings = status["daemon"]["warnings"].to_string();
    assert!(warnings.contains("`cfgate stop`"), "{status}");
    assert_eq!(status["daemon"]["pid"], world.pid_file().unwrap());
    // The client that asked for nothing is told nothing.
    let status = plain.request("cfgate/status", json!({})).await.unwrap();
    assert!(status["daemon"].get("warnings").is_none(), "{status}");
    assert_eq!(world.daemons().len(), 1);
}
