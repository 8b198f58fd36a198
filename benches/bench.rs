//! cfgate against a direct connection, measured side by side in one run.
//!
//! `cargo bench --bench bench -- [--quick] [--json PATH] [--agno PATH.json] [--only FIGURES]
//! [--cfgate PATH]`; docs/performance.md has the method, the results and what they mean.
//! Run without cargo bench's `--bench` flag (`cargo test --benches`, or by hand), it makes
//! a quick run unless given `--full`.
//!
//! The fake gateway runs in this process (on 127.0.0.1 only). Every figure is measured for
//! the real `cfgate serve` binary, spoken to over its stdio in LSP framing by the small
//! client below, and for a direct-HTTP baseline: a keep-alive reqwest client, built like
//! cfgate's own, sending the same body to the same fake. The two sides run in pairs, in
//! alternating order (A B, B A, ...), so that whatever the machine does in the meantime
//! lands on both; the "added" rows are the distribution of the per-pair differences.
//!
//! Nothing here asserts a timing. What is checked, and fails the run, is correctness: every
//! answer is the expected one and every streamed piece arrives, in order, on its request.
//! Every wait has a timeout and every loop a bound, so the benchmark always ends by itself.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_gateway::{Config, FakeGateway};

// In benches/bench/, where cargo does not take them for benchmarks of their own.
#[path = "bench/callgrind.rs"]
mod callgrind;
#[path = "bench/idle.rs"]
mod idle;
#[path = "bench/openai.rs"]
mod openai;
#[path = "bench/shared_path.rs"]
mod shared_path;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

/// What cfgate sends for its default model; the direct client sends the same.
const MODEL: &str = "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast";
const TOKEN: &str = "x";
/// The longest any single step may take before the run is declared stuck.
const WAIT: Duration = Duration::from_secs(60);
/// Pieces per streamed answer.
const PIECES: usize = 50;
/// The per-piece delay of the paced variant.
const PACED: Duration = Duration::from_millis(1);

type Res<T> = Result<T, String>;

// ---------------------------------------------------------------------------------------
// Plan and arguments

#[derive(Clone, Copy)]
struct Plan {
    warmup: usize,
    warm: usize,
    stream: usize,
    stream_paced: usize,
    conc100: usize,
    conc1000: usize,
    /// Unmeasured rounds before the measured ones of a concurrency figure.
    conc_warmup: usize,
    cold: usize,
    oneshot: usize,
    sequential: usize,
    /// The window of the idle figure.
    idle_secs: u64,
    /// Requests of each kind counted by callgrind.
    callgrind: usize,
}

const FULL: Plan = Plan {
    warmup: 300,
    warm: 5000,
    stream: 1000,
    stream_paced: 100,
    conc100: 20,
    conc1000: 5,
    conc_warmup: 1,
    cold: 30,
    oneshot: 30,
    sequential: 1000,
    idle_secs: 10,
    callgrind: 200,
};

const QUICK: Plan = Plan {
    warmup: 5,
    warm: 30,
    stream: 10,
    stream_paced: 3,
    conc100: 1,
    conc1000: 1,
    conc_warmup: 0,
    cold: 3,
    oneshot: 3,
    sequential: 1000,
    idle_secs: 2,
    callgrind: 20,
};

struct Args {
    quick: bool,
    json: PathBuf,
    agno: Option<PathBuf>,
    cfgate: Option<PathBuf>,
    /// Only these figures (for profiling one of them): see [`FIGURES`].
    only: Option<Vec<String>>,
}

/// The figures, by the names `--only` takes.
const FIGURES: &[&str] = &[
    "shared",
    "openai",
    "warm",
    "stream",
    "paced",
    "concurrent",
    "cold",
    "oneshot",
    "connections",
    "idle",
    "callgrind",
];

impl Args {
    fn wants(&self, figure: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == figure))
    }
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        quick: false,
        json: target_dir().join("bench.json"),
        agno: None,
        cfgate: None,
        only: None,
    };
    // `cargo bench` passes --bench; without it (`cargo test --benches`, or the executable
    // run by hand) a quick run is the default, so a test run stays short. --full overrides.
    let mut bench_mode = false;
    let mut full = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = PathBuf::from(value()?),
            "--agno" => args.agno = Some(PathBuf::from(value()?)),
            "--cfgate" => args.cfgate = Some(PathBuf::from(value()?)),
            "--only" => {
                let list: Vec<String> = value()?.split(',').map(str::to_string).collect();
                if let Some(bad) = list.iter().find(|f| !FIGURES.contains(&f.as_str())) {
                    return Err(format!(
                        "--only: unknown figure {bad:?}; one of {FIGURES:?}"
                    ));
                }
                args.only = Some(list);
            }
            // cargo bench passes --bench to a harness = false target.
            "--bench" => bench_mode = true,
            "--full" => full = true,
            "-h" | "--help" => {
                return Err(
                    "usage: cargo bench --bench bench -- [--quick | --full] [--json PATH] \
                            [--agno PATH.json] [--cfgate PATH] [--only FIGURE,...]"
                        .into(),
                );
            }
            other => eprintln!("bench: ignoring argument {other:?}"),
        }
    }
    if !bench_mode && !full {
        args.quick = true;
    }
    if full {
        args.quick = false;
    }
    Ok(args)
}

/// `target/` (or CARGO_TARGET_DIR): two levels above `target/<profile>/deps/bench-xxx`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The daemon built in the same profile as this benchmark, `target/<profile>/cfgate`: cargo
/// names it in CARGO_BIN_EXE_cfgate when it builds a benchmark (current cargo does; if not,
/// it is found beside the benchmark's executable). Else CFGATE_BIN, else
/// `target/release/cfgate`. `--cfgate PATH` overrides all of them.
fn locate_cfgate(explicit: Option<PathBuf>) -> Res<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let same_profile = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        (deps.file_name()? == "deps").then(|| deps.parent().map(|p| p.join("cfgate")))?
    });
    let candidates = [
        option_env!("CARGO_BIN_EXE_cfgate").map(PathBuf::from),
        same_profile,
        std::env::var_os("CFGATE_BIN").map(PathBuf::from),
        Some(target_dir().join("release").join("cfgate")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "cannot find the cfgate binary: build it (cargo build --release) or set CFGATE_BIN"
                .into()
        })
}

