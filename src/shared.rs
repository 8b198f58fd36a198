//! The shared daemon: one process per user that every `cfgate serve --shared` (and the
//! CLI) connects to over a Unix socket, so all tools share one set of credentials, one
//! upstream connection pool, one set of sessions and one usage count.
//!
//! Who owns the socket: the daemon holding an exclusive `flock` on `daemon.lock` next to
//! it, for its whole life. A client that cannot connect starts a daemon and waits for the
//! socket; when two clients race, both may start one, but only one gets the lock and the
//! other exits. The kernel drops the lock when a daemon dies however it dies, so a socket
//! file left by a killed daemon is known to be stale by whoever gets the lock next, which
//! removes it and binds afresh.
//!
//! The folder is the user's alone (0700, checked to be owned by the user), the socket is
//! 0600, and a peer with another uid (SO_PEERCRED) is refused anyway.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::service::Service;
use crate::sessions::create_private_dir;

pub mod end;
pub mod fd_stream;
pub mod hello;
pub mod relay;
mod serve_client;
mod socket_io;
mod start;

pub use start::{connect_or_start, report_start_failure};
pub(crate) use start::{log_hint, report_ready};

/// Overrides the folder of the socket, lock and token (tests, unusual setups).
pub const ENV_RUNTIME_DIR: &str = "CFGATE_RUNTIME_DIR";
/// The daemon exits after this long without clients, unless `idle_exit_secs` says otherwise.
pub const DEFAULT_IDLE_EXIT: Duration = Duration::from_secs(600);
/// A daemon whose config file cannot be used exits this soon after its last client (long
/// enough for the client that started it to connect).
pub const CONFIG_ERROR_IDLE_EXIT: Duration = Duration::from_secs(2);
/// How long a client waits for a daemon it started to answer.
const START_WAIT: Duration = Duration::from_secs(20);
/// How long a new daemon waits for an exiting one to let go of the lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);
/// How long a stopped daemon waits for its connections to answer and end.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where the shared daemon's files are.
#[derive(Clone, Debug)]
pub struct Paths {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub lock: PathBuf,
    pub pid: PathBuf,
}

impl Paths {
    /// `$CFGATE_RUNTIME_DIR`, else the platform runtime dir, else the cache dir.
    pub fn from_env() -> Result<Paths, String> {
        let dir = std::env::var_os(ENV_RUNTIME_DIR)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                let dirs = crate::config::project_dirs()?;
                Some(
                    dirs.runtime_dir()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| dirs.cache_dir().join("run")),
                )
            })
            .ok_or_else(|| {
                format!("no runtime folder for the shared daemon (set {ENV_RUNTIME_DIR} or HOME)")
            })?;
        Ok(Paths::in_dir(dir))
    }

    pub fn in_dir(dir: PathBuf) -> Paths {
        Paths {
            socket: dir.join("cfgate.sock"),
            lock: dir.join("daemon.lock"),
            pid: dir.join("daemon.pid"),
            dir,
        }
    }

    /// Creates the folder 0700, or checks that an existing one is the user's alone.
    pub fn prepare(&self) -> Result<(), String> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        create_private_dir(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let meta = std::fs::metadata(&self.dir)
            .map_err(|e| format!("cannot read {}: {e}", self.dir.display()))?;
        if meta.uid() != my_uid() {
            return Err(format!(
                "{} belongs to another user; refusing to use it",
                self.dir.display()
            ));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot make {} private: {e}", self.dir.display()))?;
        }
        Ok(())
    }

    /// The pid of the daemon holding the lock, if one is alive.
    pub fn running_daemon(&self) -> Option<u32> {
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.lock)
            .ok()?;
        match FileExt::try_lock_exclusive(&lock) {
            Ok(true) => {
                let _ = FileExt::unlock(&lock);
                None
            }
            _ => std::fs::read_to_string(&self.pid).ok()?.trim().parse().ok(),
        }
    }
}

fn my_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The lock that makes this process the one shared daemon: `None` when another daemon
/// is serving. Waits a moment for a daemon that is exiting to let go.
pub fn take_daemon_lock(paths: &Paths) -> Result<Option<File>, String> {
    paths.prepare()?;
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&paths.lock)
        .map_err(|e| format!("cannot open {}: {e}", paths.lock.display()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match FileExt::try_lock_exclusive(&lock) {
            Ok(true) => {
                // At once, so `cfgate stop` never reads a dead daemon's pid while this one
                // holds the lock.
                let _ = std::fs::write(&paths.pid, format!("{}\n", std::process::id()));
                return Ok(Some(lock));
            }
            Ok(false) => {}
            Err(e) => return Err(format!("cannot lock {}: {e}", paths.lock.display())),
        }
        if std::os::unix::net::UnixStream::connect(&paths.socket).is_ok() {
            return Ok(None);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} is locked by a daemon that does not answer",
                paths.lock.display()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Detaches from the starting client's session, so its terminal or process group
/// ending does not end the daemon.
pub fn detach() {
    let _ = rustix::process::setsid();
}

/// Why the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Idle,
    Signal,
}

/// How the daemon serves.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub idle_exit: Duration,
    pub max_frame: usize,
    /// Also serve the loopback HTTP/WebSocket endpoint here.
    pub listen: Option<std::net::SocketAddr>,
    /// Browser origins the endpoint accepts.
    pub origins: Vec<String>,
}

