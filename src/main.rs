//! The command line: `cfgate serve` (what editors start), `cfgate chat`, `cfgate status`.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::{Map, Value, json};

use cfgate::config::{self, Layer};
use cfgate::error::Error;
use cfgate::protocol::{ChatParams, Piece, message};
use cfgate::server::{self, Ending, framing};
use cfgate::service::Service;

mod models;
mod shared_cli;

#[derive(Parser)]
#[command(
    name = "cfgate",
    version,
    about = "Cloudflare AI Gateway for editors and scripts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve JSON-RPC (LSP framing) on stdin/stdout; what editor plugins start.
    Serve {
        /// Largest frame accepted, in bytes; larger ones are refused and skipped.
        #[arg(long, default_value_t = framing::DEFAULT_MAX_FRAME)]
        max_frame_bytes: usize,
        /// Most output the client may leave unread, in bytes; past it, it is cut off.
        #[arg(long, default_value_t = server::outbox::DEFAULT_MAX_OUTBOX)]
        max_outbox_bytes: usize,
        /// Connect to the user's shared daemon (started if none runs) instead of serving here.
        #[arg(long)]
        shared: bool,
        /// With --shared: a daemon started now also serves HTTP/WebSocket JSON-RPC here
        /// (loopback only, e.g. 127.0.0.1:8765).
        #[arg(long, requires = "shared")]
        listen: Option<std::net::SocketAddr>,
    },
    /// The shared daemon itself; started in the background by `serve --shared`.
    #[command(hide = true)]
    Daemon {
        #[arg(long, default_value_t = framing::DEFAULT_MAX_FRAME)]
        max_frame_bytes: usize,
        /// Also serve HTTP/WebSocket JSON-RPC on this loopback address.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Stop the shared daemon.
    Stop,
    /// Ask once and print the answer as it streams.
    Chat {
        /// The prompt; read from stdin when left out or `-`.
        prompt: Option<String>,
        /// Model id, e.g. @cf/meta/llama-3.3-70b-instruct-fp8-fast or openai/gpt-5-mini.
        #[arg(long, short)]
        model: Option<String>,
        /// A system message.
        #[arg(long, short)]
        system: Option<String>,
        /// Ask for a JSON object (JSON mode; not streamed, as Workers AI requires).
        #[arg(long)]
        json: bool,
        /// Most tokens to generate.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Continue this conversation, through the shared daemon (started if needed).
        #[arg(long)]
        session: Option<String>,
    },
    /// List the stored conversations (sessions).
    Sessions,
    /// Show the settings cfgate resolves (the token is never shown) and what is missing.
    Status,
    /// List the models the gateway offers, as a table.
    Models {
        /// Print the list as JSON instead.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve {
        shared: true,
        listen,
        ..
    } = cli.command
    {
        // Only relays bytes: one thread, no HTTP client, so each editor's process is light.
        let guard = cfgate::logging::init("info");
        let code = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let code = rt.block_on(shared_cli::serve_shared(listen));
                // Not waiting for the blocking stdin read, which may never end.
                rt.shutdown_background();
                code
            }
            Err(e) => {
                eprintln!("cfgate: cannot start the runtime: {e}");
                1
            }
        };
        drop(guard);
        // Exit now: waiting for the runtime would wait for the blocking stdin read.
        std::process::exit(code);
    }
    // One editor connection is a sequence of small messages: on one thread the reader,
    // the handlers, hyper's connection tasks and the writer wake each other without a
    // futex or a context switch (docs/performance.md). The shared daemon serves many
    // clients, and the one-shot commands gain nothing from it: they keep the pool.
    let mut builder = match cli.command {
        Command::Serve { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cfgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let default_level = match cli.command {
        Command::Serve { .. } | Command::Daemon { .. } => "info",
        _ => "warn",
    };
    let guard = cfgate::logging::init(default_level);
    cfgate::hardening::forbid_core_dumps();
    let file = config::load_config_file();
    for warning in &file.warnings {
        tracing::warn!("{warning}");
    }
    let base = Layer::from_env().over(&file.layer);
    let service = match Service::new(base.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("cfgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        Command::Daemon {
            max_frame_bytes,
            listen,
        } => {
            let code = shared_cli::daemon(&runtime, service, &base, max_frame_bytes, listen);
            drop(guard);
            std::process::exit(code);
        }
        Command::Stop => runtime.block_on(shared_cli::stop()),
        Command::Serve {
            max_frame_bytes,
            max_outbox_bytes,
            ..
        } => {
            let limits = server::Limits {
                max_frame: max_frame_bytes,
                max_outbox: max_outbox_bytes,
            };
            let ending = runtime.block_on(serve(service, limits));
            tracing::info!(?ending, "connection ended");
            drop(guard);
            // Exit now: waiting for the runtime would wait for the blocking stdin read.
            std::process::exit(match ending {
                Ending::Eof
                | Ending::Exit {
                    after_shutdown: true,
                } => 0,
                _ => 1,
            });
        }
        Command::Chat {
            prompt,
            model,
            system,
            json,
            max_tokens,
            session,
        } => runtime.block_on(chat(
            &service, prompt, model, system, json, max_tokens, session,
        )),
        Command::Sessions => runtime.block_on(list_sessions()),
        Command::Status => {
            let code = status(&service, file.path.as_deref());
            runtime.block_on(shared_cli::shared_status());
            code
        }
        Command::Models { json } => runtime.block_on(models::print(&service, json)),
    };
    drop(guard);
    runtime.shutdown_background();
    code
}

async fn serve(service: Arc<Service>, limits: server::Limits) -> Ending {
    // The watchers run as their own task: in the `select!` below every wake-up of the
    // connection polls every branch, and polling the signal and parent watchers each time
    // cost about 4k instructions per request (docs/performance.md); a join handle is cheap.
    let mut ended_outside = tokio::spawn(async {
        tokio::select! {
            _ = cfgate::shutdown::requested() => Ending::Exit { after_shutdown: true },
            _ = cfgate::parent::gone() => Ending::Eof,
        }
    });
    tokio::select! {
        ending = server::serve_stdio(service, limits) => ending,
        outside = &mut ended_outside => outside.unwrap_or(Ending::Eof),
    }
}

async fn chat(
    service: &Service,
    prompt: Option<String>,
    model: Option<String>,
    system: Option<String>,
    json_mode: bool,
    max_tokens: Option<u32>,
    session: Option<String>,
) -> ExitCode {
    let prompt = match prompt.filter(|p| p != "-") {
        Some(p) => p,
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("cfgate: give a prompt, or pipe one on stdin");
                return ExitCode::from(2);
            }
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("cfgate: cannot read the prompt from stdin: {e}");
                return ExitCode::from(2);
            }
            text
        }
    };
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(message("system", system));
    }
    messages.push(message("user", prompt));
    let mut body = Map::new();
    if let Some(max) = max_tokens {
        body.insert("max_tokens".into(), Value::from(max));
    }
    if let Some(session) = session {
        return shared_cli::chat_in_session(session, messages, model, json_mode, body).await;
    }
    let params = ChatParams {
        messages,
        model,
        json_mode,
        work_done_token: None,
        gateway: None,
        session: None,
        body,
    };
    match run_chat(service, params, !json_mode).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ncfgate: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_chat(service: &Service, params: ChatParams, stream: bool) -> Result<(), Error> {
    let mut chat = service.chat(&Layer::default(), params, stream).await?;
    let mut out = std::io::stdout().lock();
    let mut printed = false;
    while let Some(piece) = chat.next_piece().await? {
        if let Piece::Content(text) = piece {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            printed = true;
        }
    }
    let result = chat.finish().await?;
    if !printed {
        let _ = out.write_all(result.content.as_bytes());
    }
    if let Some(calls) = &result.tool_calls {
        let _ = writeln!(out, "\n{}", json!({ "tool_calls": calls }));
    }
    let _ = writeln!(out);
    Ok(())
}

