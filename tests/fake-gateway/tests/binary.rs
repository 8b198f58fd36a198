//! The `fake-gateway` binary: prints its URL, obeys flags, is driven over HTTP and exits 0
//! when its stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A raw HTTP/1.1 exchange with `Connection: close`; returns (status line, whole response).
fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(T)).expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.lines().next().unwrap_or_default().to_string();
    (status, response)
}

#[test]
fn binary_serves_until_stdin_closes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-gateway"))
        .args(["--token", "secret", "--chunk-delay-ms", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn fake-gateway");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read URL line");
    let url = line
        .trim_end()
        .strip_prefix("FAKE_GATEWAY_URL=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let addr = url.strip_prefix("http://").expect("http URL").to_string();

    let chat = "/v1/a/g/compat/chat/completions";
    let body = r#"{"model":"workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, response) = http(&addr, "POST", chat, "", body);
    assert!(status.contains(" 401 "), "{response}");
    assert!(response.contains("\"code\":10000"), "{response}");

    let script = r#"{"content":"from script"}"#;
    let (status, _) = http(&addr, "POST", "/__fake/script", "", script);
    assert!(status.contains(" 200 "));
    let (status, response) = http(
        &addr,
        "POST",
        chat,
        "Authorization: Bearer secret\r\n",
        body,
    );
    assert!(status.contains(" 200 "), "{response}");
    assert!(response.contains("from script"), "{response}");

    let (_, stats) = http(&addr, "GET", "/__fake/stats", "", "");
    assert!(stats.contains("\"requests\":2"), "{stats}");

    drop(child.stdin.take());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let exit = rx
        .recv_timeout(T)
        .expect("exits after stdin EOF")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn binary_rejects_unknown_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-gateway"))
        .arg("--bogus")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
