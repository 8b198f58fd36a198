//! The command line's shared-daemon commands (`serve --shared`, `daemon`, `stop`,
//! `chat --session`, the daemon part of `status`), apart from `main.rs` so that the
//! platforms without Unix sockets get one stub each instead of `cfg` in every arm.

#[cfg(not(unix))]
pub use other::*;
#[cfg(unix)]
pub use unix::*;

#[cfg(unix)]
mod unix {
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::sync::Arc;

    use serde_json::{Map, Value, json};

    use crate::answer_out::{AnswerOut, OutError, stdout_closed};

    use cfgate::config::Layer;
    use cfgate::service::Service;

    /// `serve --shared`: this process only joins its stdio to the shared daemon.
    pub async fn serve_shared(listen: Option<SocketAddr>) -> i32 {
        use cfgate::shared;
        // Refused before any daemon is started: the daemon would refuse it anyway.
        if let Some(Err(e)) = listen.map(cfgate::endpoint::loopback_only) {
            eprintln!("cfgate: {e}");
            return 2;
        }
        let daemon_args: Vec<String> = listen
            .map(|addr| vec!["--listen".to_string(), addr.to_string()])
            .unwrap_or_default();
        let stream = match shared::Paths::from_env() {
            Ok(paths) => shared::connect_or_start(&paths, &daemon_args).await,
            Err(e) => Err(e),
        };
        let asked = listen.map(|addr| addr.to_string());
        let code = match stream {
            Ok(stream) => tokio::select! {
                code = shared::relay::run(stream, asked.as_deref()) => code,
                _ = cfgate::parent::gone() => Ok(0),
            },
            Err(e) => Err(e),
        };
        match code {
            Ok(code) => code,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("cfgate: {e}");
                1
            }
        }
    }

    /// `cfgate endpoint`: the base URL to paste into an OpenAI-compatible tool and where its
    /// key is; `--rotate` makes a new key. Exit 1 when no endpoint runs or is configured.
    pub fn endpoint(base: &Layer, rotate: bool) -> ExitCode {
        let Some(key) = cfgate::endpoint::key_path() else {
            eprintln!("cfgate: no state folder for the endpoint key (HOME not set?)");
            return ExitCode::FAILURE;
        };
        if rotate {
            return match cfgate::endpoint::rotate_key(&key) {
                Ok(_) => {
                    println!(
                        "new key in {}; a running daemon keeps the old one until `cfgate stop`",
                        key.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cfgate: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        let running = cfgate::shared::Paths::from_env().ok().and_then(|paths| {
            std::fs::read_to_string(paths.dir.join(cfgate::endpoint::ADDR_FILE)).ok()
        });
        let (addr, state) = match (running, base.listen) {
            (Some(addr), _) => (addr.trim().to_string(), "running"),
            (None, Some(addr)) => (
                addr.to_string(),
                "starts with the shared daemon (listen setting)",
            ),
            (None, None) => {
                eprintln!(
                    "cfgate: no loopback endpoint: set `listen = \"127.0.0.1:8765\"` in the config file, \
                     or start one with `cfgate serve --shared --listen 127.0.0.1:8765`"
                );
                return ExitCode::FAILURE;
            }
        };
        crate::answer_out::print_text(&format!(
            "base url      http://{addr}/v1\nkey           {} (kept across restarts; `cfgate endpoint --rotate` makes a new one)\nendpoint      {state}\n",
            key.display()
        ));
        ExitCode::SUCCESS
    }

    /// The shared daemon: exits at once (0) when another one already serves.
    pub fn daemon(
        runtime: &tokio::runtime::Runtime,
        service: Arc<Service>,
        base: &Layer,
        max_frame: usize,
        listen: Option<SocketAddr>,
    ) -> i32 {
        use cfgate::shared;
        shared::detach();
        let options = shared::DaemonOptions {
            // With a config file it cannot use, it answers each client with that error and
            // goes once none is left, so the client started after the fix reads the file anew.
            idle_exit: match service.config_error() {
                Some(_) => shared::CONFIG_ERROR_IDLE_EXIT,
                None => base
                    .idle_exit_secs
                    .map(std::time::Duration::from_secs)
                    .unwrap_or(shared::DEFAULT_IDLE_EXIT),
            },
            max_frame,
            // `--listen` for this start, else the config file's `listen`: a daemon started
            // by a login service or any client serves the endpoint where tools expect it.
            listen: listen.or(base.listen),
            origins: base.listen_origins.clone().unwrap_or_default(),
        };
        let failed = |e: String| {
            tracing::error!("{e}");
            shared::report_start_failure(&e);
            1
        };
        let paths = match shared::Paths::from_env() {
            Ok(p) => p,
            Err(e) => return failed(e),
        };
        let _lock = match shared::take_daemon_lock(&paths) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::info!("another shared daemon is serving; exiting");
                return 0;
            }
            Err(e) => return failed(e),
        };
        match runtime.block_on(shared::run_daemon(service, &paths, options)) {
            Ok(_) => 0,
            Err(e) => failed(e),
        }
    }

    pub async fn stop() -> ExitCode {
        use cfgate::shared;
        let result = match shared::Paths::from_env() {
            Ok(paths) => shared::stop(&paths).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("cfgate: no shared daemon is running");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cfgate: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// `chat --session`: the turn goes through the shared daemon, which keeps the conversation.
    pub async fn chat_in_session(
        session: String,
        messages: Vec<Map<String, Value>>,
        model: Option<String>,
        json_mode: bool,
        body: Map<String, Value>,
    ) -> ExitCode {
        use cfgate::shared_client::{CallError, DaemonClient};
        let mut client = match DaemonClient::connect(true).await {
            Ok(Some(client)) => client,
            Ok(None) => return ExitCode::FAILURE,
            Err(e) => {
                eprintln!("cfgate: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut params = Value::Object(body);
        params["session"] = json!(session);
        params["messages"] = json!(messages);
        params["json_mode"] = json!(json_mode);
        if let Some(model) = model {
            params["model"] = json!(model);
        }
        if !json_mode {
            params["workDoneToken"] = json!("cli");
        }
        let mut out = AnswerOut::default();
        let mut reader_gone = false;
        let call = client.call("cfgate/chat", params, |n| {
            if n["method"] == "$/progress" {
                if let Some(text) = n["params"]["value"]["content"].as_str() {
                    reader_gone |= matches!(out.write(text), Err(OutError::ReaderGone));
                }
            }
        });
        // A reader that went away ends the turn: the daemon drops it with the connection.
        let answer = tokio::select! {
            answer = call => answer,
            () = stdout_closed() => return ExitCode::SUCCESS,
        };
        if reader_gone {
            return ExitCode::SUCCESS;
        }
        match answer {
            Ok(result) => {
                let content = result["content"].as_str().unwrap_or_default();
                match out.finish(content, Some(&result["tool_calls"])) {
                    Err(OutError::Failed(e)) => {
                        eprintln!("cfgate: cannot write the answer: {e}");
                        ExitCode::FAILURE
                    }
                    _ => ExitCode::SUCCESS,
                }
            }
            // As without a session: the error, then its hint on a line of its own.
            Err(CallError::Rpc(error)) => {
                out.fail(
                    error["message"].as_str().unwrap_or("error"),
                    error["data"]["hint"].as_str(),
                    error["data"]["raw_content"].as_str(),
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                out.fail(&e.to_string(), None, None);
                ExitCode::FAILURE
            }
        }
    }

    /// What the shared daemon, when one runs, says of its clients and sessions.
    pub async fn shared_status() {
        use cfgate::shared_client::DaemonClient;
        let line = |k: &str, v: &str| println!("{k:<14}{v}");
        let Ok(Some(mut client)) = DaemonClient::connect(false).await else {
            line("shared daemon", "not running");
            return;
        };
        match client.call("cfgate/status", json!({}), |_| {}).await {
            Ok(status) => {
                line(
                    "shared daemon",
                    &format!(
                        "running, up {}s, pid {}",
                        status["uptime_secs"], status["daemon"]["pid"]
                    ),
                );
                // This command is itself a client; the others are the tools.
                for c in status["clients"].as_array().into_iter().flatten() {
                    let name = c["name"].as_str().unwrap_or("(unnamed)");
                    let version = c["version"].as_str().unwrap_or("");
                    line("client", format!("{name} {version}").trim_end());
                }
                for b in status["budgets"].as_array().into_iter().flatten() {
                    line("rate budget", &super::budget_line(b));
                }
                for s in status["sessions"].as_array().into_iter().flatten() {
                    line(
                        "session",
                        &format!(
                            "{} ({} turns, {} tokens)",
                            s["name"].as_str().unwrap_or_default(),
                            s["turns"],
                            s["usage"]["total_tokens"]
                        ),
                    );
                }
            }
            Err(e) => line("shared daemon", &format!("not answering: {e}")),
        }
    }
}

/// One gateway's rate budget as `cfgate status` prints it: `URL: 12 sent in the last
/// minute, limit 30/min (learned), cooling down 2.5 s`.
#[cfg(unix)]
fn budget_line(budget: &serde_json::Value) -> String {
    let mut text = format!(
        "{}: {} sent in the last minute",
        budget["gateway"].as_str().unwrap_or("?"),
        budget["used_last_minute"]
    );
    match budget["limit"].as_u64() {
        Some(limit) if budget["learned"] == true => {
            text.push_str(&format!(", limit {limit}/min (learned from 429s)"))
        }
        Some(limit) => text.push_str(&format!(", limit {limit}/min (requests_per_minute)")),
        None => text.push_str(", no limit known"),
    }
    if let Some(ms) = budget["cool_down_ms"].as_u64() {
        text.push_str(&format!(
            ", cooling down {:.1} s after a 429",
            ms as f64 / 1000.0
        ));
    }
    text
}

#[cfg(not(unix))]
mod other {
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::sync::Arc;

    use serde_json::{Map, Value};

    use cfgate::config::Layer;
    use cfgate::service::Service;

    const UNSUPPORTED: &str = "cfgate: the shared daemon needs Unix sockets; use `cfgate serve`";

    pub fn endpoint(_base: &Layer, _rotate: bool) -> ExitCode {
        eprintln!("cfgate: the loopback endpoint needs a Unix system");
        ExitCode::FAILURE
    }

    pub async fn serve_shared(_listen: Option<SocketAddr>) -> i32 {
        eprintln!("{UNSUPPORTED}");
        2
    }

    pub fn daemon(
        _runtime: &tokio::runtime::Runtime,
        _service: Arc<Service>,
        _base: &Layer,
        _max_frame: usize,
        _listen: Option<SocketAddr>,
    ) -> i32 {
        eprintln!("{UNSUPPORTED}");
        2
    }

    pub async fn stop() -> ExitCode {
        eprintln!("{UNSUPPORTED}");
        ExitCode::from(2)
    }

    pub async fn chat_in_session(
        _session: String,
        _messages: Vec<Map<String, Value>>,
        _model: Option<String>,
        _json_mode: bool,
        _body: Map<String, Value>,
    ) -> ExitCode {
        eprintln!("{UNSUPPORTED}");
        ExitCode::from(2)
    }

    pub async fn shared_status() {}
}
