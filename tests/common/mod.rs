//! Drives the real `cfgate` binary over its stdio, as an editor would.
//!
//! The frame reader here is written apart from cfgate's own, so a bug in cfgate's framing
//! cannot hide itself in the tests. Every wait is on an event (a frame, an exit) with a
//! generous timeout; the child is killed and reaped on drop.

#![allow(dead_code, unused_imports)]

#[cfg(unix)]
pub mod endpoint;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

pub use fake_gateway::{Config, FakeGateway, Fault, Hostile, RateLimit, RecordedRequest, Script};

#[cfg(unix)]
pub mod world;

/// Long enough for a loaded 2-core CI machine; short enough that a hang fails the test.
pub const WAIT: Duration = Duration::from_secs(20);
pub const TOKEN: &str = "cf-test-token-7f3a9c1e5b";

pub struct Daemon {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: mpsc::UnboundedReceiver<Value>,
    /// Messages received while waiting for something else.
    pending: Vec<Value>,
    next_id: i64,
    pub home: tempfile::TempDir,
    pub stderr_path: PathBuf,
    /// Every raw frame body the daemon wrote, for leak checks.
    pub transcript: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The environment a test daemon runs in: a fresh HOME and no Cloudflare variables from
/// the machine running the tests.
pub fn command(home: &std::path::Path, env: &[(&str, &str)]) -> Command {
    command_for(env!("CARGO_BIN_EXE_cfgate"), home, env)
}

/// Any program in the same clean environment.
pub fn command_for(program: &str, home: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("CFGATE_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Daemon {
    /// Starts `cfgate serve` with the given environment.
    pub async fn spawn(env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_args(env, &["serve"]).await
    }

    /// Starts `cfgate <args>` (a server: `serve`, `serve --shared`) with the given environment.
    pub async fn spawn_args(env: &[(&str, &str)], args: &[&str]) -> Daemon {
        let home = tempfile::tempdir().expect("tempdir");
        let stderr_path = home.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = command(home.path(), env)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .expect("start cfgate");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, frames) = mpsc::unbounded_channel();
        let transcript = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = transcript.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            while let Some(body) = read_frame(&mut reader).await {
                log.lock().unwrap().push(body.clone());
                let value: Value = serde_json::from_str(&body).unwrap_or_else(|e| {
                    panic!("cfgate wrote a frame that is not JSON ({e}): {body}")
                });
                assert_eq!(value["jsonrpc"], "2.0", "not JSON-RPC 2.0: {body}");
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Daemon {
            stdin: child.stdin.take(),
            child,
            frames,
            pending: Vec::new(),
            next_id: 1,
            home,
            stderr_path,
            transcript,
        }
    }

    /// Starts a daemon with a token and initializes it against the fake gateway.
    pub async fn start(fake: &FakeGateway) -> Daemon {
        let mut d = Daemon::spawn(&[("CLOUDFLARE_API_TOKEN", TOKEN)]).await;
        d.initialize(json!({ "base_url": fake.compat_base("acc", "gw") }))
            .await;
        d
    }

    pub async fn initialize(&mut self, options: Value) -> Value {
        self.initialize_with(json!({}), options).await
    }

    /// `initialize` with the given client capabilities, then `initialized`.
    pub async fn initialize_with(&mut self, capabilities: Value, options: Value) -> Value {
        let result = self
            .request(
                "initialize",
                json!({
                    "processId": null,
                    "capabilities": capabilities,
                    "clientInfo": {"name": "cfgate-tests", "version": "1"},
                    "initializationOptions": options,
                }),
            )
            .await
            .expect("initialize succeeds");
        self.notify("initialized", json!({})).await;
        result
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.expect("write to cfgate");
        stdin.flush().await.expect("flush");
    }

    pub async fn send(&mut self, message: &Value) {
        let body = serde_json::to_vec(message).unwrap();
        let mut frame = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        frame.extend(body);
        self.send_raw(&frame).await;
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await;
    }

    /// Sends a request and returns its id without waiting.
    pub async fn start_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        id
    }

    pub async fn start_request_without_params(&mut self, method: &str) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method}))
            .await;
        id
    }

    /// Sends a request and waits for its answer: `Ok(result)` or `Err(error object)`.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.start_request(method, params).await;
        self.response(id).await
    }

    /// The next message that matches, keeping the others for later.
    pub async fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&matches) {
            return self.pending.remove(i);
        }
        // WAIT bounds a silence, not the whole wait: a long stream of progress on a busy
        // machine is not a hang. A stream that never ends still fails, at the cap.
        let cap = tokio::time::Instant::now() + WAIT * 10;
        let mut deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline.min(cap), self.frames.recv()).await;
            match next {
                Ok(Some(msg)) if matches(&msg) => return msg,
                Ok(Some(msg)) => {
                    self.pending.push(msg);
                    deadline = tokio::time::Instant::now() + WAIT;
                }
                Ok(None) => panic!(
                    "cfgate closed stdout while waiting for {what}; stderr:\n{}\nlogs:\n{}",
                    self.stderr(),
                    self.logs()
                ),
                Err(_) => panic!(
                    "timed out waiting for {what}; received meanwhile: {:#?}\nstderr:\n{}",
                    self.pending,
                    self.stderr()
                ),
            }
        }
    }

    pub async fn response(&mut self, id: i64) -> Result<Value, Value> {
        let msg = self
            .wait_for(&format!("response {id}"), |m| {
                m["id"] == json!(id) && m.get("method").is_none()
            })
            .await;
        match msg.get("error") {
            Some(err) => Err(err.clone()),
            None => Ok(msg["result"].clone()),
        }
    }

    /// Takes every message received so far (and not yet taken) that matches.
    pub fn take_pending(&mut self, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
        let (taken, rest) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|m| matches(m));
        self.pending = rest;
        taken
    }

    /// Every `$/progress` value received so far for `token`, in order (taken out).
    pub fn take_progress(&mut self, token: &Value) -> Vec<Value> {
        let (mine, rest): (Vec<Value>, Vec<Value>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|m| m["method"] == "$/progress" && &m["params"]["token"] == token);
        self.pending = rest;
        mine.into_iter()
            .map(|m| m["params"]["value"].clone())
            .collect()
    }

    /// Sends a request with a progress token; returns (progress values, answer), checking
    /// that every progress came before the answer.
    pub async fn streamed(
        &mut self,
        method: &str,
        mut params: Value,
    ) -> (Vec<Value>, Result<Value, Value>) {
        let token = json!(format!("tok-{}", self.next_id));
        params["workDoneToken"] = token.clone();
        let id = self.start_request(method, params).await;
        let answer = self.response(id).await;
        let progress = self.take_progress(&token);
        (progress, answer)
    }

    /// Starts a streamed chat that the fake holds open after its first piece, and waits
    /// until that piece has arrived: a request certainly in flight.
    pub async fn start_held_stream(&mut self, fake: &FakeGateway) -> i64 {
        fake.push_script(Script {
            chunks: Some(vec!["x ".into()]),
            hold_open: true,
            ..Script::default()
        });
        let id = self
            .start_request(
                "cfgate/chat",
                json!({"messages": user("hi"), "workDoneToken": "held"}),
            )
            .await;
        self.wait_for("stream started", |m| {
            m["method"] == "$/progress" && m["params"]["value"]["kind"] == "report"
        })
        .await;
        id
    }

    /// Every log file under this daemon's home (a shared daemon it started logs there too).
    pub fn logs(&self) -> String {
        let dir = self.home.path().join("state").join("cfgate");
        let mut out = String::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        out
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("cfgate is running")
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit; panics if it does not.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("cfgate did not exit; stderr:\n{}", self.stderr()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Reap it, so no zombie outlives the test.
        let _ = self.child.try_wait();
        // Every test's daemon is checked for the token: its answers, stderr and log files.
        if !std::thread::panicking() {
            let transcript = self
                .transcript
                .lock()
                .map(|t| t.join("\n"))
                .unwrap_or_default();
            assert_no_token(&transcript, "a frame cfgate wrote");
            assert_no_token_in_logs(self.home.path());
        }
    }
}

