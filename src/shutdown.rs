//! The signals that ask cfgate to stop: SIGTERM (what `kill`, `cfgate stop` and service
//! managers send) and SIGINT (Ctrl-C). Both end a daemon the same way, so every daemon
//! waits on this one future.

/// Resolves when SIGTERM or SIGINT arrives (only Ctrl-C where there is no SIGTERM).
pub async fn requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
