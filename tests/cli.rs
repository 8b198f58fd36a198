//! The command line as a user types it: `cfgate chat` and `cfgate status`.

mod common;

use std::process::Stdio;

use common::*;

fn config_file(dir: &std::path::Path, fake: &FakeGateway) -> String {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!("base_url = \"{}\"\n", fake.compat_base("acc", "gw")),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

async fn run(env: &[(&str, &str)], args: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let out = run_cli(home.path(), env, args, "").await;
    (out, home)
}

#[tokio::test]
async fn chat_prints_the_streamed_answer() {
    let fake = FakeGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &fake);
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", config.as_str()),
    ];
    let (out, _home) = run(
        &env,
        &[
            "chat",
            "--model",
            "openai/gpt-5-mini",
            "--system",
            "be brief",
            "what is up",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo: what is up\n");
    let req = &chat_requests(&fake)[0];
    assert_eq!(req.body["stream"], true, "the one-shot chat streams");
    assert_eq!(req.body["model"], "openai/gpt-5-mini");
    assert_eq!(req.body["messages"][0]["content"], "be brief");

    fake.push_script(Script {
        content: Some("{\"ok\": true}".into()),
        ..Script::default()
    });
    let (out, _home) = run(&env, &["chat", "--json", "give json"]).await;
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"ok\": true}\n");
    let req = chat_requests(&fake).pop().unwrap();
    assert_eq!(req.body["response_format"]["type"], "json_object");
    assert!(
        req.body.get("stream").is_none(),
        "JSON mode is not streamed"
    );
    // An answer that is not JSON fails, saying so.
    let (out, _home) = run(&env, &["chat", "--json", "give json"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not valid JSON"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn chat_fails_clearly() {
    let (out, _home) = run(&[], &["chat", "hello"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CLOUDFLARE_API_TOKEN"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");

    let fake = FakeGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &fake);
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", config.as_str()),
    ];
    let (out, _home) = run(
        &env,
        &["chat", "--model", "@cf/google/gemini-2.0-flash", "hi"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("google-ai-studio/"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
}

#[tokio::test]
async fn status_shows_what_is_set_and_missing() {
    let (out, _home) = run(
        &[
            ("CLOUDFLARE_API_TOKEN", TOKEN),
            ("CLOUDFLARE_AI_GATEWAY_ID", "gw-7"),
        ],
        &["status"],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "the account id is missing");
    assert!(stdout.contains("set (hidden)"), "{stdout}");
    assert!(stdout.contains("gw-7"), "{stdout}");
    assert!(
        stdout.contains("missing") && stdout.contains("CLOUDFLARE_ACCOUNT_ID"),
        "{stdout}"
    );
    assert!(!stdout.contains(TOKEN));
}

/// The README's Python example, run as printed, against the fake gateway.
#[tokio::test]
async fn readme_python_example_works() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```python\n")
        .expect("python example in README")
        + "```python\n".len();
    let script = &readme[start..start + readme[start..].find("```").unwrap()];
    assert!(
        script.lines().count() <= 25,
        "the example should stay short"
    );
    let fake = FakeGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &fake);
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_cfgate"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", config.as_str()),
        ("PATH", path.as_str()),
    ];
    let child = command_for("python3", home.path(), &env)
        .env_remove("CFGATE_LOG")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("example finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("echo: Name three primes."), "{stdout}");
    assert!(stdout.contains("total_tokens"), "{stdout}");
}
