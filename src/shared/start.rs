//! Starting the shared daemon from a client: connect, or start one (detached) and wait
//! until it says it listens, on a pipe the client holds, rather than polling for the
//! socket; a daemon that cannot start says why on the same pipe.

use std::time::Instant;

use tokio::net::UnixStream;

use super::*;

/// Connects to the shared daemon, starting it when none answers.
/// `daemon_args` are added to `cfgate daemon` when one is started (e.g. `--listen`).
pub async fn connect_or_start(paths: &Paths, daemon_args: &[String]) -> Result<UnixStream, String> {
    paths.prepare()?;
    if let Ok(stream) = UnixStream::connect(&paths.socket).await {
        tracing::debug!(
            "joined the running shared daemon at {}",
            paths.socket.display()
        );
        return Ok(stream);
    }
    let deadline = Instant::now() + START_WAIT;
    let mut started = 0;
    let mut daemon: Option<tokio::process::Child> = None;
    // What the daemon started wrote on its stdout: `ready` once it listens, else why not.
    let mut said = String::new();
    loop {
        if let Ok(stream) = UnixStream::connect(&paths.socket).await {
            return Ok(stream);
        }
        // Start one when none was started yet, or the one started has gone (it lost a
        // race to a daemon that has since gone too, or it failed).
        let exited = match daemon.as_mut() {
            None => None,
            Some(child) => child.try_wait().ok().flatten(),
        };
        if let (Some(status), Some(child)) = (exited, daemon.as_mut()) {
            // One that lost the race exits 0; one that failed says why, and would fail the
            // same way again (a port in use, a folder it cannot write).
            if !status.success() {
                let reason = start_failure(child, &said).await;
                return Err(format!(
                    "the shared daemon did not start: {reason} (the log in {} has more)",
                    log_hint()
                ));
            }
        }
        if daemon.is_none() || exited.is_some() {
            if started == 3 {
                return Err(format!(
                    "the shared daemon did not start (see the log in {})",
                    log_hint()
                ));
            }
            daemon = Some(spawn_daemon(daemon_args)?);
            said.clear();
            started += 1;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the shared daemon did not answer on {} within {}s",
                paths.socket.display(),
                START_WAIT.as_secs()
            ));
        }
        // Until the daemon says it listens (or ends): connecting at once then, not at the
        // next poll, is most of a first start's time.
        match daemon.as_mut().and_then(|child| child.stdout.as_mut()) {
            Some(stdout) => {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 512];
                match tokio::time::timeout(POLL, stdout.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {
                        if said.len() < 4096 {
                            said.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                    }
                    // Its stdout is closed: it has ended, or is about to.
                    Ok(_) => tokio::time::sleep(POLL).await,
                    Err(_elapsed) => {}
                }
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

pub(crate) fn log_hint() -> String {
    crate::logging::log_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "the state folder".into())
}

/// What a daemon that failed to start wrote on its stdout: why (see [`report_start_failure`]).
async fn start_failure(child: &mut tokio::process::Child, said: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut reason = said.replace(READY, "");
    if let Some(stdout) = child.stdout.as_mut() {
        // It has exited, so this ends at once; bounded all the same.
        let mut limited = stdout.take(4096);
        let _ =
            tokio::time::timeout(Duration::from_secs(2), limited.read_to_string(&mut reason)).await;
    }
    match reason.trim() {
        "" => "it gave no reason".to_string(),
        reason => reason.to_string(),
    }
}

/// What a daemon writes on its stdout once it listens.
const READY: &str = "ready\n";

/// A daemon that listens says so on its stdout, so the client that started it connects at
/// once.
pub(crate) fn report_ready() {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(READY.as_bytes());
    let _ = stdout.flush();
}

/// A daemon that cannot start says why on its stdout, which only the client that started it
/// reads (its log lines go to stderr and the log file, never to stdout).
pub fn report_start_failure(reason: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{reason}");
    let _ = stdout.flush();
}

/// Starts `cfgate daemon` in the background; it detaches itself (setsid) and logs to its
/// file. Dropping the child handle leaves it running; tokio reaps it if it exits early.
/// Its stdout is a pipe to this client, for the reason if it fails to start.
fn spawn_daemon(args: &[String]) -> Result<tokio::process::Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find cfgate itself: {e}"))?;
    tokio::process::Command::new(exe)
        .arg("daemon")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the shared daemon: {e}"))
}
