//! The command line: `cfgate serve` (what editors start), `cfgate chat`, `cfgate status`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use cfgate::config::{self, Layer};
use cfgate::logging::Stderr;
use cfgate::server::{self, Ending, framing};
use cfgate::service::Service;

mod answer_out;
mod chat_cli;
mod models_table;
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
    /// Where the loopback endpoint and its OpenAI-compatible API are: base URL and key.
    Endpoint {
        /// Make a new key (the daemon takes it at its next start: `cfgate stop` first).
        #[arg(long)]
        rotate: bool,
    },
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
        // Only hands its stdio to the daemon (or copies bytes): one thread, no HTTP client,
        // so each editor's process is light. Its own failure is printed plainly; the log
        // file has the rest.
        let guard = cfgate::logging::init("info", Stderr::Quiet);
        let code = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let code = rt.block_on(shared_cli::serve_shared(listen));
                // Not waiting for a terminal's stdin read (its own thread), which may never end.
                rt.shutdown_background();
                code
            }
            Err(e) => {
                eprintln!("cfgate: cannot start the runtime: {e}");
                1
            }
        };
        drop(guard);
        // Exit now, whatever still reads a terminal's stdin.
        std::process::exit(code);
    }
    // One editor connection is a sequence of small messages: on one thread the reader,
    // the handlers, hyper's connection tasks and the writer wake each other without a
    // futex or a context switch (docs/performance.md). The shared daemon too: its
    // clients' messages are as small, and on the pool a stream's first piece came 0.18 ms
    // later than from a private daemon. The one-shot commands gain nothing: they keep the pool.
    let mut builder = match cli.command {
        Command::Serve { .. } | Command::Daemon { .. } => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cfgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let daemon = matches!(cli.command, Command::Serve { .. } | Command::Daemon { .. });
    let guard = if daemon {
        cfgate::logging::init("info", Stderr::Warnings)
    } else {
        cfgate::logging::init("warn", Stderr::Quiet)
    };
    cfgate::hardening::forbid_core_dumps();
    // A config file that cannot be used fails every request with an error naming it (and a
    // daemon's `initialize`), rather than being skipped for defaults the user did not mean.
    let (file_layer, config_path, config_error) = match config::load_config_file() {
        Ok(file) => {
            for warning in &file.warnings {
                if daemon {
                    tracing::warn!("{warning}");
                } else {
                    eprintln!("cfgate: warning: {warning}");
                }
            }
            (file.layer, file.path, None)
        }
        Err(e) => {
            tracing::error!("{e}");
            (Layer::default(), Some(e.path.clone()), Some(e))
        }
    };
    let base = Layer::from_env().over(&file_layer);
    let service = match Service::new(base.clone()) {
        Ok(s) => match &config_error {
            Some(e) => Arc::new(s.with_config_error(e)),
            None => Arc::new(s),
        },
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
        Command::Endpoint { rotate } => shared_cli::endpoint(&base, rotate),
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
        } => runtime.block_on(chat_cli::chat(
            &service,
            chat_cli::ChatArgs {
                prompt,
                model,
                system,
                json,
                max_tokens,
                session,
            },
        )),
        Command::Sessions => runtime.block_on(list_sessions()),
        Command::Status => {
            let code = status(&service, config_path.as_deref());
            runtime.block_on(shared_cli::shared_status());
            code
        }
        Command::Models { json } => runtime.block_on(models_table::print(&service, json)),
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
    let mut text = String::new();
    let mut line = |k: &str, v: &str| text.push_str(&format!("{k:<14}{v}\n"));
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
    if let Some(hint) = service.config_error().and_then(|e| e.hint.as_deref()) {
        line("hint", hint);
    }
    if status.credentials_complete {
        line("credentials", "complete");
    } else if service.config_error().is_none() {
        // With the file unread, what it would have set is not missing.
        line("missing", &status.missing.join(", "));
    }
    answer_out::print_text(&text);
    // Scripts and setup checks can rely on it: nothing could be sent with these settings.
    if status.credentials_complete && status.settings_error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
