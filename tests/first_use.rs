//! The command line as a new user meets it: a config file with a typo, a prompt left
//! empty, `| head`, a certificate a proxy swapped, JSON that is not JSON, a port in use.
//! Each runs the real binary as a person would (no `CFGATE_LOG`), in a fresh HOME.

#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use serde_json::json;
use tokio::io::AsyncReadExt;

/// `cfgate <args>` with `stdin` as its input, as typed in a shell.
async fn run(home: &Path, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Output {
    run_cli(home, env, args, stdin).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config file pointing at the fake, with `extra` lines after it.
fn config(dir: &Path, fake: &FakeGateway, extra: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!("base_url = \"{}\"\n{extra}", fake.compat_base("acc", "gw")),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// Every log file cfgate wrote under `home`.
fn logs(home: &Path) -> String {
    let dir = home.join("state").join("cfgate");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_config_file_that_cannot_be_used_is_an_error_naming_file_line_and_key() {
    let fake = FakeGateway::start().await;
    let home = tempfile::tempdir().unwrap();
    let cases = [
        (
            "modle = \"openai/gpt-5-mini\"\n",
            "line 2",
            "`modle`",
            "unknown field",
        ),
        (
            "max_tokens = \"lots\"\n",
            "line 2",
            "`max_tokens`",
            "invalid type",
        ),
        (
            "[gateway]\ncache_ttl = -5\n",
            "line 3",
            "`gateway.cache_ttl`",
            "invalid value",
        ),
        ("model = \"unclosed\n", "line 2", "`model`", "string"),
    ];
    for (extra, line, key, reason) in cases {
        let path = config(home.path(), &fake, extra);
        let env = [
            ("CLOUDFLARE_API_TOKEN", TOKEN),
            ("CFGATE_CONFIG", path.as_str()),
        ];
        for args in [&["chat", "hi"][..], &["models"]] {
            let out = run(home.path(), &env, args, "").await;
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            let first = stderr.lines().next().unwrap_or_default();
            assert!(
                first.starts_with(&format!(
                    "cfgate: error: config file {path}, {line}, key {key}: "
                )) && first.contains(reason),
                "{args:?} {extra:?}: {stderr}"
            );
            assert!(stderr.contains("\nhint: "), "{stderr}");
            assert!(!stderr.contains("CLOUDFLARE_ACCOUNT_ID"), "{stderr}");
        }
        let out = run(home.path(), &env, &["status"], "").await;
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "status: {stdout}");
        assert!(
            stdout.contains(&format!(
                "problem       config file {path}, {line}, key {key}"
            )),
            "{stdout}"
        );
    }
    assert!(fake.requests().is_empty(), "nothing may be sent");

    // CFGATE_CONFIG naming a file that is not there is a typo, not "no config".
    let gone = home.path().join("no-such.toml");
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", gone.to_str().unwrap()),
    ];
    let out = run(home.path(), &env, &["chat", "hi"], "").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "config file {}: it does not exist",
            gone.display()
        )),
        "{stderr}"
    );
    // The default path missing is fine: the environment is enough.
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_ACCOUNT_ID", "acc"),
    ];
    let out = run(home.path(), &env, &["status"], "").await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("(not present)") && stdout.contains("complete"),
        "{stdout}"
    );
}

#[tokio::test]
async fn status_exits_non_zero_when_settings_are_incomplete_or_invalid() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        home.path(),
        &[("CLOUDFLARE_API_TOKEN", TOKEN)],
        &["status"],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("CLOUDFLARE_ACCOUNT_ID"));
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CLOUDFLARE_ACCOUNT_ID", "../evil"),
    ];
    let out = run(home.path(), &env, &["status"], "").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("invalid setting account_id"));
}

