//! `fake-gateway [--token T] [--gateway-token T] [--authenticated] [--buffer-streams] [--chunk-delay-ms N] [--known-gateway G]... [--byok-alias A]...`
//!
//! Starts the fake on `127.0.0.1:0`, prints exactly one line `FAKE_GATEWAY_URL=http://127.0.0.1:PORT`
//! to stdout, then serves until stdin reaches EOF (so it never outlives the test that started
//! it) and exits 0. Tests drive it through the `/__fake/*` control endpoints.

use std::io::Write;
use std::time::Duration;

use fake_gateway::{Config, FakeGateway};
use tokio::io::AsyncReadExt;

const USAGE: &str = "usage: fake-gateway [--token T] [--gateway-token T] [--authenticated] [--buffer-streams] [--chunk-delay-ms N] [--known-gateway G]... [--byok-alias A]...";

fn parse_args(args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config = Config::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--authenticated" => config.authenticated = true,
            "--buffer-streams" => config.buffer_streams = true,
            "--token" => config.api_token = Some(value()?),
            "--gateway-token" => config.gateway_token = Some(value()?),
            "--chunk-delay-ms" => {
                let v = value()?;
                let ms: u64 = v
                    .parse()
                    .map_err(|_| format!("--chunk-delay-ms: not a number: {v}"))?;
                config.chunk_delay = Duration::from_millis(ms);
            }
            "--known-gateway" => config
                .known_gateways
                .get_or_insert_with(Vec::new)
                .push(value()?),
            "--byok-alias" => config
                .byok_aliases
                .get_or_insert_with(Vec::new)
                .push(value()?),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return;
        }
        Err(message) => {
            eprintln!("fake-gateway: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let fake = FakeGateway::start_with(config).await;
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "FAKE_GATEWAY_URL={}", fake.url());
        let _ = stdout.flush();
    }
    // Serve until stdin reaches EOF (or fails).
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 1024];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    drop(fake);
    std::process::exit(0);
}
