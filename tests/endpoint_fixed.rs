//! A fixed address and key for tools that cannot start cfgate themselves (issue 16): the
//! config file's `listen` makes the shared daemon serve the endpoint there, its key stays
//! across daemon restarts until `cfgate endpoint --rotate`, and `cfgate endpoint` prints
//! what to paste into an OpenAI-compatible tool.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;

struct User {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
    addr: String,
}

impl User {
    fn new(fake: &FakeGateway) -> User {
        let home = tempfile::tempdir().unwrap();
        // A port from the OS, then left free for the daemon.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = home.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "base_url = \"{}\"\nlisten = \"{addr}\"\n",
                fake.compat_base("acc", "gw")
            ),
        )
        .unwrap();
        let env = vec![
            ("CLOUDFLARE_API_TOKEN".to_string(), TOKEN.to_string()),
            (
                "CFGATE_RUNTIME_DIR".to_string(),
                home.path().join("run").display().to_string(),
            ),
            ("CFGATE_CONFIG".to_string(), config.display().to_string()),
        ];
        User { home, env, addr }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    async fn cfgate(&self, args: &[&str]) -> std::process::Output {
        run_cli(self.home.path(), &self.env(), args, "").await
    }

    fn key_file(&self) -> PathBuf {
        self.home.path().join("data/cfgate/endpoint.key")
    }

    /// `cfgate daemon` with no `--listen`: the config file's `listen` decides.
    async fn start_daemon(&self) -> tokio::process::Child {
        let child = command(self.home.path(), &self.env())
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start cfgate daemon");
        common::endpoint::endpoint_addr(&self.home.path().join("run")).await;
        child
    }
}

/// `GET /v1/models` with `key`; the HTTP status.
async fn list_models(addr: &str, key: &str) -> u16 {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("authorization: Bearer {key}")])
        .arg(format!("http://{addr}/v1/models"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn read_key(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[tokio::test]
async fn the_listen_setting_serves_a_fixed_address_with_a_key_that_survives_restarts() {
    let fake = FakeGateway::start().await;
    let user = User::new(&fake);
    // Before any daemon: where it will be.
    let out = user.cfgate(&["endpoint"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains(&format!("http://{}/v1", user.addr)), "{text}");
    assert!(text.contains("starts with the shared daemon"), "{text}");

    let mut daemon = user.start_daemon().await;
    let key = read_key(&user.key_file());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(user.key_file()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(list_models(&user.addr, &key).await, 200);
    assert_eq!(list_models(&user.addr, "wrong").await, 401);
    let out = user.cfgate(&["endpoint"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("running"), "{text}");
    assert!(
        text.contains(&user.key_file().display().to_string()),
        "{text}"
    );
    assert!(
        !text.contains(&key),
        "the key itself is not printed: {text}"
    );

    // Stopped and started again: the same address and the same key still work.
    assert!(user.cfgate(&["stop"]).await.status.success());
    tokio::time::timeout(WAIT, daemon.wait())
        .await
        .unwrap()
        .unwrap();
    let mut daemon = user.start_daemon().await;
    assert_eq!(read_key(&user.key_file()), key);
    assert_eq!(list_models(&user.addr, &key).await, 200);

    // A rotated key is taken at the next start; the old one is refused then.
    let out = user.cfgate(&["endpoint", "--rotate"]).await;
    assert!(out.status.success(), "{out:?}");
    let rotated = read_key(&user.key_file());
    assert_ne!(rotated, key);
    assert!(user.cfgate(&["stop"]).await.status.success());
    tokio::time::timeout(WAIT, daemon.wait())
        .await
        .unwrap()
        .unwrap();
    let _daemon = user.start_daemon().await;
    assert_eq!(list_models(&user.addr, &rotated).await, 200);
    assert_eq!(list_models(&user.addr, &key).await, 401);
}

#[tokio::test]
async fn endpoint_without_one_says_how_to_get_one() {
    let fake = FakeGateway::start().await;
    let user = User::new(&fake);
    std::fs::write(
        user.home.path().join("config.toml"),
        format!("base_url = \"{}\"\n", fake.compat_base("acc", "gw")),
    )
    .unwrap();
    let out = user.cfgate(&["endpoint"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen = "), "{stderr}");
}
