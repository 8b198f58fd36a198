//! The shared path beside the private one: `serve --shared` (a relay in front of the one
//! per-user daemon) against a private `cfgate serve`, by the same method as the rest (pairs
//! in alternating order, every answer checked): a warm request and a stream's first piece
//! through each (added: the shared one's extra), a relay's start to its `initialize` answer
//! with the daemon up against a private daemon's cold start, a first start that spawns the
//! daemon, and memory with 5 editors and 2 scripts on one daemon.

use super::*;

/// One user's shared daemon: its runtime and data folders.
struct SharedWorld {
    run: tempfile::TempDir,
    data: tempfile::TempDir,
    config: PathBuf,
}

impl SharedWorld {
    fn new() -> Res<SharedWorld> {
        let tmp = |what: &str| tempfile::tempdir().map_err(|e| format!("{what}: {e}"));
        let data = tmp("data dir")?;
        let config = data.path().join("cfgate.toml");
        std::fs::write(&config, "max_in_flight = 4096\n").map_err(|e| format!("config: {e}"))?;
        Ok(SharedWorld {
            run: tmp("runtime dir")?,
            data,
            config,
        })
    }

    fn command(&self, bin: &Path, home: &Path) -> Command {
        let mut cmd = clean_command(bin, home);
        cmd.env("CFGATE_RUNTIME_DIR", self.run.path().join("run"))
            .env("CFGATE_DATA_DIR", self.data.path())
            .env("CFGATE_CONFIG", &self.config);
        cmd
    }

    /// Starts a relay (`serve --shared`); `spawned` is taken just before.
    fn relay(&self, bin: &Path) -> Res<(Daemon, Instant)> {
        let home = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let mut cmd = self.command(bin, home.path());
        cmd.args(["serve", "--shared"]);
        Daemon::spawn_command(cmd, bin, home)
    }

    fn daemon_pid(&self) -> Res<u32> {
        let path = self.run.path().join("run").join("daemon.pid");
        std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .trim()
            .parse()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `cfgate stop`, waited for.
    async fn stop_daemon(&self, bin: &Path) -> Res<()> {
        let home = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let mut cmd = self.command(bin, home.path());
        cmd.arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("cfgate stop: {e}"))?;
        let status = tokio::time::timeout(WAIT, child.wait())
            .await
            .map_err(|_| "cfgate stop hangs".to_string())?
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("cfgate stop: {status}"));
        }
        Ok(())
    }
}

pub(super) async fn shared(report: &mut Report, plan: &Plan, bin: &Path, base: &str) -> Res<()> {
    let world = SharedWorld::new()?;
    let measured = figures(report, plan, bin, base, &world).await;
    // However the figures went, no daemon is left behind.
    let stopped = world.stop_daemon(bin).await;
    measured.and(stopped)
}