/// Fails the test if the token is in `text`.
pub fn assert_no_token(text: &str, place: &str) {
    assert!(!text.contains(TOKEN), "the API token leaked into {place}");
}

/// Checks every file under `home` (stderr captures, the state dir's log files) for the token.
pub fn assert_no_token_in_logs(home: &std::path::Path) {
    let mut dirs = vec![home.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_none_or(|e| e != "toml") {
                // Config files are where tests put the token on purpose.
                let bytes = std::fs::read(&path).unwrap_or_default();
                assert_no_token(
                    &String::from_utf8_lossy(&bytes),
                    &path.display().to_string(),
                );
            }
        }
    }
}

/// Reads one LSP frame body; `None` at end of stream.
async fn read_frame<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Option<String> {
    let mut length: Option<usize> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line from cfgate: {line:?}"));
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse().expect("numeric Content-Length"));
        }
    }
    let mut body = vec![0; length.expect("Content-Length from cfgate")];
    reader.read_exact(&mut body).await.ok()?;
    Some(String::from_utf8(body).expect("UTF-8 from cfgate"))
}

pub fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// The `content` pieces of progress reports, joined.
pub fn joined_content(progress: &[Value]) -> String {
    progress
        .iter()
        .filter(|v| v["kind"] == "report")
        .filter_map(|v| v["content"].as_str())
        .collect()
}

pub fn chat_requests(fake: &FakeGateway) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect()
}

/// `cfgate <args>` as typed in a shell: `stdin` as its input, no `CFGATE_LOG`, waited for,
/// and checked for the token in what it printed and logged.
pub async fn run_cli(
    home: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    let mut child = command(home, env)
        .env_remove("CFGATE_LOG")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start cfgate");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("cfgate finished")
        .expect("output");
    assert_no_token(&String::from_utf8_lossy(&out.stdout), "stdout");
    assert_no_token(&String::from_utf8_lossy(&out.stderr), "stderr");
    assert_no_token_in_logs(home);
    out
}
