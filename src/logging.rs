//! Logs to stderr and to a file, never to stdout (stdout carries only protocol frames).
//!
//! The file lives in the platform state dir (cache dir where there is none), because an
//! editor usually hides a child's stderr; the level comes from `CFGATE_LOG` in
//! tracing's EnvFilter syntax. Writing the file goes through a background thread so that
//! no log line blocks the runtime.
//!
//! Stderr gets only warnings and errors unless `CFGATE_LOG` is set: editors show a
//! language server's stderr as errors (Neovim's LSP log marks every line `[ERROR]`), so
//! routine lines there would look like faults. The file gets the full default level.
//! The one-shot commands (`chat`, `models`, `status`) put nothing on stderr unless
//! `CFGATE_LOG` is set: a person reads that stderr, and it carries their own plain error
//! and hint; retries and the detail behind an error are in the file.
//!
//! No level writes a secret: the libraries that trace whole frames are kept out of every
//! sink at `trace`, and the log files and their folder are the user's alone (0600, 0700).

use std::path::PathBuf;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub const ENV_LOG: &str = "CFGATE_LOG";

/// Where the log file goes.
pub fn log_dir() -> Option<PathBuf> {
    let dirs = crate::config::project_dirs()?;
    Some(
        dirs.state_dir()
            .map(|d| d.to_path_buf())
            .unwrap_or_else(|| dirs.cache_dir().to_path_buf()),
    )
}

/// What stderr gets when `CFGATE_LOG` is not set (when it is, stderr gets that level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stderr {
    /// Warnings and errors: a daemon's stderr, which editors keep as its log.
    Warnings,
    /// Nothing: a command that prints its own errors for a person.
    Quiet,
}

/// Sets up logging; keep the guard alive until exit so the file gets every line.
pub fn init(default_level: &str, stderr: Stderr) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new(default_level));
    // jsonrpsee traces whole HTTP requests, headers and all: the endpoint's bearer token
    // must not reach the log even at `trace`.
    let filter = match "jsonrpsee-server=debug".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    crate::hardening::private_files();
    let file = log_dir().and_then(|dir| {
        make_private_dir(&dir).ok()?;
        let appender = tracing_appender::rolling::Builder::new()
            .filename_prefix("cfgate")
            .filename_suffix("log")
            .max_log_files(5)
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .build(&dir)
            .ok()?;
        // The default channel preallocates 128,000 lines (about 4 MiB); cfgate writes a few
        // lines per connection, and beyond the limit lines are dropped, never waited for.
        Some(
            tracing_appender::non_blocking::NonBlockingBuilder::default()
                .buffered_lines_limit(1024)
                .finish(appender),
        )
    });
    let stderr_level = match (std::env::var_os(ENV_LOG).is_some(), stderr) {
        (true, _) => Some(tracing::Level::TRACE),
        (false, Stderr::Warnings) => Some(tracing::Level::WARN),
        (false, Stderr::Quiet) => None,
    };
    let stderr = std::io::stderr
        .with_max_level(stderr_level.unwrap_or(tracing::Level::ERROR))
        .with_filter(move |_| stderr_level.is_some());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A filter of its own, after the EnvFilter: a more specific directive in CFGATE_LOG
    // (`tower_lsp_server::codec=trace`) cannot bring frame tracing back.
    let no_frames = tracing_subscriber::filter::filter_fn(|meta| !traces_frames(meta));
    match file {
        Some((writer, guard)) => {
            let _ = builder
                .with_ansi(false)
                .with_writer(stderr.and(writer))
                .finish()
                .with(no_frames)
                .try_init();
            Some(guard)
        }
        None => {
            let _ = builder
                .with_writer(stderr)
                .finish()
                .with(no_frames)
                .try_init();
            None
        }
    }
}

/// Trace lines of the libraries that log whole messages: tower-lsp-server logs every frame
/// in and out (`<- {...}`, settings and token included), jsonrpsee whole HTTP requests.
fn traces_frames(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() == tracing::Level::TRACE
        && ["tower_lsp_server", "jsonrpsee"]
            .iter()
            .any(|t| meta.target().starts_with(t))
}

/// The log folder, 0700, and any log file already in it, 0600 (older versions made them
/// readable by all); new files are private through the umask.
fn make_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("cfgate") && name.ends_with(".log") {
                let _ =
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    Ok(())
}
