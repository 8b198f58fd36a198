//! The OpenAI-compatible API of the shared daemon's loopback endpoint (docs/openai.md):
//! `POST /v1/chat/completions` through cfgate against the same body sent straight to the
//! fake gateway, by the same method as the rest (pairs in alternating order, every answer
//! checked). One keep-alive reqwest client, warm, speaks to both: with the endpoint's key
//! to cfgate (`cfgate daemon --listen 127.0.0.1:0`), with the Cloudflare token to the fake.
//! Added: cfgate's extra, per pair, for a whole non-streamed answer and for a stream's first
//! `data:` chunk (on both sides it carries the role and the first piece) and its `[DONE]`;
//! streams against the fake without delay and with 1 ms between pieces.

use super::*;

/// A shared daemon serving the endpoint, in its own folders.
struct Endpoint {
    child: Child,
    dirs: tempfile::TempDir,
    /// `http://127.0.0.1:PORT/v1`
    base: String,
    key: String,
}

impl Endpoint {
    fn command(bin: &Path, dirs: &Path) -> Command {
        let mut cmd = clean_command(bin, dirs);
        cmd.env("CFGATE_RUNTIME_DIR", dirs.join("run"))
            .env("CFGATE_DATA_DIR", dirs.join("data"))
            .env("CFGATE_CONFIG", dirs.join("cfgate.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// `cfgate daemon --listen 127.0.0.1:0` against `base_url`, once it listens.
    async fn start(bin: &Path, base_url: &str) -> Res<Endpoint> {
        let dirs = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        std::fs::write(
            dirs.path().join("cfgate.toml"),
            format!("base_url = \"{base_url}\"\nmax_in_flight = 4096\n"),
        )
        .map_err(|e| format!("config: {e}"))?;
        let child = Endpoint::command(bin, dirs.path())
            .args(["daemon", "--listen", "127.0.0.1:0"])
            .spawn()
            .map_err(|e| format!("cannot start {} daemon: {e}", bin.display()))?;
        let run = dirs.path().join("run");
        let deadline = Instant::now() + WAIT;
        // The daemon writes endpoint.addr, newline-terminated, once it listens.
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(run.join("endpoint.addr")) {
                if text.ends_with('\n') {
                    break text.trim().to_string();
                }
            }
            if Instant::now() > deadline {
                return Err("cfgate daemon --listen: no endpoint.addr".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let key = std::fs::read_to_string(run.join("endpoint.token"))
            .map_err(|e| format!("endpoint.token: {e}"))?
            .trim()
            .to_string();
        Ok(Endpoint {
            child,
            dirs,
            base: format!("http://{addr}/v1"),
            key,
        })
    }

    /// `cfgate stop`, and the daemon reaped.
    async fn stop(mut self, bin: &Path) -> Res<()> {
        let stopped = tokio::time::timeout(
            WAIT,
            Endpoint::command(bin, self.dirs.path())
                .arg("stop")
                .status(),
        )
        .await;
        let exited = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        if exited.is_err() {
            let _ = self.child.kill().await;
        }
        match (stopped, exited) {
            (Ok(Ok(s)), Ok(Ok(_))) if s.success() => Ok(()),
            other => Err(format!("cfgate stop (endpoint daemon): {other:?}")),
        }
    }
}

/// Where one side's requests go: its `/chat/completions` and its bearer.
struct Side {
    url: String,
    bearer: String,
    who: &'static str,
}

/// The one client both sides share (each keeps its own pooled connection).
fn client() -> Res<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent("cfgate-bench-openai/1")
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("reqwest client: {e}"))
}

fn body(msg: &str, stream: bool) -> Vec<u8> {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": msg}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

impl Side {
    async fn send(&self, http: &reqwest::Client, body: Vec<u8>) -> Res<reqwest::Response> {
        let response = http
            .post(&self.url)
            .header("authorization", format!("Bearer {}", self.bearer))
            .header("content-type", "application/json")
            .timeout(WAIT)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.who))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(format!("{}: HTTP {status}: {text}", self.who));
        }
        Ok(response)
    }

    /// A whole answer: start, end (the body read and parsed), its content.
    async fn chat(&self, http: &reqwest::Client, msg: &str) -> Res<(Instant, Instant, String)> {
        let body = body(msg, false);
        let start = Instant::now();
        let response = self.send(http, body).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.who))?;
        let json: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", self.who))?;
        let end = Instant::now();
        let content = json["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| format!("{}: no content in {json}", self.who))?
            .to_string();
        Ok((start, end, content))
    }

    async fn chat_streamed(&self, http: &reqwest::Client, msg: &str) -> Res<Streamed> {
        let body = body(msg, true);
        let start = Instant::now();
        let response = self.send(http, body).await?;
        let streamed = read_sse(response, start, self.who).await?;
        streamed.check(msg, self.who)?;
        Ok(streamed)
    }
}