async fn figures(
    report: &mut Report,
    plan: &Plan,
    bin: &Path,
    base: &str,
    world: &SharedWorld,
) -> Res<()> {
    let private = Daemon::start(bin, base).await?;
    let (relay, _) = world.relay(bin)?;
    relay.initialize(base).await?;

    let figure = "warm non-streamed request, shared vs private";
    println!(
        "{figure}: {} pairs after {} warm-up",
        plan.warm, plan.warmup
    );
    let run = |n| paired(n, |_| relay.chat(WARM_MSG), |_| private.chat(WARM_MSG));
    run(plan.warmup).await?;
    let pairs = run(plan.warm).await?;
    let want = format!("echo: {WARM_MSG}");
    let (mut s, mut p, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for ((ss, se, stext), (ps, pe, ptext)) in &pairs {
        if *stext != want || *ptext != want {
            return Err(format!("{figure}: unexpected answer {stext:?} / {ptext:?}"));
        }
        s.push(ms(*se - *ss));
        p.push(ms(*pe - *ps));
        added.push(ms(*se - *ss) - ms(*pe - *ps));
    }
    report.row(figure, "no delay", "serve --shared", "ms", &s);
    report.row(figure, "no delay", "serve", "ms", &p);
    report.row(figure, "no delay", "added", "ms", &added);
    let m = summarize(&added).median;
    report.verdict(
        figure,
        "added ≤ 0.02 ms",
        format!("added median {m:.3} ms"),
        m <= 0.02,
    );

    let figure = "stream of 50: first piece, shared vs private";
    println!("{figure}: {} pairs", plan.stream);
    let streams = |n: usize, tag: &'static str| {
        let (relay, private) = (&relay, &private);
        paired(
            n,
            move |i| async move {
                let msg = message(&format!("{tag}s{i}"), PIECES);
                let s = relay.chat_streamed(&msg).await?;
                s.check(&msg, "serve --shared")?;
                Ok(s)
            },
            move |i| async move {
                let msg = message(&format!("{tag}p{i}"), PIECES);
                let s = private.chat_streamed(&msg).await?;
                s.check(&msg, "serve")?;
                Ok(s)
            },
        )
    };
    streams(plan.warmup.min(plan.stream), "warm").await?;
    let pairs = streams(plan.stream, "x").await?;
    let first = |s: &Streamed| signed_ms(s.first, s.start);
    let s: Vec<f64> = pairs.iter().map(|(s, _)| first(s)).collect();
    let p: Vec<f64> = pairs.iter().map(|(_, p)| first(p)).collect();
    let added: Vec<f64> = pairs.iter().map(|(s, p)| first(s) - first(p)).collect();
    report.row(figure, "no delay", "serve --shared", "ms", &s);
    report.row(figure, "no delay", "serve", "ms", &p);
    report.row(figure, "no delay", "added", "ms", &added);
    let m = summarize(&added).median;
    report.verdict(
        figure,
        "added ≤ 0.02 ms",
        format!("added median {m:.3} ms"),
        m <= 0.02,
    );
    relay.stop().await?;
    private.stop().await?;

    // A relay joining the running daemon, against a private daemon's whole cold start.
    let figure = "start to initialize answer, shared vs private";
    println!("{figure}: {} pairs", plan.cold);
    let (mut joined, mut cold, mut relay_rss) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..plan.cold {
        let join = async {
            let (relay, spawned) = world.relay(bin)?;
            let answered = relay.initialize(base).await?;
            let rss = relay.status_kib("VmRSS")? / 1024.0;
            relay.stop().await?;
            Ok::<(f64, f64), String>((signed_ms(answered, spawned), rss))
        };
        let private_start = async {
            let (daemon, spawned) = Daemon::spawn(bin)?;
            let answered = daemon.initialize(base).await?;
            daemon.stop().await?;
            Ok::<f64, String>(signed_ms(answered, spawned))
        };
        let ((j, rss), c) = if i % 2 == 0 {
            let j = join.await?;
            (j, private_start.await?)
        } else {
            let c = private_start.await?;
            (join.await?, c)
        };
        joined.push(j);
        relay_rss.push(rss);
        cold.push(c);
    }
    report.row(figure, "daemon up", "serve --shared", "ms", &joined);
    report.row(figure, "cold process", "serve", "ms", &cold);
    let (j, c) = (summarize(&joined).median, summarize(&cold).median);
    report.verdict(
        figure,
        "relay ≤ private cold start",
        format!("median {j:.2} ms vs {c:.2} ms"),
        j <= c,
    );

    let figure = "first start, spawning the shared daemon, to initialize answer";
    println!("{figure}: {} runs", plan.cold);
    let mut first_start = Vec::new();
    for _ in 0..plan.cold {
        world.stop_daemon(bin).await?;
        let (relay, spawned) = world.relay(bin)?;
        let answered = relay.initialize(base).await?;
        first_start.push(signed_ms(answered, spawned));
        relay.stop().await?;
    }
    report.row(figure, "no daemon", "serve --shared", "ms", &first_start);
    let m = summarize(&first_start).median;
    report.verdict(figure, "≤ 15 ms", format!("median {m:.2} ms"), m <= 15.0);

    // 5 editors and 2 scripts on one daemon, each having asked once.
    let figure = "RSS, 5 editors + 2 scripts on one daemon (VmRSS)";
    println!("{figure}");
    let mut relays = Vec::new();
    for i in 0..7 {
        let (relay, _) = world.relay(bin)?;
        relay.initialize(base).await?;
        let (_, _, text) = relay.chat(&format!("client {i}")).await?;
        if text != format!("echo: client {i}") {
            return Err(format!("{figure}: unexpected answer {text:?}"));
        }
        relays.push(relay);
    }
    let daemon_rss = proc_status_kib(world.daemon_pid()?, "VmRSS")? / 1024.0;
    let (mut rss, mut private) = (Vec::new(), Vec::new());
    for relay in &relays {
        rss.push(relay.status_kib("VmRSS")? / 1024.0);
        private.push(private_kib(relay.pid)? / 1024.0);
    }
    for relay in relays {
        relay.stop().await?;
    }
    report.row(figure, "7 clients", "daemon", "MiB", &[daemon_rss]);
    report.row(figure, "7 clients", "each relay", "MiB", &rss);
    report.row(
        figure,
        "7 clients",
        "each relay, its own pages (Private_*)",
        "MiB",
        &private,
    );
    relay_rss.extend(rss);
    let worst = relay_rss.iter().copied().fold(0.0, f64::max);
    let worst_private = private.iter().copied().fold(0.0, f64::max);
    report.verdict(
        figure,
        "daemon ≤ 15 MiB, relay ≤ 2 MiB",
        format!(
            "daemon {daemon_rss:.1} MiB; largest relay {worst:.1} MiB RSS, {worst_private:.1} MiB its own"
        ),
        daemon_rss <= 15.0 && worst <= 2.0,
    );
    Ok(())
}

/// The pages only this process holds (`Private_Clean` + `Private_Dirty`): what one more
/// relay costs, the binary's pages being shared with the daemon and every other relay.
fn private_kib(pid: u32) -> Res<f64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("/proc/{pid}/smaps_rollup: {e}"))?;
    Ok(rollup
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum())
}