#[tokio::test]
async fn a_daemon_refuses_initialize_naming_the_config_file() {
    let fake = FakeGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &fake, "\nmodle = \"x\"\n");
    let run_dir = dir.path().join("run");
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", path.as_str()),
        ("CFGATE_RUNTIME_DIR", run_dir.to_str().unwrap()),
    ];
    let _stop = StopSharedDaemon(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    for args in [&["serve"][..], &["serve", "--shared"]] {
        let mut daemon = Daemon::spawn_args(&env, args).await;
        let refused = daemon
            .request(
                "initialize",
                json!({"processId": null, "capabilities": {}, "initializationOptions": {}}),
            )
            .await
            .expect_err("initialize must fail");
        let message = refused["message"].as_str().unwrap_or_default();
        assert_eq!(refused["code"], 1002, "{args:?}: {refused}");
        assert_eq!(refused["data"]["kind"], "invalid_setting");
        assert!(
            message.starts_with(&format!("config file {path}, line 3, key `modle`")),
            "{args:?}: {refused}"
        );
    }
    assert!(fake.requests().is_empty());

    // The editor closed; the user fixes the file and starts it again. The shared daemon
    // that had the broken file went with its last client, so the new one reads the fix.
    let socket = run_dir.join("cfgate.sock");
    let deadline = tokio::time::Instant::now() + WAIT;
    while socket.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shared daemon with a broken config file stayed after its last client"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    config(dir.path(), &fake, "");
    let mut fixed = Daemon::spawn_args(&env, &["serve", "--shared"]).await;
    fixed.initialize(json!({})).await;
    fixed
        .request("cfgate/chat", json!({"messages": user("hi")}))
        .await
        .expect("the fixed file is read");
}

/// Stops the shared daemon a test started, however the test ends.
struct StopSharedDaemon(Vec<(String, String)>);

impl Drop for StopSharedDaemon {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_cfgate"))
            .arg("stop")
            .envs(self.0.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn an_empty_prompt_is_refused_and_nothing_is_sent() {
    let fake = FakeGateway::start().await;
    let home = tempfile::tempdir().unwrap();
    let path = config(home.path(), &fake, "");
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", path.as_str()),
    ];
    for (args, stdin) in [
        (&["chat", ""][..], ""),
        (&["chat"], ""),
        (&["chat", "-"], "  \n\t\n"),
        (&["chat", "   "], ""),
        (&["chat", "--session", "s", ""], ""),
    ] {
        let out = run(home.path(), &env, args, stdin).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("the prompt is empty"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    assert!(
        fake.requests().is_empty(),
        "an empty prompt reached the gateway"
    );
}

#[tokio::test]
async fn json_that_does_not_parse_is_printed_raw_with_the_error_beside_it() {
    let fake = FakeGateway::start().await;
    let home = tempfile::tempdir().unwrap();
    let path = config(home.path(), &fake, "");
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", path.as_str()),
    ];
    let shared = with_shared_daemon(home.path(), &env);
    let _stop = StopSharedDaemon(shared.clone());
    let shared: Vec<(&str, &str)> = shared
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for args in [
        &["chat", "--json", "give json"][..],
        &["chat", "--session", "s", "--json", "give json"],
    ] {
        fake.push_script(Script {
            content: Some("Sure! {\"a\": 1".into()),
            ..Script::default()
        });
        let out = run(home.path(), &shared, args, "").await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&out.stdout), "Sure! {\"a\": 1\n", "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr
                .starts_with("cfgate: error: JSON was asked for, but the answer is not valid JSON"),
            "{args:?}: {stderr}"
        );
        let hint = stderr.lines().nth(1).unwrap_or_default();
        assert!(
            hint.starts_with("hint: ") && hint.contains("its text is on stdout"),
            "{args:?}: {stderr}"
        );
    }
}

/// `env` with the folders of a shared daemon of its own under `dir`.
fn with_shared_daemon(dir: &Path, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push((
        "CFGATE_RUNTIME_DIR".into(),
        dir.join("run").display().to_string(),
    ));
    env.push((
        "CFGATE_DATA_DIR".into(),
        dir.join("data").display().to_string(),
    ));
    env
}

#[tokio::test]
async fn a_closed_stdout_ends_the_chat_and_drops_the_upstream_request() {
    let fake = FakeGateway::start().await;
    let home = tempfile::tempdir().unwrap();
    let path = config(home.path(), &fake, "");
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", path.as_str()),
    ];
    closed_stdout_ends(&fake, home.path(), &env, &["chat", "hi"], 1).await;
    let shared = with_shared_daemon(home.path(), &env);
    let _stop = StopSharedDaemon(shared.clone());
    let shared: Vec<(&str, &str)> = shared
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    closed_stdout_ends(
        &fake,
        home.path(),
        &shared,
        &["chat", "--session", "s", "hi"],
        2,
    )
    .await;
}