async fn list_sessions() -> ExitCode {
    let store = cfgate::sessions::SessionStore::from_env();
    match store.list().await {
        Ok(sessions) => {
            for s in sessions {
                println!(
                    "{:<24} {:>5} turns  {:>8} tokens  updated {}",
                    s.name, s.turns, s.usage.total_tokens, s.updated
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cfgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn status(service: &Service, config_path: Option<&std::path::Path>) -> ExitCode {
    let status = service.status(&Layer::default());
    let token_set = !status.missing.iter().any(|m| m == config::ENV_TOKEN);
    let line = |k: &str, v: &str| println!("{k:<14}{v}");
    line("cfgate", &status.version);
    if let Some(path) = config_path {
        let found = if path.exists() { "" } else { " (not present)" };
        line("config file", &format!("{}{found}", path.display()));
    }
    line(
        "api token",
        if token_set { "set (hidden)" } else { "MISSING" },
    );
    line("account id", status.account_id.as_deref().unwrap_or("-"));
    line("gateway id", &status.gateway_id);
    line("endpoint", &status.endpoint);
    line("base url", status.base_url.as_deref().unwrap_or("-"));
    for sent in &status.auth_headers {
        line(
            "sends",
            &format!("{} ({}) in {}", sent.setting, sent.env, sent.header),
        );
    }
    line("model", &status.model);
    if let Some(problem) = &status.settings_error {
        line("problem", problem);
    }
    if status.credentials_complete {
        line("credentials", "complete");
    } else {
        line("missing", &status.missing.join(", "));
    }
    ExitCode::SUCCESS
}
