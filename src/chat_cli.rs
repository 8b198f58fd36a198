//! `cfgate chat`: one question, the answer printed as it streams.
//!
//! Stdout carries the answer and nothing else; stderr carries one plain error and its hint
//! (retries and the detail behind an error go to the log file). A reader that goes away
//! (`cfgate chat hi | head -c 5`) ends the command at once and with it the upstream
//! request: the rest of the answer would go nowhere, and would still be paid for.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use serde_json::{Map, Value};

use crate::answer_out::{AnswerOut, OutError, stdout_closed};

use cfgate::config::Layer;
use cfgate::error::Error;
use cfgate::protocol::{ChatParams, Piece, message};
use cfgate::service::Service;

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
        AnswerOut::default().fail(&err.message, err.hint.as_deref(), None);
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
    let mut out = AnswerOut::default();
    let outcome = tokio::select! {
        outcome = run_chat(service, params, !args.json, &mut out) => outcome,
        () = stdout_closed() => Err(Failure::Output(OutError::ReaderGone)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // As `rg` or `fd` do: the reader took what it wanted.
        Err(Failure::Output(OutError::ReaderGone)) => {
            tracing::info!("stdout was closed; the answer was dropped");
            ExitCode::SUCCESS
        }
        Err(Failure::Output(OutError::Failed(e))) => {
            eprintln!("cfgate: cannot write the answer: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Chat(err)) => {
            tracing::error!(kind = ?err.kind, attempts = err.attempts, "chat failed: {}", err.message);
            out.fail(
                &err.message,
                err.hint.as_deref(),
                err.raw_content.as_deref(),
            );
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

/// Why the answer was not printed whole.
enum Failure {
    Chat(Box<Error>),
    Output(OutError),
}

impl From<OutError> for Failure {
    fn from(e: OutError) -> Failure {
        Failure::Output(e)
    }
}

async fn run_chat(
    service: &Service,
    params: ChatParams,
    stream: bool,
    out: &mut AnswerOut,
) -> Result<(), Failure> {
    let started = if stream {
        // A person at the terminal sees why nothing comes yet.
        let show = |wait| async move {
            eprintln!("cfgate: {}", cfgate::protocol::rate_limited_message(wait));
        };
        service
            .chat_showing_waits(&Layer::default(), params, show)
            .await
    } else {
        service.chat(&Layer::default(), params, stream).await
    };
    let mut chat = started.map_err(|e| Failure::Chat(Box::new(e)))?;
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
    let calls = result.tool_calls.as_ref().map(|c| Value::from(c.clone()));
    Ok(out.finish(&result.content, calls.as_ref())?)
}