/// `cfgate <args> | head -c 5` on a stream that stays open after its first pieces: only
/// the reader going away can end it. `dropped`: the streams the fake has seen dropped after.
async fn closed_stdout_ends(
    fake: &FakeGateway,
    home: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    dropped: usize,
) {
    fake.push_script(Script {
        chunks: Some(vec!["hello ".into(), "world ".into()]),
        hold_open: true,
        ..Script::default()
    });
    let mut child = command(home, env)
        .env_remove("CFGATE_LOG")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // `| head -c 5`: read five bytes, then go away.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 5];
    tokio::time::timeout(WAIT, stdout.read_exact(&mut first))
        .await
        .expect("the answer started")
        .unwrap();
    assert_eq!(&first, b"hello", "{args:?}");
    drop(stdout);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not end when its reader went away"))
        .unwrap();
    assert!(status.success(), "{args:?}: {status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(stderr, "", "{args:?}: a reader that left is not an error");
    let deadline = tokio::time::Instant::now() + WAIT;
    while fake.streams_dropped() < dropped {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{args:?}: the upstream stream was not dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn retries_stay_off_stderr_and_in_the_log_file() {
    let fake = FakeGateway::start().await;
    let home = tempfile::tempdir().unwrap();
    let path = config(home.path(), &fake, "");
    fake.push_script(Script {
        status: Some(503),
        body: Some(
            json!({"errors": [{"code": 7009, "message": "Upstream unavailable"}]}).to_string(),
        ),
        ..Script::default()
    });
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", path.as_str()),
    ];
    let out = run(home.path(), &env, &["chat", "hi"], "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "echo: hi\n");
    assert_eq!(
        text(&out.stderr),
        "",
        "a retry that worked is not the user's business"
    );
    assert_eq!(chat_requests(&fake).len(), 2);
    let logs = logs(home.path());
    assert!(
        logs.contains("WARN") && logs.contains("retrying after"),
        "{logs}"
    );
}

/// A TLS server with a certificate no one trusts (as a TLS-intercepting proxy with its
/// own root would look to a machine without that root); counts the connections.
fn untrusted_tls_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = CertificateDer::from(include_bytes!("fixtures/untrusted-cert.der").to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        include_bytes!("fixtures/untrusted-key.der").to_vec(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let _ = tcp.set_read_timeout(Some(WAIT));
            let Ok(mut tls) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            // The client refuses the certificate and sends an alert: the handshake ends.
            while tls.is_handshaking() && tls.complete_io(&mut tcp).is_ok() {}
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn an_untrusted_certificate_is_not_retried_and_stderr_has_only_the_error() {
    let (addr, connections) = untrusted_tls_server();
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("config.toml");
    std::fs::write(
        &path,
        format!("base_url = \"https://{addr}/v1/acc/gw/compat\"\n"),
    )
    .unwrap();
    let env = [
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_CONFIG", path.to_str().unwrap()),
    ];
    let out = run(home.path(), &env, &["chat", "hi"], "").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "only the error and its hint: {stderr}");
    assert!(
        lines[0].starts_with("cfgate: error: cannot connect to the gateway")
            && lines[0].contains("TLS certificate is not trusted"),
        "{stderr}"
    );
    assert!(lines[1].starts_with("hint: not retried"), "{stderr}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "a certificate error was retried"
    );
    let logs = logs(home.path());
    assert!(logs.contains("TLS certificate was refused"), "{logs}");
}

/// The shared daemon's world: its runtime folder, and a config file.
fn shared_env(dir: &Path) -> Vec<(String, String)> {
    let config = dir.join("config.toml");
    std::fs::write(&config, "base_url = \"http://127.0.0.1:9/v1/a/g/compat\"\n").unwrap();
    vec![
        ("CLOUDFLARE_API_TOKEN".into(), TOKEN.into()),
        (
            "CFGATE_RUNTIME_DIR".into(),
            dir.join("run").display().to_string(),
        ),
        ("CFGATE_CONFIG".into(), config.display().to_string()),
    ]
}

#[tokio::test]
async fn a_shared_daemon_that_cannot_start_says_why_and_leaves_no_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let env = shared_env(dir.path());
    let _stop = StopSharedDaemon(env.clone());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let home = tempfile::tempdir().unwrap();

    // Not loopback: refused before any daemon is started.
    let out = run(
        home.path(),
        &env,
        &["serve", "--shared", "--listen", "0.0.0.0:8765"],
        "",
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("loopback only"), "{stderr}");
    assert!(
        !dir.path().join("run").join("daemon.lock").exists(),
        "a daemon was started"
    );

    // A port in use: the daemon's own reason, once, and no daemon.pid left behind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let out = run(
        home.path(),
        &env,
        &["serve", "--shared", "--listen", &listen],
        "",
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("cfgate: the shared daemon did not start: ")
            && stderr.contains(&listen)
            && stderr.contains("in use"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        !dir.path().join("run").join("daemon.pid").exists(),
        "a failed start left daemon.pid"
    );
}
