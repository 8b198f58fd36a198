//! Keeps the token out of places cfgate does not write itself: a core dump of the daemon
//! would hold it in clear (it is in memory for every request), so none is ever written.
//! Only the core-size limit is lowered, not `PR_SET_DUMPABLE`, which would also hide
//! `/proc/<pid>` from the user's own tools (and the leak tests that read it).

/// Sets the core file size limit (soft and hard) to zero for this process.
pub fn forbid_core_dumps() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        if let Err(e) = setrlimit(Resource::Core, none) {
            tracing::warn!("cannot turn off core dumps: {e}");
        }
    }
}

/// Makes every file and folder this process creates its user's alone (umask 077): the log
/// files hold prompts, answers and settings, and the log appender (which creates a new file
/// each day) has no way to ask for a mode itself.
pub fn private_files() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}
