//! Instructions per request inside the daemon, counted by valgrind's callgrind: the same
//! number on a busy machine as on a quiet one, so it serves as a regression figure (CI's
//! smoke run prints it).
//!
//! Counted as a difference of whole runs, so that start-up and exit cancel out: three
//! daemons run under callgrind, each initialized and warmed with the same requests; one
//! then answers nothing more, one `n` `cfgate/status`, one `n` warm non-streamed chats.
//! (instructions of a run with `n` more requests − instructions of the base run) / `n`
//! is what one request costs, from its frame being read to its answer being written,
//! on every thread of the process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::{Daemon, Plan, Report, Res, WARM_MSG};

/// Requests of each kind before the counted ones (pools, buffers and caches warmed).
const WARMUP: usize = 5;

#[derive(Clone, Copy)]
enum Extra {
    Nothing,
    Status,
    Chat,
}

impl Extra {
    fn name(self) -> &'static str {
        match self {
            Extra::Nothing => "base",
            Extra::Status => "status",
            Extra::Chat => "chat",
        }
    }
}

fn valgrind() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("valgrind"))
        .find(|p| p.is_file())
}

/// One daemon under callgrind; returns the instructions it executed in all.
async fn run(valgrind: &Path, bin: &Path, base: &str, extra: Extra, n: usize) -> Res<u64> {
    let out = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    // CFGATE_CALLGRIND_DIR keeps the profiles, for callgrind_annotate.
    let file = match std::env::var_os("CFGATE_CALLGRIND_DIR") {
        Some(dir) => PathBuf::from(dir).join(format!("callgrind.{}.out", extra.name())),
        None => out.path().join("callgrind.out"),
    };
    let wrapper = [
        valgrind.display().to_string(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", file.display()),
    ];
    let (daemon, _) = Daemon::spawn_with(bin, &wrapper, &["serve"])?;
    daemon.initialize(base).await?;
    for _ in 0..WARMUP {
        status(&daemon).await?;
        chat(&daemon).await?;
    }
    for _ in 0..n {
        match extra {
            Extra::Nothing => break,
            Extra::Status => status(&daemon).await?,
            Extra::Chat => chat(&daemon).await?,
        }
    }
    // Under valgrind the exit (and the profile's dump) takes a while.
    daemon.stop_within(Duration::from_secs(120)).await?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no totals in {}", file.display()))
}

async fn status(daemon: &Daemon) -> Res<()> {
    let (_, reply) = daemon.request("cfgate/status", json!({})).await?;
    match reply["result"]["version"].as_str() {
        Some(_) => Ok(()),
        None => Err(format!("cfgate/status failed: {reply}")),
    }
}

async fn chat(daemon: &Daemon) -> Res<()> {
    let (_, _, content) = daemon.chat(WARM_MSG).await?;
    match content == format!("echo: {WARM_MSG}") {
        true => Ok(()),
        false => Err(format!("unexpected answer {content:?}")),
    }
}

pub async fn instructions(report: &mut Report, plan: &Plan, bin: &Path, base: &str) -> Res<()> {
    let figure = "instructions per request inside the daemon (callgrind)";
    let Some(valgrind) = valgrind() else {
        println!("{figure}: valgrind is not installed; skipped (.ci/install-tools installs it)");
        return Ok(());
    };
    let n = plan.callgrind;
    println!("{figure}: {n} requests of each kind, three daemons under callgrind");
    // Instruction counts do not depend on what else runs: the three run at once.
    let (nothing, status, chat) = tokio::try_join!(
        run(&valgrind, bin, base, Extra::Nothing, n),
        run(&valgrind, bin, base, Extra::Status, n),
        run(&valgrind, bin, base, Extra::Chat, n),
    )?;
    let per = |total: u64| (total as f64 - nothing as f64) / n as f64;
    report.row(
        figure,
        "cfgate/status",
        "cfgate",
        "instructions",
        &[per(status)],
    );
    report.row(
        figure,
        "warm non-streamed chat",
        "cfgate",
        "instructions",
        &[per(chat)],
    );
    println!(
        "  (base run: {nothing} instructions: start-up, initialize, {WARMUP} warm-up requests of each kind, exit)"
    );
    Ok(())
}
