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

use std::path::PathBuf;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

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
    let file = log_dir().and_then(|dir| {
        std::fs::create_dir_all(&dir).ok()?;
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
    match file {
        Some((writer, guard)) => {
            let _ = builder
                .with_ansi(false)
                .with_writer(stderr.and(writer))
                .try_init();
            Some(guard)
        }
        None => {
            let _ = builder.with_writer(stderr).try_init();
            None
        }
    }
}