/// Serves every client that connects, until idle or signalled; the lock must be held.
/// However it ends, it leaves no `daemon.pid` behind.
pub async fn run_daemon(
    service: Arc<Service>,
    paths: &Paths,
    options: DaemonOptions,
) -> Result<Stop, String> {
    let result = serve_as_daemon(service, paths, options).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&paths.pid);
    }
    result
}

async fn serve_as_daemon(
    service: Arc<Service>,
    paths: &Paths,
    options: DaemonOptions,
) -> Result<Stop, String> {
    let DaemonOptions {
        idle_exit,
        max_frame,
        listen,
        origins,
    } = options;
    use std::os::unix::fs::PermissionsExt;
    // The endpoint first: if its port is taken the daemon fails before any client can
    // connect, rather than leaving a socket behind.
    let addr_file = paths.dir.join(crate::endpoint::ADDR_FILE);
    let token_file = paths.dir.join(crate::endpoint::TOKEN_FILE);
    let endpoint = match listen {
        Some(addr) => {
            let token = crate::endpoint::endpoint_key(&paths.dir)?;
            match crate::endpoint::start(service.clone(), addr, token, origins).await {
                Ok((bound, handle)) => {
                    let _ = std::fs::write(&addr_file, format!("{bound}\n"));
                    info!(%bound, "loopback endpoint listening");
                    Some((bound, handle))
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&token_file);
                    return Err(e);
                }
            }
        }
        None => None,
    };
    match std::fs::remove_file(&paths.socket) {
        Ok(()) => info!("removed a stale socket {}", paths.socket.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot remove stale {}: {e}",
                paths.socket.display()
            ));
        }
    }
    let listener = UnixListener::bind(&paths.socket)
        .map_err(|e| format!("cannot listen on {}: {e}", paths.socket.display()))?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot make {} private: {e}", paths.socket.display()))?;
    info!(socket = %paths.socket.display(), idle_exit_secs = idle_exit.as_secs(), "shared daemon listening");
    report_ready();

    let (clients_tx, clients_rx) = watch::channel(0usize);
    let clients_tx = Arc::new(clients_tx);
    let mut clients_left = clients_rx.clone();
    // A daemon asked to serve the endpoint stays for its callers, which hold no connection
    // to count; `cfgate stop` ends it.
    let serves_endpoint = endpoint.is_some();
    let facts = Arc::new(crate::protocol::DaemonFacts {
        pid: std::process::id(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        listen: endpoint.as_ref().map(|(bound, _)| bound.to_string()),
        warnings: Vec::new(),
    });
    let stop = tokio::select! {
        _ = accept_loop(listener, service.clone(), facts, clients_tx, max_frame) => Stop::Signal,
        _ = idle(clients_rx, idle_exit), if !serves_endpoint => Stop::Idle,
        _ = crate::shutdown::requested() => Stop::Signal,
    };
    info!(?stop, "shared daemon stopping");
    if stop == Stop::Signal {
        // Every request in flight is answered `daemon_stopped` and every connection told
        // why it ends, before the process goes.
        service.stop();
        let left = tokio::time::timeout(STOP_GRACE, clients_left.wait_for(|n| *n == 0)).await;
        if left.is_err() {
            warn!("stopping with clients whose connection did not end in time");
        }
    }
    let _ = std::fs::remove_file(&paths.socket);
    let _ = std::fs::remove_file(&paths.pid);
    if let Some((_, handle)) = endpoint {
        let _ = handle.stop();
        let _ = std::fs::remove_file(&addr_file);
        let _ = std::fs::remove_file(&token_file);
    }
    Ok(stop)
}

async fn accept_loop(
    listener: UnixListener,
    service: Arc<Service>,
    facts: Arc<crate::protocol::DaemonFacts>,
    clients: Arc<watch::Sender<usize>>,
    max_frame: usize,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == my_uid() => {}
            Ok(cred) => {
                warn!(uid = cred.uid(), "refused a connection from another user");
                continue;
            }
            Err(e) => {
                warn!("refused a connection whose user is unknown: {e}");
                continue;
            }
        }
        clients.send_modify(|n| *n += 1);
        let service = service.clone();
        let facts = facts.clone();
        let clients = clients.clone();
        tokio::spawn(async move {
            serve_client::serve_client(stream, service, facts, max_frame).await;
            clients.send_modify(|n| *n = n.saturating_sub(1));
        });
    }
}

/// Returns once there has been no client for `after`.
async fn idle(mut clients: watch::Receiver<usize>, after: Duration) {
    loop {
        if clients.wait_for(|n| *n == 0).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(after) => return,
            changed = clients.wait_for(|n| *n > 0) => if changed.is_err() { return },
        }
    }
}

/// `cfgate stop`: SIGTERM to the daemon, then waits for its socket to go.
pub async fn stop(paths: &Paths) -> Result<bool, String> {
    let Some(pid) = paths.running_daemon() else {
        return Ok(false);
    };
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or("bad pid file")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .map_err(|e| format!("cannot signal the daemon: {e}"))?;
    let deadline = Instant::now() + START_WAIT;
    while paths.running_daemon().is_some() {
        if Instant::now() > deadline {
            return Err("the daemon did not stop".into());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(true)
}
