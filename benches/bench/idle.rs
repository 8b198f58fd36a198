//! Wakeups at rest: context switches of `cfgate serve`, the `serve --shared` relay and the
//! shared daemon while nothing is asked of them, after `initialize`.
//!
//! Counted from `/proc/<pid>/task/*/status` (`voluntary_ctxt_switches` +
//! `nonvoluntary_ctxt_switches`, summed over the threads). A thread that exits in the
//! window takes its counts with it, so each one that does counts as one wakeup (it woke
//! at least to exit). All three processes are watched over the same window.

use std::collections::HashMap;
use std::time::Duration;

use crate::{Daemon, Plan, Report, Res, clean_command};

type Switches = HashMap<u32, u64>;

/// Context switches so far of each thread of `pid`.
fn switches(pid: u32) -> Res<Switches> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("/proc/{pid}/task: {e}"))?;
    let mut out = HashMap::new();
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let count: u64 = status
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                matches!(
                    key,
                    "voluntary_ctxt_switches" | "nonvoluntary_ctxt_switches"
                )
                .then(|| value.trim().parse::<u64>().ok())?
            })
            .sum();
        out.insert(tid, count);
    }
    Ok(out)
}

fn woken(before: &Switches, after: &Switches) -> u64 {
    let grown: u64 = after
        .iter()
        .map(|(tid, n)| n - before.get(tid).copied().unwrap_or(0).min(*n))
        .sum();
    let exited = before.keys().filter(|tid| !after.contains_key(tid)).count() as u64;
    grown + exited
}

pub async fn idle(report: &mut Report, plan: &Plan, bin: &std::path::Path, base: &str) -> Res<()> {
    let secs = plan.idle_secs;
    let figure = format!("context switches in {secs} s idle after initialize");
    println!("{figure}");
    let serve = Daemon::start(bin, base).await?;
    let (relay, _) = Daemon::spawn_with(bin, &[], &["serve", "--shared"])?;
    let measured = async {
        relay.initialize(base).await?;
        let pid_file = relay.home().join("run").join("daemon.pid");
        let shared: u32 = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("{}: {e}", pid_file.display()))?
            .trim()
            .parse()
            .map_err(|e| format!("{}: {e}", pid_file.display()))?;
        // Start-up work (the HTTP client built on its own thread, the first log lines)
        // is over well before this.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pids = [
            ("serve", serve.pid),
            ("serve --shared (relay)", relay.pid),
            ("shared daemon", shared),
        ];
        let before = pids
            .iter()
            .map(|(_, pid)| switches(*pid))
            .collect::<Res<Vec<_>>>()?;
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let mut counts = Vec::new();
        for ((side, pid), before) in pids.iter().zip(&before) {
            let n = woken(before, &switches(*pid)?);
            report.row(&figure, "idle", side, "count", &[n as f64]);
            counts.push((side, n));
        }
        for (side, n) in counts {
            report.verdict(&format!("{figure} [{side}]"), "0", format!("{n}"), n == 0);
        }
        Ok::<(), String>(())
    }
    .await;
    // The shared daemon outlives its relay (until idle for 10 minutes): stop it.
    let stop = clean_command(bin, relay.home())
        .env("CFGATE_RUNTIME_DIR", relay.home().join("run"))
        .arg("stop")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let stopped = tokio::time::timeout(crate::WAIT, stop).await;
    relay.stop().await?;
    serve.stop().await?;
    measured?;
    match stopped {
        Ok(Ok(status)) if status.success() => Ok(()),
        other => Err(format!("cfgate stop (shared daemon): {other:?}")),
    }
}
