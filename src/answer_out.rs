//! The one printer of an answer on the command line, for `cfgate chat` with or without a
//! session: stdout carries the answer and nothing else, stderr one plain error and its
//! hint. A reader that goes away (`cfgate chat hi | head -c 5`) is told apart from other
//! write failures, so the command can end at once and drop the upstream request.

use std::io::Write;
#[cfg(unix)]
use std::os::fd::AsFd;

use serde_json::{Value, json};

/// The hint of an answer that is not the JSON asked for, once its text is on stdout.
pub const NOT_JSON_HINT: &str = "the model did not keep to the JSON format (Workers AI does not \
     enforce it, and not every model supports it); its text is on stdout; try again, or another \
     model";

/// Prints a whole text (a table, a status) on stdout. A reader that went away
/// (`cfgate models | head -1`) is not an error; `println!` would panic there.
pub fn print_text(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("cfgate: cannot write to stdout: {e}");
        }
    }
}

/// Why writing the answer stopped.
pub enum OutError {
    /// Stdout's reader is gone (a closed pipe).
    ReaderGone,
    /// Stdout failed otherwise (a full disk).
    Failed(std::io::Error),
}

/// Stdout, written piece by piece; locked only for each write, never across an await.
#[derive(Default)]
pub struct AnswerOut {
    printed: bool,
    /// The last text written did not end its line.
    mid_line: bool,
}

impl AnswerOut {
    /// Writes a piece of the answer as it arrives.
    pub fn write(&mut self, text: &str) -> Result<(), OutError> {
        if text.is_empty() {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        let written = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush());
        match written {
            Ok(()) => {
                self.printed = true;
                self.mid_line = !text.ends_with('\n');
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OutError::ReaderGone),
            Err(e) => Err(OutError::Failed(e)),
        }
    }

    /// Ends a successful answer: its content when nothing streamed, its tool calls, a
    /// final line break.
    pub fn finish(&mut self, content: &str, tool_calls: Option<&Value>) -> Result<(), OutError> {
        if !self.printed {
            self.write(content)?;
        }
        if let Some(calls) = tool_calls.filter(|c| !c.is_null()) {
            self.write(&format!("\n{}", json!({ "tool_calls": calls })))?;
        }
        self.write("\n")
    }

    /// Reports a failed answer: JSON that does not parse is still the answer, so its text
    /// goes to stdout; the error and its hint go to stderr, after the partial line if any.
    pub fn fail(&mut self, message: &str, hint: Option<&str>, raw_content: Option<&str>) {
        let mut hint = hint.map(str::to_string);
        if let Some(raw) = raw_content {
            if let Err(OutError::Failed(e)) = self.write(&format!("{raw}\n")) {
                tracing::warn!("the raw answer could not be written: {e}");
            }
            hint = Some(NOT_JSON_HINT.into());
        }
        let newline = if self.mid_line { "\n" } else { "" };
        eprintln!("{newline}cfgate: error: {message}");
        if let Some(hint) = hint {
            eprintln!("hint: {hint}");
        }
    }
}

/// Returns once stdout's reader has gone (a pipe whose read end closed, a terminal hung
/// up), without writing to it: a model that thinks for a minute before its first word must
/// not keep a dead pipeline waiting. Never returns for a file (a write error says it there).
#[cfg(unix)]
pub async fn stdout_closed() {
    use rustix::event::{PollFd, PollFlags, poll};
    let Ok(stdout) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return std::future::pending().await;
    };
    // poll(2) on a blocking thread: a tokio pipe would make stdout non-blocking, which the
    // plain writes above do not expect. Asking for no event still reports ERR and HUP.
    let gone = tokio::task::spawn_blocking(move || {
        loop {
            let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
            match poll(&mut fds, None) {
                Ok(_) => {
                    let events = fds[0].revents();
                    if events.intersects(PollFlags::ERR | PollFlags::HUP) {
                        return true;
                    }
                    if events.contains(PollFlags::NVAL) {
                        return false;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    if !matches!(gone, Ok(true)) {
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
pub async fn stdout_closed() {
    std::future::pending().await
}
