//! `cfgate chat`: one question, the answer printed as it streams.
//!
//! Stdout carries the answer and nothing else; stderr carries one plain error and its hint
//! (retries and the detail behind an error go to the log file). A reader that goes away
//! (`cfgate chat hi | head -c 5`) ends the command at once and with it the upstream
//! request: the rest of the answer would go nowhere, and would still be paid for.

use std::io::{IsTerminal, Read, Write};
#[cfg(unix)]
use std::os::fd::AsFd;
use std::process::ExitCode;

use serde_json::{Map, Value, json};

use cfgate::config::Layer;
use cfgate::error::Error;
use cfgate::protocol::{ChatParams, Piece, message};
use cfgate::service::Service;

/// The hint of an answer that is not the JSON asked for, once its text is on stdout.
pub const NOT_JSON_HINT: &str = "the model did not keep to the JSON format (Workers AI does not \
     enforce it, and not every model supports it); its text is on stdout; try again, or another \
     model";

/// `cfgate chat`'s arguments.
pub struct ChatArgs {
    pub prompt: Option<String>,
    pub model: Option<String>,
    pub system: Option<String>,
    pub json: bool,
    pub max_tokens: Option<u32>,
    pub session: Option<String>,
}

pub async fn chat(service: &Service, args: ChatArgs) -> ExitCode {
    let prompt = match read_prompt(args.prompt) {
        Ok(prompt) => prompt,
        Err(code) => return code,
    };
    if prompt.trim().is_empty() {
        eprintln!(
            "cfgate: the prompt is empty, so nothing was sent; give it as an argument or on stdin"
        );
        return ExitCode::from(2);
    }
    if let Some(err) = service.config_error() {
        // Also for `--session`: the shared daemon would read the same file.
        print_error(err, false);
        return ExitCode::FAILURE;
    }
    let mut messages = Vec::new();
    if let Some(system) = args.system {
        messages.push(message("system", system));
    }
    messages.push(message("user", prompt));
    let mut body = Map::new();
    if let Some(max) = args.max_tokens {
        body.insert("max_tokens".into(), Value::from(max));
    }
    if let Some(session) = args.session {
        return crate::shared_cli::chat_in_session(session, messages, args.model, args.json, body)
            .await;
    }
    let params = ChatParams {
        messages,
        model: args.model,
        json_mode: args.json,
        work_done_token: None,
        gateway: None,
        session: None,
        body,
    };
    let mut out = Output::default();
    let outcome = tokio::select! {
        outcome = run_chat(service, params, !args.json, &mut out) => outcome,
        () = stdout_closed() => Err(Failure::ReaderGone),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // As `rg` or `fd` do: the reader took what it wanted.
        Err(Failure::ReaderGone) => {
            tracing::info!("stdout was closed; the answer was dropped");
            ExitCode::SUCCESS
        }
        Err(Failure::Output(e)) => {
            eprintln!("cfgate: cannot write the answer: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Chat(mut err)) => {
            // JSON that does not parse is still the answer: the text goes where the answer
            // would have gone, the error beside it.
            if let Some(raw) = err.raw_content.take() {
                if let Err(Failure::Output(e)) = out.write(&format!("{raw}\n")) {
                    tracing::warn!("the raw answer could not be written: {e}");
                }
                err.hint = Some(NOT_JSON_HINT.into());
            }
            tracing::error!(kind = ?err.kind, attempts = err.attempts, "chat failed: {}", err.message);
            print_error(&err, out.mid_line);
            ExitCode::FAILURE
        }
    }
}

/// The prompt from the argument, or from stdin when it is left out or `-`.
fn read_prompt(prompt: Option<String>) -> Result<String, ExitCode> {
    if let Some(prompt) = prompt.filter(|p| p != "-") {
        return Ok(prompt);
    }
    if std::io::stdin().is_terminal() {
        eprintln!("cfgate: give a prompt, or pipe one on stdin");
        return Err(ExitCode::from(2));
    }
    let mut text = String::new();
    match std::io::stdin().read_to_string(&mut text) {
        Ok(_) => Ok(text),
        Err(e) => {
            eprintln!("cfgate: cannot read the prompt from stdin: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn print_error(err: &Error, after_partial_line: bool) {
    let newline = if after_partial_line { "\n" } else { "" };
    eprintln!("{newline}cfgate: error: {err}");
}

/// Why the answer was not printed whole.
enum Failure {
    Chat(Box<Error>),
    /// Stdout's reader is gone (a closed pipe).
    ReaderGone,
    /// Stdout failed otherwise (a full disk).
    Output(std::io::Error),
}

/// Stdout, written piece by piece; locked only for each write, never across an await.
#[derive(Default)]
struct Output {
    printed: bool,
    /// The last text written did not end its line.
    mid_line: bool,
}

impl Output {
    fn write(&mut self, text: &str) -> Result<(), Failure> {
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
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::ReaderGone),
            Err(e) => Err(Failure::Output(e)),
        }
    }
}

async fn run_chat(
    service: &Service,
    params: ChatParams,
    stream: bool,
    out: &mut Output,
) -> Result<(), Failure> {
    let mut chat = service
        .chat(&Layer::default(), params, stream)
        .await
        .map_err(|e| Failure::Chat(Box::new(e)))?;
    while let Some(piece) = chat
        .next_piece()
        .await
        .map_err(|e| Failure::Chat(Box::new(e)))?
    {
        if let Piece::Content(text) = piece {
            out.write(&text)?;
        }
    }
    let result = chat
        .finish()
        .await
        .map_err(|e| Failure::Chat(Box::new(e)))?;
    if !out.printed {
        out.write(&result.content)?;
    }
    if let Some(calls) = &result.tool_calls {
        out.write(&format!("\n{}", json!({ "tool_calls": calls })))?;
    }
    out.write("\n")
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
