//! Knowing when the process that started us is gone, without waking up to ask.
//!
//! A daemon must not outlive the editor that started it, even when the editor dies without
//! our stdin closing (a grandchild may still hold the pipe open). PR_SET_PDEATHSIG is not
//! used: it fires when the spawning *thread* ends, which is not the client going.
//!
//! On Linux (5.3 and later) a pidfd of the parent becomes readable when the parent exits;
//! registered with the runtime's reactor it costs nothing until then: an idle daemon
//! sleeps. Everywhere else (macOS and the BSDs, and a Linux whose kernel or seccomp
//! sandbox refuses `pidfd_open`) the parent id is polled every [`POLL`]: when the parent
//! goes, the process is re-parented and the id changes.

use std::time::Duration;

/// How often the parent id is polled where no pidfd can be had.
pub const POLL: Duration = Duration::from_millis(500);

/// Resolves when the parent process is gone (never, where there is no parent id).
pub async fn gone() {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        #[cfg(target_os = "linux")]
        match pidfd::watch(parent) {
            Ok(exited) => {
                exited.await;
                tracing::info!("parent process {parent} is gone; exiting");
                return;
            }
            Err(e) => tracing::debug!("no pidfd for the parent ({e}); polling its id instead"),
        }
        poll(parent).await;
        tracing::info!("parent process {parent} is gone; exiting");
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await
}

/// Returns once the parent id is no longer `parent`.
#[cfg(unix)]
async fn poll(parent: u32) {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

#[cfg(target_os = "linux")]
mod pidfd {
    use std::future::Future;
    use std::io;

    use rustix::process::{Pid, PidfdFlags, pidfd_open};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    /// A future that resolves when `parent` exits, or an error when no pidfd can be had
    /// (the caller then polls).
    pub fn watch(parent: u32) -> io::Result<impl Future<Output = ()>> {
        let pid = i32::try_from(parent)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::other("no parent id"))?;
        let fd = pidfd_open(pid, PidfdFlags::NONBLOCK)?;
        // The parent may have died before the pidfd was opened, and its pid may even have
        // been reused since. While it lives (or is an unreaped zombie) its pid is not
        // reused, and when it dies we are re-parented: so if our parent id is still
        // `parent` now, the pidfd is of our parent; if not, it is already gone.
        let already_gone = std::os::unix::process::parent_id() != parent;
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which owns it from here on: it
        // stays open, and the same descriptor, until the `AsyncFd` is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(async move {
            if already_gone {
                return;
            }
            // A pidfd becomes readable when its process exits, and stays so.
            let _ = fd.readable().await;
        })
    }
}