// ---------------------------------------------------------------------------------------
// Statistics and the report

#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Summary {
    n: usize,
    median: f64,
    p99: f64,
    min: f64,
    max: f64,
}

fn summarize(values: &[f64]) -> Summary {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Summary {
            n,
            median: f64::NAN,
            p99: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let p99_index = ((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1;
    Summary {
        n,
        median,
        p99: v[p99_index],
        min: v[0],
        max: v[n - 1],
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Row {
    figure: String,
    variant: String,
    side: String,
    unit: String,
    #[serde(flatten)]
    summary: Summary,
}

#[derive(Clone, serde::Serialize)]
struct Verdict {
    figure: String,
    target: String,
    measured: String,
    met: bool,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    verdicts: Vec<Verdict>,
}

impl Report {
    fn row(&mut self, figure: &str, variant: &str, side: &str, unit: &str, values: &[f64]) {
        let summary = summarize(values);
        self.rows.push(Row {
            figure: figure.into(),
            variant: variant.into(),
            side: side.into(),
            unit: unit.into(),
            summary,
        });
        let shown = |x: f64| format_value(x, unit);
        println!(
            "  {figure} [{variant}] {side}: median {} p99 {} min {} max {} {unit} (n={})",
            shown(summary.median),
            shown(summary.p99),
            shown(summary.min),
            shown(summary.max),
            summary.n
        );
    }

    fn verdict(&mut self, figure: &str, target: &str, measured: String, met: bool) {
        println!(
            "  -> {figure}: {measured}; target {target}: {}",
            if met { "met" } else { "MISSED" }
        );
        self.verdicts.push(Verdict {
            figure: figure.into(),
            target: target.into(),
            measured,
            met,
        });
    }

    /// Adds Agno's rows (written by bench/compare/compare.py) after the rows of the same
    /// figure and variant, or at the end.
    fn merge(&mut self, extra: Vec<Row>) {
        for row in extra {
            let at = self
                .rows
                .iter()
                .rposition(|r| r.figure == row.figure && r.variant == row.variant)
                .map(|i| i + 1)
                .unwrap_or(self.rows.len());
            self.rows.insert(at, row);
        }
    }

    fn table(&self) -> String {
        let mut out = String::new();
        out.push_str("| figure | variant | side | n | median | p99 | min | max | unit |\n");
        out.push_str("|---|---|---|---:|---:|---:|---:|---:|---|\n");
        let mut last = (String::new(), String::new());
        for r in &self.rows {
            let same = last.0 == r.figure && last.1 == r.variant;
            let (figure, variant) = if same {
                ("", "")
            } else {
                (r.figure.as_str(), r.variant.as_str())
            };
            let s = r.summary;
            let f = |x: f64| format_value(x, &r.unit);
            let _ = writeln!(
                out,
                "| {figure} | {variant} | {} | {} | {} | {} | {} | {} | {} |",
                r.side,
                s.n,
                f(s.median),
                f(s.p99),
                f(s.min),
                f(s.max),
                r.unit
            );
            last = (r.figure.clone(), r.variant.clone());
        }
        out.push_str("\n| target | measured | met |\n|---|---|---|\n");
        for v in &self.verdicts {
            let _ = writeln!(
                out,
                "| {}: {} | {} | {} |",
                v.figure,
                v.target,
                v.measured,
                if v.met { "yes" } else { "**no**" }
            );
        }
        out
    }
}

fn format_value(x: f64, unit: &str) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    match unit {
        "ms" => format!("{x:.3}"),
        "MiB" => format!("{x:.1}"),
        "x" => format!("{x:.2}"),
        _ => format!("{x:.0}"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => ms(d),
        None => -ms(earlier - later),
    }
}

// ---------------------------------------------------------------------------------------
// The answers the fake gives: "echo: " + the last user message, one piece per word.

/// A message of `n - 1` distinct words, so that its echo streams in exactly `n` pieces
/// that name the request they belong to (a piece delivered to the wrong request, or out of
/// order, is caught).
fn message(tag: &str, n: usize) -> String {
    (1..n)
        .map(|k| format!("{tag}w{k}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn expected_pieces(msg: &str) -> Vec<String> {
    let words: Vec<&str> = msg.split(' ').collect();
    let mut pieces = vec!["echo: ".to_string()];
    for (i, w) in words.iter().enumerate() {
        if i + 1 < words.len() {
            pieces.push(format!("{w} "));
        } else {
            pieces.push((*w).to_string());
        }
    }
    pieces
}

/// One streamed answer, as either client saw it.
struct Streamed {
    start: Instant,
    first: Instant,
    end: Instant,
    pieces: Vec<String>,
}

impl Streamed {
    fn check(&self, msg: &str, who: &str) -> Res<()> {
        let want = expected_pieces(msg);
        if self.pieces != want {
            return Err(format!(
                "{who}: pieces differ from the expected ones (got {} pieces, want {}): \
                 first got {:?}, first want {:?}",
                self.pieces.len(),
                want.len(),
                self.pieces.iter().take(3).collect::<Vec<_>>(),
                want.iter().take(3).collect::<Vec<_>>()
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The cfgate client: LSP framing over the child's stdio

type Stamped = (Instant, Value);

#[derive(Default)]
struct Routes {
    responses: HashMap<i64, oneshot::Sender<Stamped>>,
    progress: HashMap<String, mpsc::UnboundedSender<Stamped>>,
}

struct Daemon {
    child: Child,
    pid: u32,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicI64,
    home: tempfile::TempDir,
}

fn lock(routes: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    routes.lock().unwrap_or_else(|e| e.into_inner())
}

/// A clean environment: a fresh HOME and XDG dirs, the token, nothing from the machine.
fn clean_command(bin: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("CLOUDFLARE_API_TOKEN", TOKEN)
        .kill_on_drop(true);
    cmd
}

fn frame(message: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(&body);
    out
}

impl Daemon {
    /// Starts `cfgate serve`; `spawned` is taken just before the process is created.
    fn spawn(bin: &Path) -> Res<(Daemon, Instant)> {
        Daemon::spawn_with(bin, &[], &["serve"])
    }

    /// Starts `cfgate <args>` (`serve`, `serve --shared`), under `wrapper` (e.g. valgrind)
    /// when one is given. A shared daemon it starts lives in `<home>/run`.
    fn spawn_with(bin: &Path, wrapper: &[String], args: &[&str]) -> Res<(Daemon, Instant)> {
        let home = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        // The figures compare cfgate's overhead with a direct client at the same concurrency,
        // so the in-flight cap (64 by default) must not queue the 1,000 concurrent streams.
        let config = home.path().join("cfgate.toml");
        std::fs::write(&config, "max_in_flight = 4096\n").map_err(|e| format!("config: {e}"))?;
        let mut cmd = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut cmd = clean_command(Path::new(program), home.path());
                cmd.args(wrapper_args).arg(bin);
                cmd
            }
            None => clean_command(bin, home.path()),
        };
        cmd.env("CFGATE_CONFIG", &config)
            .env("CFGATE_RUNTIME_DIR", home.path().join("run"));
        cmd.args(args);
        Daemon::spawn_command(cmd, bin, home)
    }

    /// Starts `cmd` (a server: `serve`, `serve --shared`) with its stdio piped to this client.
    fn spawn_command(
        mut cmd: Command,
        bin: &Path,
        home: tempfile::TempDir,
    ) -> Res<(Daemon, Instant)> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("cfgate exited at once")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let routes = Arc::new(Mutex::new(Routes::default()));
        tokio::spawn(read_frames(stdout, routes.clone()));
        let daemon = Daemon {
            stdin: tokio::sync::Mutex::new(child.stdin.take()),
            child,
            pid,
            routes,
            next_id: AtomicI64::new(1),
            home,
        };
        Ok((daemon, spawned))
    }

    /// Starts and initializes a daemon against `base_url`.
    async fn start(bin: &Path, base_url: &str) -> Res<Daemon> {
        let (daemon, _) = Daemon::spawn(bin)?;
        daemon.initialize(base_url).await?;
        Ok(daemon)
    }

    async fn initialize(&self, base_url: &str) -> Res<Instant> {
        let params = json!({
            "processId": null,
            "capabilities": {},
            "clientInfo": {"name": "cfgate-bench", "version": "1"},
            "initializationOptions": {"base_url": base_url},
        });
        let (at, reply) = self.request("initialize", params).await?;
        if reply.get("result").is_none() {
            return Err(format!("initialize failed: {reply}"));
        }
        self.write(&frame(
            &json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        ))
        .await?;
        Ok(at)
    }

    async fn write(&self, bytes: &[u8]) -> Res<()> {
        let mut stdin = self.stdin.lock().await;
        let stdin = stdin.as_mut().ok_or("stdin closed")?;
        stdin
            .write_all(bytes)
            .await
            .map_err(|e| format!("write to cfgate: {e}"))?;
        stdin
            .flush()
            .await
            .map_err(|e| format!("flush to cfgate: {e}"))
    }

    fn id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn request(&self, method: &str, params: Value) -> Res<Stamped> {
        let id = self.id();
        let (tx, rx) = oneshot::channel();
        lock(&self.routes).responses.insert(id, tx);
        self.write(&frame(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        ))
        .await?;
        await_reply(rx, id).await
    }

    /// A non-streamed chat; returns when it started, when it was answered, the content.
    async fn chat(&self, msg: &str) -> Res<(Instant, Instant, String)> {
        let id = self.id();
        let (tx, rx) = oneshot::channel();
        lock(&self.routes).responses.insert(id, tx);
        let bytes = frame(&json!({"jsonrpc": "2.0", "id": id, "method": "cfgate/chat",
            "params": {"messages": [{"role": "user", "content": msg}]}}));
        let start = Instant::now();
        self.write(&bytes).await?;
        let (end, reply) = await_reply(rx, id).await?;
        let content = reply["result"]["content"]
            .as_str()
            .ok_or_else(|| format!("cfgate/chat failed: {reply}"))?
            .to_string();
        Ok((start, end, content))
    }

    /// Registers a streamed chat and returns its frame and how to collect it.
    fn prepare_streamed(&self, msg: &str) -> (Vec<u8>, Collect) {
        let id = self.id();
        let token = format!("t{id}");
        let (tx, rx) = oneshot::channel();
        let (ptx, prx) = mpsc::unbounded_channel();
        {
            let mut routes = lock(&self.routes);
            routes.responses.insert(id, tx);
            routes.progress.insert(token.clone(), ptx);
        }
        let bytes = frame(&json!({"jsonrpc": "2.0", "id": id, "method": "cfgate/chat",
            "params": {"messages": [{"role": "user", "content": msg}], "workDoneToken": token}}));
        (
            bytes,
            Collect {
                id,
                reply: rx,
                progress: prx,
            },
        )
    }

    async fn chat_streamed(&self, msg: &str) -> Res<Streamed> {
        let (bytes, collect) = self.prepare_streamed(msg);
        let start = Instant::now();
        self.write(&bytes).await?;
        collect.run(start).await
    }

    /// `msgs.len()` streamed chats sent at once, in one write; returns each one's timing.
    async fn chat_streamed_many(&self, msgs: &[String]) -> Res<Vec<Streamed>> {
        let mut bytes = Vec::new();
        let mut collects = Vec::with_capacity(msgs.len());
        for msg in msgs {
            let (b, c) = self.prepare_streamed(msg);
            bytes.extend_from_slice(&b);
            collects.push(c);
        }
        let start = Instant::now();
        self.write(&bytes).await?;
        let all = futures_util::future::join_all(collects.into_iter().map(|c| c.run(start)));
        all.await.into_iter().collect()
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    fn status_kib(&self, key: &str) -> Res<f64> {
        proc_status_kib(self.pid, key)
    }

    /// Closes stdin (the daemon exits at once) and reaps it.
    async fn stop(self) -> Res<()> {
        self.stop_within(Duration::from_secs(10)).await
    }

    async fn stop_within(mut self, limit: Duration) -> Res<()> {
        self.stdin.lock().await.take();
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("waiting for cfgate: {e}")),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!(
                    "cfgate did not exit within {limit:?} of its stdin closing"
                ))
            }
        }
    }
}

/// What a streamed request waits for: its `$/progress` reports, then its answer.
struct Collect {
    id: i64,
    reply: oneshot::Receiver<Stamped>,
    progress: mpsc::UnboundedReceiver<Stamped>,
}

impl Collect {
    async fn run(mut self, start: Instant) -> Res<Streamed> {
        let mut pieces = Vec::with_capacity(PIECES);
        let mut first = None;
        // At most one begin, the reports and one end; the bound guards against a runaway.
        for _ in 0..(PIECES * 4 + 8) {
            let next = tokio::time::timeout(WAIT, self.progress.recv())
                .await
                .map_err(|_| format!("request {}: no $/progress within {WAIT:?}", self.id))?;
            let Some((at, value)) = next else { break };
            match value["kind"].as_str() {
                Some("report") => {
                    if let Some(text) = value["content"].as_str() {
                        first.get_or_insert(at);
                        pieces.push(text.to_string());
                    }
                }
                Some("end") => break,
                _ => {}
            }
        }
        let (end, reply) = await_reply(self.reply, self.id).await?;
        let content = reply["result"]["content"]
            .as_str()
            .ok_or_else(|| format!("cfgate/chat failed: {reply}"))?;
        if pieces.concat() != content {
            return Err(format!(
                "request {}: the reports do not join to the answer",
                self.id
            ));
        }
        Ok(Streamed {
            start,
            first: first.ok_or_else(|| format!("request {}: no content report", self.id))?,
            end,
            pieces,
        })
    }
}

async fn await_reply(rx: oneshot::Receiver<Stamped>, id: i64) -> Res<Stamped> {
    match tokio::time::timeout(WAIT, rx).await {
        Ok(Ok(stamped)) => Ok(stamped),
        Ok(Err(_)) => Err(format!("cfgate closed its output before answering {id}")),
        Err(_) => Err(format!("no answer to request {id} within {WAIT:?}")),
    }
}

/// Reads frames from the daemon and hands each to whoever waits for it, stamped with the
/// moment it was decoded.
async fn read_frames(mut out: ChildStdout, routes: Arc<Mutex<Routes>>) {
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    loop {
        let mut used = 0;
        while let Some(header_end) = memchr::memmem::find(&buf[used..], b"\r\n\r\n") {
            let Some(length) = content_length(&buf[used..used + header_end]) else {
                eprintln!("bench: cfgate wrote a frame header without Content-Length");
                return;
            };
            let body_start = used + header_end + 4;
            if buf.len() < body_start + length {
                break;
            }
            let at = Instant::now();
            match serde_json::from_slice::<Value>(&buf[body_start..body_start + length]) {
                Ok(message) => dispatch(&routes, at, message),
                Err(e) => eprintln!("bench: cfgate wrote a frame that is not JSON: {e}"),
            }
            used = body_start + length;
        }
        buf.drain(..used);
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        match out.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                // Output over: whoever still waits learns it from the dropped senders.
                let mut r = lock(&routes);
                r.responses.clear();
                r.progress.clear();
                return;
            }
            Ok(_) => {}
        }
    }
}

fn content_length(header: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(header).ok()?;
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

fn dispatch(routes: &Mutex<Routes>, at: Instant, mut message: Value) {
    if message.get("method").and_then(Value::as_str) == Some("$/progress") {
        let params = message["params"].take();
        let Some(token) = params["token"].as_str() else {
            return;
        };
        let mut r = lock(routes);
        let end = params["value"]["kind"] == "end";
        if let Some(tx) = r.progress.get(token) {
            let _ = tx.send((at, params["value"].clone()));
        }
        if end {
            r.progress.remove(token);
        }
        return;
    }
    if message.get("method").is_some() {
        return; // window/showMessage and the like
    }
    if let Some(id) = message.get("id").and_then(Value::as_i64) {
        if let Some(tx) = lock(routes).responses.remove(&id) {
            let _ = tx.send((at, message));
        }
    }
}

fn proc_status_kib(pid: u32, key: &str) -> Res<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------------------
// The direct baseline: reqwest, built as cfgate builds its own client

struct Direct {
    http: reqwest::Client,
    url: String,
}

impl Direct {
    fn new(base_url: &str) -> Res<Direct> {
        let http = reqwest::Client::builder()
            .user_agent("cfgate-bench-direct/1")
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("reqwest client: {e}"))?;
        Ok(Direct {
            http,
            url: format!("{base_url}/chat/completions"),
        })
    }

    fn post(&self, body: &Value, stream: bool) -> reqwest::RequestBuilder {
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        self.http
            .post(&self.url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .header("accept", accept)
            .timeout(WAIT)
            .body(serde_json::to_vec(body).unwrap_or_default())
    }

    async fn chat(&self, msg: &str) -> Res<(Instant, Instant, String)> {
        let start = Instant::now();
        let body = json!({"messages": [{"role": "user", "content": msg}], "model": MODEL});
        let response = self
            .post(&body, false)
            .send()
            .await
            .map_err(|e| format!("direct: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("direct: HTTP {}", response.status()));
        }
        let bytes = response.bytes().await.map_err(|e| format!("direct: {e}"))?;
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| format!("direct: {e}"))?;
        let end = Instant::now();
        let content = json["choices"][0]["message"]["content"]
            .as_str()
            .ok_or("direct: no content")?
            .to_string();
        Ok((start, end, content))
    }

    async fn chat_streamed(&self, msg: &str) -> Res<Streamed> {
        let start = Instant::now();
        let body = json!({"messages": [{"role": "user", "content": msg}], "model": MODEL,
            "stream": true, "stream_options": {"include_usage": true}});
        let response = self
            .post(&body, true)
            .send()
            .await
            .map_err(|e| format!("direct: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("direct: HTTP {}", response.status()));
        }
        read_sse(response, start, "direct").await
    }

    async fn chat_streamed_many(self: &Arc<Self>, msgs: &[String]) -> Res<Vec<Streamed>> {
        let start = Instant::now();
        let tasks: Vec<_> = msgs
            .iter()
            .map(|msg| {
                let me = self.clone();
                let msg = msg.clone();
                tokio::spawn(async move { me.chat_streamed(&msg).await })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            let mut s = tokio::time::timeout(WAIT, task)
                .await
                .map_err(|_| "direct: a stream did not end in time".to_string())?
                .map_err(|e| format!("direct: task failed: {e}"))??;
            s.start = start;
            out.push(s);
        }
        Ok(out)
    }
}

/// Reads an OpenAI SSE answer (`chat.completion.chunk` events, then `data: [DONE]`): its
/// content pieces, when the first one came (the first `data:` event: both the fake's and
/// cfgate's first chunk carry the role and the first piece) and when `[DONE]` came.
async fn read_sse(mut response: reqwest::Response, start: Instant, who: &str) -> Res<Streamed> {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut pieces = Vec::with_capacity(PIECES);
    let mut first = None;
    let mut end = None;
    // Each chunk read brings at least one byte; the bound only guards a runaway stream.
    for _ in 0..1_000_000 {
        if end.is_some() {
            break;
        }
        let Some(chunk) = response.chunk().await.map_err(|e| format!("{who}: {e}"))? else {
            break;
        };
        buf.extend_from_slice(&chunk);
        let mut used = 0;
        while let Some(pos) = memchr::memmem::find(&buf[used..], b"\n\n") {
            let event = &buf[used..used + pos];
            used += pos + 2;
            for line in event.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let Some(data) = line.strip_prefix(b"data:") else {
                    continue;
                };
                let data = data.strip_prefix(b" ").unwrap_or(data);
                if data == b"[DONE]" {
                    end = Some(Instant::now());
                    continue;
                }
                let chunk: Value =
                    serde_json::from_slice(data).map_err(|e| format!("{who}: {e}"))?;
                if chunk.get("error").is_some() {
                    return Err(format!("{who}: error event {chunk}"));
                }
                if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
                    if !text.is_empty() {
                        first.get_or_insert_with(Instant::now);
                        pieces.push(text.to_string());
                    }
                }
            }
        }
        buf.drain(..used);
    }
    Ok(Streamed {
        start,
        first: first.ok_or_else(|| format!("{who}: no content piece"))?,
        end: end.ok_or_else(|| format!("{who}: no [DONE]"))?,
        pieces,
    })
}

// ---------------------------------------------------------------------------------------
// The figures

/// Runs `a` and `b` `n` times in pairs, alternating which goes first.
async fn paired<A, B, FA, FB, T>(n: usize, mut a: A, mut b: B) -> Res<Vec<(T, T)>>
where
    A: FnMut(usize) -> FA,
    B: FnMut(usize) -> FB,
    FA: std::future::Future<Output = Res<T>>,
    FB: std::future::Future<Output = Res<T>>,
{
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i % 2 == 0 {
            let x = a(i).await?;
            let y = b(i).await?;
            out.push((x, y));
        } else {
            let y = b(i).await?;
            let x = a(i).await?;
            out.push((x, y));
        }
    }
    Ok(out)
}

const WARM_MSG: &str = "hello there";

async fn warm_nonstreamed(
    report: &mut Report,
    plan: &Plan,
    daemon: &Daemon,
    direct: &Direct,
) -> Res<()> {
    let figure = "warm non-streamed request";
    println!(
        "{figure}: {} pairs after {} warm-up",
        plan.warm, plan.warmup
    );
    let run = |n| paired(n, |_| daemon.chat(WARM_MSG), |_| direct.chat(WARM_MSG));
    run(plan.warmup).await?;
    let pairs = run(plan.warm).await?;
    let want = format!("echo: {WARM_MSG}");
    let mut c = Vec::new();
    let mut d = Vec::new();
    let mut added = Vec::new();
    for ((cs, ce, ctext), (ds, de, dtext)) in &pairs {
        if *ctext != want || *dtext != want {
            return Err(format!("{figure}: unexpected answer {ctext:?} / {dtext:?}"));
        }
        c.push(ms(*ce - *cs));
        d.push(ms(*de - *ds));
        added.push(ms(*ce - *cs) - ms(*de - *ds));
    }
    let v = "no delay";
    report.row(figure, v, "cfgate", "ms", &c);
    report.row(figure, v, "direct", "ms", &d);
    report.row(figure, v, "added", "ms", &added);
    let m = summarize(&added).median;
    report.verdict(
        figure,
        "added ≤ 0.10 ms",
        format!("added median {m:.3} ms"),
        m <= 0.10,
    );
    Ok(())
}

/// The stdio round trip alone, without upstream: `cfgate/status` against the same bytes
/// echoed by `cat`, the operating system's floor for a round trip through another process.
async fn stdio_round_trip(report: &mut Report, plan: &Plan, daemon: &Daemon) -> Res<()> {
    let figure = "stdio round trip, no upstream";
    let n = plan.warm / 2;
    println!("{figure}: {n} pairs");
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start cat: {e}"))?;
    let mut cat_in = cat.stdin.take().ok_or("cat: no stdin")?;
    let mut cat_out = cat.stdout.take().ok_or("cat: no stdout")?;
    let echo = frame(&json!({"jsonrpc": "2.0", "id": 1, "method": "cfgate/status", "params": {}}));
    let mut back = vec![0u8; echo.len()];
    let mut c = Vec::with_capacity(n);
    let mut d = Vec::with_capacity(n);
    for i in 0..plan.warmup + n {
        let status = async {
            let start = Instant::now();
            let (end, reply) = daemon.request("cfgate/status", json!({})).await?;
            if reply["result"]["version"].as_str().is_none() {
                return Err(format!("cfgate/status failed: {reply}"));
            }
            Ok::<f64, String>(signed_ms(end, start))
        };
        let cat_trip = async {
            let start = Instant::now();
            cat_in
                .write_all(&echo)
                .await
                .map_err(|e| format!("cat: {e}"))?;
            tokio::time::timeout(WAIT, cat_out.read_exact(&mut back))
                .await
                .map_err(|_| "cat did not echo".to_string())?
                .map_err(|e| format!("cat: {e}"))?;
            Ok::<f64, String>(ms(start.elapsed()))
        };
        let (x, y) = if i % 2 == 0 {
            let x = status.await?;
            (x, cat_trip.await?)
        } else {
            let y = cat_trip.await?;
            (status.await?, y)
        };
        if back != echo {
            return Err("cat echoed something else".into());
        }
        if i >= plan.warmup {
            c.push(x);
            d.push(y);
        }
    }
    drop(cat_in);
    let _ = tokio::time::timeout(Duration::from_secs(5), cat.wait()).await;
    report.row(figure, "no upstream", "cfgate/status", "ms", &c);
    report.row(figure, "no upstream", "`cat` echo (OS floor)", "ms", &d);
    let added: Vec<f64> = c.iter().zip(&d).map(|(x, y)| x - y).collect();
    report.row(figure, "no upstream", "added (status − cat)", "ms", &added);
    let m = summarize(&added).median;
    report.verdict(
        &format!("{figure}: cfgate/status − cat"),
        "≤ 0.03 ms",
        format!("added median {m:.3} ms"),
        m <= 0.03,
    );
    Ok(())
}

async fn streamed(
    report: &mut Report,
    plan: &Plan,
    variant: &str,
    n: usize,
    daemon: &Daemon,
    direct: &Direct,
) -> Res<()> {
    println!("streams of {PIECES} pieces [{variant}]: {n} pairs");
    let run = |n: usize, tag: &'static str| {
        paired(
            n,
            move |i| async move {
                let msg = message(&format!("{tag}c{i}"), PIECES);
                let s = daemon.chat_streamed(&msg).await?;
                s.check(&msg, "cfgate")?;
                Ok(s)
            },
            move |i| async move {
                let msg = message(&format!("{tag}d{i}"), PIECES);
                let s = direct.chat_streamed(&msg).await?;
                s.check(&msg, "direct")?;
                Ok(s)
            },
        )
    };
    run(plan.warmup.min(n), "warm").await?;
    let pairs = run(n, "x").await?;
    let first = |s: &Streamed| signed_ms(s.first, s.start);
    let end = |s: &Streamed| signed_ms(s.end, s.start);
    for (figure, f, target, limit) in [
        (
            "stream of 50: first piece",
            &first as &dyn Fn(&Streamed) -> f64,
            "added ≤ 0.15 ms",
            0.15,
        ),
        ("stream of 50: end", &end, "added ≤ 0.5 ms", 0.5),
    ] {
        let c: Vec<f64> = pairs.iter().map(|(c, _)| f(c)).collect();
        let d: Vec<f64> = pairs.iter().map(|(_, d)| f(d)).collect();
        let added: Vec<f64> = pairs.iter().map(|(c, d)| f(c) - f(d)).collect();
        report.row(figure, variant, "cfgate", "ms", &c);
        report.row(figure, variant, "direct", "ms", &d);
        report.row(figure, variant, "added", "ms", &added);
        let m = summarize(&added).median;
        report.verdict(
            &format!("{figure} [{variant}]"),
            target,
            format!("added median {m:.3} ms"),
            m <= limit,
        );
    }
    Ok(())
}

async fn concurrent(
    report: &mut Report,
    bin: &Path,
    fake: &FakeGateway,
    variant: &str,
    streams: usize,
    rounds: usize,
    warmup: usize,
) -> Res<()> {
    let figure = format!("{streams} concurrent streams of 50: wall");
    println!("{figure} [{variant}]: {rounds} pairs after {warmup} warm-up pair(s)");
    let base = fake.compat_base("acc", "gw");
    // A fresh daemon, so its peak RSS is this figure's.
    let daemon = Daemon::start(bin, &base).await?;
    let direct = Arc::new(Direct::new(&base)?);
    let msgs = |tag: &str| -> Vec<String> {
        (0..streams)
            .map(|i| message(&format!("{tag}{i}x"), PIECES))
            .collect()
    };
    let check = |who: &str, msgs: &[String], got: &[Streamed]| -> Res<f64> {
        if got.len() != msgs.len() {
            return Err(format!("{who}: {} of {} streams", got.len(), msgs.len()));
        }
        for (m, s) in msgs.iter().zip(got) {
            s.check(m, who)?;
        }
        let start = got[0].start;
        let last = got.iter().map(|s| s.end).max().unwrap_or(start);
        Ok(signed_ms(last, start))
    };
    let rss_before = daemon.status_kib("VmRSS")?;
    let mut pairs = Vec::new();
    for round in 0..warmup + rounds {
        let cm = msgs(&format!("c{round}r"));
        let dm = msgs(&format!("d{round}r"));
        let (c, d) = if round % 2 == 0 {
            let c = daemon.chat_streamed_many(&cm).await?;
            let d = direct.chat_streamed_many(&dm).await?;
            (c, d)
        } else {
            let d = direct.chat_streamed_many(&dm).await?;
            let c = daemon.chat_streamed_many(&cm).await?;
            (c, d)
        };
        let (c, d) = (check("cfgate", &cm, &c)?, check("direct", &dm, &d)?);
        if round >= warmup {
            pairs.push((c, d));
        }
        fake.clear_requests();
    }
    let peak = daemon.status_kib("VmHWM")? / 1024.0;
    daemon.stop().await?;
    let c: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let d: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let ratio: Vec<f64> = pairs.iter().map(|p| p.0 / p.1).collect();
    report.row(&figure, variant, "cfgate", "ms", &c);
    report.row(&figure, variant, "direct", "ms", &d);
    report.row(&figure, variant, "cfgate/direct", "x", &ratio);
    let peak_figure = "daemon peak RSS (VmHWM)";
    let peak_variant = format!("{streams} streams, {variant}");
    report.row(peak_figure, &peak_variant, "cfgate", "MiB", &[peak]);
    println!(
        "  (daemon VmRSS before the first round: {:.1} MiB)",
        rss_before / 1024.0
    );
    if streams >= 1000 {
        let r = summarize(&ratio).median;
        report.verdict(
            &format!("{figure} [{variant}]"),
            "≤ 1.5× direct",
            format!("{r:.2}× direct (median of pairs)"),
            r <= 1.5,
        );
        report.verdict(
            &format!("{peak_figure} [{peak_variant}]"),
            "≤ 64 MiB",
            format!("{peak:.1} MiB"),
            peak <= 64.0,
        );
    }
    Ok(())
}

/// Process start to the `initialize` answer, idle RSS; paired with `cfgate --version`
/// (process creation, loading and exit: the floor under any start-up).
async fn cold_start(report: &mut Report, plan: &Plan, bin: &Path, base: &str) -> Res<()> {
    let figure = "start to initialize answer";
    println!("{figure}: {} runs", plan.cold);
    let mut start = Vec::new();
    let mut floor = Vec::new();
    let mut idle = Vec::new();
    for i in 0..plan.cold {
        let measure_floor = async {
            let home = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
            let mut cmd = clean_command(bin, home.path());
            cmd.arg("--version")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let t0 = Instant::now();
            let mut child = cmd.spawn().map_err(|e| format!("cfgate --version: {e}"))?;
            let status = tokio::time::timeout(WAIT, child.wait())
                .await
                .map_err(|_| "cfgate --version hangs".to_string())?
                .map_err(|e| e.to_string())?;
            let t = ms(t0.elapsed());
            if !status.success() {
                return Err(format!("cfgate --version: {status}"));
            }
            Ok::<f64, String>(t)
        };
        let measure_start = async {
            let (daemon, spawned) = Daemon::spawn(bin)?;
            let answered = daemon.initialize(base).await?;
            let t = signed_ms(answered, spawned);
            // Idle: initialized, nothing asked, a moment for start-up work to settle.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let rss = daemon.status_kib("VmRSS")? / 1024.0;
            daemon.stop().await?;
            Ok::<(f64, f64), String>((t, rss))
        };
        if i % 2 == 0 {
            floor.push(measure_floor.await?);
            let (t, rss) = measure_start.await?;
            start.push(t);
            idle.push(rss);
        } else {
            let (t, rss) = measure_start.await?;
            start.push(t);
            idle.push(rss);
            floor.push(measure_floor.await?);
        }
    }
    report.row(figure, "cold process", "cfgate", "ms", &start);
    report.row(
        figure,
        "cold process",
        "floor: cfgate --version",
        "ms",
        &floor,
    );
    let m = summarize(&start).median;
    report.verdict(figure, "≤ 10 ms", format!("median {m:.2} ms"), m <= 10.0);
    let rss_figure = "idle RSS after initialize (VmRSS)";
    report.row(rss_figure, "cold process", "cfgate", "MiB", &idle);
    let m = summarize(&idle).median;
    report.verdict(
        rss_figure,
        "≤ 10 MiB",
        format!("median {m:.1} MiB"),
        m <= 10.0,
    );
    Ok(())
}

/// `cfgate chat hi`, process start to exit, against the fake.
async fn oneshot(report: &mut Report, plan: &Plan, bin: &Path, base: &str) -> Res<()> {
    let figure = "`cfgate chat hi` one-shot to exit";
    println!("{figure}: {} runs", plan.oneshot);
    let home = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let config = home.path().join("cfgate.toml");
    std::fs::write(&config, format!("base_url = \"{base}\"\n"))
        .map_err(|e| format!("config: {e}"))?;
    let mut times = Vec::new();
    for _ in 0..plan.oneshot {
        let mut cmd = clean_command(bin, home.path());
        cmd.env("CFGATE_CONFIG", &config)
            .args(["chat", "hi"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("cfgate chat: {e}"))?;
        let out = tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .map_err(|_| "cfgate chat hangs".to_string())?
            .map_err(|e| e.to_string())?;
        times.push(ms(t0.elapsed()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || stdout != "echo: hi\n" {
            return Err(format!(
                "cfgate chat hi: {} {stdout:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    report.row(figure, "cold process", "cfgate", "ms", &times);
    let m = summarize(&times).median;
    report.verdict(figure, "≤ 25 ms", format!("median {m:.2} ms"), m <= 25.0);
    Ok(())
}

/// Upstream TCP connections opened for `n` sequential requests, each side on a fresh fake.
async fn connections(report: &mut Report, plan: &Plan, bin: &Path) -> Res<()> {
    let n = plan.sequential;
    let figure = format!("upstream connections, {n} sequential requests");
    println!("{figure}");
    let fake = FakeGateway::start().await;
    let daemon = Daemon::start(bin, &fake.compat_base("acc", "gw")).await?;
    for _ in 0..n {
        daemon.chat(WARM_MSG).await?;
    }
    daemon.stop().await?;
    let c = fake.connections_accepted() as f64;
    drop(fake);
    let fake = FakeGateway::start().await;
    let direct = Direct::new(&fake.compat_base("acc", "gw"))?;
    for _ in 0..n {
        direct.chat(WARM_MSG).await?;
    }
    let d = fake.connections_accepted() as f64;
    report.row(&figure, "no delay", "cfgate", "count", &[c]);
    report.row(&figure, "no delay", "direct", "count", &[d]);
    report.verdict(&figure, "≤ 2", format!("{c}"), c <= 2.0);
    Ok(())
}

async fn run(args: &Args, bin: &Path, report: &mut Report) -> Res<()> {
    let plan = if args.quick { QUICK } else { FULL };
    let plain = FakeGateway::start_with(Config::default()).await;
    let paced = FakeGateway::start_with(Config {
        chunk_delay: PACED,
        ..Config::default()
    })
    .await;
    let plain_base = plain.compat_base("acc", "gw");
    let paced_base = paced.compat_base("acc", "gw");

    if args.wants("warm") || args.wants("stream") {
        let daemon = Daemon::start(bin, &plain_base).await?;
        let direct = Direct::new(&plain_base)?;
        if args.wants("warm") {
            warm_nonstreamed(report, &plan, &daemon, &direct).await?;
            stdio_round_trip(report, &plan, &daemon).await?;
            plain.clear_requests();
        }
        if args.wants("stream") {
            streamed(report, &plan, "no delay", plan.stream, &daemon, &direct).await?;
            plain.clear_requests();
        }
        daemon.stop().await?;
    }
    if args.wants("paced") {
        let daemon = Daemon::start(bin, &paced_base).await?;
        let direct = Direct::new(&paced_base)?;
        streamed(
            report,
            &plan,
            "1 ms/piece",
            plan.stream_paced,
            &daemon,
            &direct,
        )
        .await?;
        paced.clear_requests();
        daemon.stop().await?;
    }
    if args.wants("concurrent") {
        for (streams, rounds) in [(100, plan.conc100), (1000, plan.conc1000)] {
            let warmup = plan.conc_warmup;
            concurrent(report, bin, &plain, "no delay", streams, rounds, warmup).await?;
            // A quick run leaves out the slowest case: it must stay short in a debug build.
            if !(args.quick && streams >= 1000) {
                concurrent(report, bin, &paced, "1 ms/piece", streams, rounds, warmup).await?;
            }
        }
    }
    if args.wants("cold") {
        cold_start(report, &plan, bin, &plain_base).await?;
    }
    if args.wants("oneshot") {
        oneshot(report, &plan, bin, &plain_base).await?;
    }
    if args.wants("connections") {
        connections(report, &plan, bin).await?;
    }
    if args.wants("idle") {
        idle::idle(report, &plan, bin, &plain_base).await?;
    }
    if args.wants("callgrind") {
        callgrind::instructions(report, &plan, bin, &plain_base).await?;
    }
    if args.wants("shared") {
        shared_path::shared(report, &plan, bin, &plain_base).await?;
    }
    if args.wants("openai") {
        openai::openai(report, &plan, bin, &plain_base, &paced_base).await?;
        paced.clear_requests();
        plain.clear_requests();
    }
    Ok(())
}

fn profile_of(bin: &Path) -> String {
    bin.parent()
        .and_then(Path::file_name)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let bin = match locate_cfgate(args.cfgate.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    // reqwest is built without a default TLS provider; the baseline speaks plain http, but
    // building a client still wants one installed (as cfgate does at start).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "cfgate bench: {} ({} build), {cpus} CPUs, {} run",
        bin.display(),
        profile_of(&bin),
        if args.quick { "quick" } else { "full" }
    );
    let started = Instant::now();
    let mut report = Report::default();
    let outcome = runtime.block_on(run(&args, &bin, &mut report));
    // Anything still running (a daemon after an error) is killed with its handle.
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Err(e) = &outcome {
        eprintln!("bench: FAILED: {e}");
    }
    if let Some(path) = &args.agno {
        match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                serde_json::from_value::<Vec<Row>>(v["rows"].clone()).map_err(|e| e.to_string())
            }) {
            Ok(rows) => report.merge(rows),
            Err(e) => eprintln!("bench: cannot read {}: {e}", path.display()),
        }
    }
    let table = report.table();
    println!("\n{table}");
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    let json = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "quick": args.quick,
        "cfgate_bin": bin.display().to_string(),
        "profile": profile_of(&bin),
        "cpus": cpus,
        "seconds": started.elapsed().as_secs_f64(),
        "ok": outcome.is_ok(),
        "rows": report.rows,
        "targets": report.verdicts,
    });
    if let Some(dir) = args.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_string_pretty(&json) {
        Ok(text) => match std::fs::write(&args.json, text + "\n") {
            Ok(()) => println!("wrote {}", args.json.display()),
            Err(e) => eprintln!("bench: cannot write {}: {e}", args.json.display()),
        },
        Err(e) => eprintln!("bench: {e}"),
    }
    if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
