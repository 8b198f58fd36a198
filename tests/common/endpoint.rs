//! The loopback endpoint's OpenAI API under test: the real shared daemon with `--listen`
//! against the fake gateway, and `curl` to see its answers as HTTP.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use super::{FakeGateway, TOKEN, WAIT, command};

pub const ALLOWED_ORIGIN: &str = "http://localhost:5173";
pub const MODEL: &str = "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast";

pub struct Endpoint {
    pub daemon: tokio::process::Child,
    /// Its home (logs under `state/cfgate`), runtime, data and config folders.
    pub dirs: tempfile::TempDir,
    /// The runtime folder: `endpoint.addr`, `endpoint.token`.
    pub run: PathBuf,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub base_url: String,
    pub token: String,
}

/// Starts `cfgate daemon --listen 127.0.0.1:0` with one attempt per request (a 429 is the
/// client's to see, not cfgate's to retry) and [`ALLOWED_ORIGIN`] listed.
pub async fn start_endpoint(fake: &FakeGateway) -> Endpoint {
    start_endpoint_with(fake, "max_attempts = 1\n", &[]).await
}

/// The same with more config file lines and environment variables.
pub async fn start_endpoint_with(
    fake: &FakeGateway,
    config_lines: &str,
    env: &[(&str, &str)],
) -> Endpoint {
    let dirs = tempfile::tempdir().unwrap();
    let run = dirs.path().join("run");
    let config = dirs.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "base_url = \"{}\"\nlisten_origins = [\"{ALLOWED_ORIGIN}\"]\n{config_lines}",
            fake.compat_base("acc", "gw")
        ),
    )
    .unwrap();
    let data = dirs.path().join("data");
    let mut all_env = vec![
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("CFGATE_RUNTIME_DIR", run.to_str().unwrap()),
        ("CFGATE_DATA_DIR", data.to_str().unwrap()),
        ("CFGATE_CONFIG", config.to_str().unwrap()),
    ];
    all_env.extend_from_slice(env);
    let daemon = command(dirs.path(), &all_env)
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start cfgate daemon");
    let addr = endpoint_addr(&run).await;
    let token = std::fs::read_to_string(run.join("endpoint.token"))
        .unwrap()
        .trim()
        .to_string();
    Endpoint {
        daemon,
        dirs,
        run,
        base_url: format!("http://{addr}/v1"),
        addr,
        token,
    }
}

/// The address a daemon with runtime folder `run` serves the endpoint on, once it has
/// written the whole of `endpoint.addr` (a line).
pub async fn endpoint_addr(run: &Path) -> String {
    let addr_file = run.join("endpoint.addr");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file) {
            if text.ends_with('\n') {
                return text.trim().to_string();
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no endpoint.addr");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `curl` against the endpoint: (status, lower-cased headers, body).
pub async fn curl(
    e: &Endpoint,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&Value>,
) -> (u16, Vec<(String, String)>, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-i", "-X", method]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json"])
            .args(["--data-binary", &body.to_string()]);
    }
    cmd.arg(format!("{}{path}", e.base_url.trim_end_matches("/v1")));
    let out = tokio::time::timeout(WAIT, cmd.kill_on_drop(true).output())
        .await
        .expect("curl finished")
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Runs a real client to its end, stdin closed (killed and reaped if it outlives `wait`),
/// asserts that it succeeded and returns what it printed.
pub async fn run_client(
    mut cmd: tokio::process::Command,
    what: &str,
    wait: std::time::Duration,
) -> String {
    let out = cmd.stdin(Stdio::null()).kill_on_drop(true).output();
    let out = tokio::time::timeout(wait, out)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not finish"))
        .unwrap_or_else(|e| panic!("{what}: does not run ({e})"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`run_client`] for a client script that prints one JSON object.
pub async fn client_json(cmd: tokio::process::Command, what: &str) -> Value {
    let out = run_client(cmd, what, WAIT).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {out}"))
}