pub(super) async fn openai(
    report: &mut Report,
    plan: &Plan,
    bin: &Path,
    plain: &str,
    paced: &str,
) -> Res<()> {
    let http = client()?;
    for (base, variant) in [(plain, "no delay"), (paced, "1 ms/piece")] {
        let endpoint = Endpoint::start(bin, base).await?;
        let cfgate = Side {
            url: format!("{}/chat/completions", endpoint.base),
            bearer: endpoint.key.clone(),
            who: "cfgate /v1",
        };
        let direct = Side {
            url: format!("{base}/chat/completions"),
            bearer: TOKEN.into(),
            who: "direct",
        };
        let measured = async {
            if variant == "no delay" {
                warm(report, plan, &http, &cfgate, &direct).await?;
                streamed(report, plan, plan.stream, variant, &http, &cfgate, &direct).await
            } else {
                streamed(
                    report,
                    plan,
                    plan.stream_paced,
                    variant,
                    &http,
                    &cfgate,
                    &direct,
                )
                .await
            }
        }
        .await;
        // However the figures went, the daemon is stopped.
        let stopped = endpoint.stop(bin).await;
        measured.and(stopped)?;
    }
    Ok(())
}

async fn warm(
    report: &mut Report,
    plan: &Plan,
    http: &reqwest::Client,
    cfgate: &Side,
    direct: &Side,
) -> Res<()> {
    let figure = "OpenAI API: warm non-streamed /v1/chat/completions";
    println!(
        "{figure}: {} pairs after {} warm-up",
        plan.warm, plan.warmup
    );
    let run = |n| {
        paired(
            n,
            |_| cfgate.chat(http, WARM_MSG),
            |_| direct.chat(http, WARM_MSG),
        )
    };
    run(plan.warmup).await?;
    let pairs = run(plan.warm).await?;
    let want = format!("echo: {WARM_MSG}");
    let (mut c, mut d, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for ((cs, ce, ctext), (ds, de, dtext)) in &pairs {
        if *ctext != want || *dtext != want {
            return Err(format!("{figure}: unexpected answer {ctext:?} / {dtext:?}"));
        }
        c.push(ms(*ce - *cs));
        d.push(ms(*de - *ds));
        added.push(ms(*ce - *cs) - ms(*de - *ds));
    }
    report.row(figure, "no delay", "cfgate", "ms", &c);
    report.row(figure, "no delay", "direct", "ms", &d);
    report.row(figure, "no delay", "added", "ms", &added);
    let m = summarize(&added).median;
    report.verdict(
        figure,
        "added ≤ 0.15 ms",
        format!("added median {m:.3} ms"),
        m <= 0.15,
    );
    Ok(())
}

async fn streamed(
    report: &mut Report,
    plan: &Plan,
    n: usize,
    variant: &str,
    http: &reqwest::Client,
    cfgate: &Side,
    direct: &Side,
) -> Res<()> {
    let figure = "OpenAI API: streamed /v1/chat/completions of 50";
    println!("{figure} [{variant}]: {n} pairs");
    let streams = |n: usize, tag: &'static str| {
        paired(
            n,
            move |i| async move {
                let msg = message(&format!("{tag}c{i}"), PIECES);
                cfgate.chat_streamed(http, &msg).await
            },
            move |i| async move {
                let msg = message(&format!("{tag}d{i}"), PIECES);
                direct.chat_streamed(http, &msg).await
            },
        )
    };
    streams(plan.warmup.min(n), "warm").await?;
    let pairs = streams(n, "x").await?;
    let first = |s: &Streamed| signed_ms(s.first, s.start);
    let end = |s: &Streamed| signed_ms(s.end, s.start);
    for (point, f, target) in [
        (
            "first data: chunk",
            &first as &dyn Fn(&Streamed) -> f64,
            Some(0.15),
        ),
        ("[DONE]", &end, None),
    ] {
        let variant = format!("{variant}, {point}");
        let c: Vec<f64> = pairs.iter().map(|(c, _)| f(c)).collect();
        let d: Vec<f64> = pairs.iter().map(|(_, d)| f(d)).collect();
        let added: Vec<f64> = pairs.iter().map(|(c, d)| f(c) - f(d)).collect();
        report.row(figure, &variant, "cfgate", "ms", &c);
        report.row(figure, &variant, "direct", "ms", &d);
        report.row(figure, &variant, "added", "ms", &added);
        if let Some(limit) = target {
            let m = summarize(&added).median;
            report.verdict(
                &format!("{figure} [{variant}]"),
                &format!("added ≤ {limit:.2} ms"),
                format!("added median {m:.3} ms"),
                m <= limit,
            );
        }
    }
    Ok(())
}
