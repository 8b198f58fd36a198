//! The relay's copying: `serve --shared` joins the editor's stdin and stdout to its
//! connection to the daemon, and exits as a private `cfgate serve` would have: with the
//! status the daemon sends as the connection's last word (`end.rs`), with a one-line reason
//! on stderr when that is not 0, or, when the daemon went away without a word, 1 and why.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::end::{Ended, Tail};
use super::fd_stream::{FdStream, is_pipe_or_socket};
use super::hello;
use crate::client_layers::ClientLayers;

/// How the relay's connection ended.
pub enum Outcome {
    /// The daemon said how.
    Ended(Ended),
    /// The editor went away (its stdin ended, or its stdout cannot be written).
    EditorGone,
    /// The daemon's side closed without a word.
    DaemonGone,
}

impl Outcome {
    /// The relay's exit status, after printing the reason, if any, on stderr.
    /// `said_hello`: the daemon took the hello, so it says its last word.
    pub fn exit_status(self, said_hello: bool) -> i32 {
        match self {
            Outcome::Ended(Ended { status, reason }) => {
                if let Some(reason) = reason {
                    eprintln!("cfgate: {reason}");
                }
                status
            }
            Outcome::EditorGone => 0,
            Outcome::DaemonGone if !said_hello => 0,
            Outcome::DaemonGone => {
                eprintln!(
                    "cfgate: the shared daemon closed the connection without a word (killed or crashed?); its log is in {}",
                    super::log_hint()
                );
                1
            }
        }
    }
}

/// The relay: sends this editor's settings layers (and, when its stdin and stdout are pipes
/// or sockets, those themselves) in the hello, then waits for the connection's end, or
/// copies both ways when the daemon did not take them. Its exit status.
pub async fn run(mut stream: UnixStream, listen: Option<&str>) -> Result<i32, String> {
    use std::os::fd::AsFd;
    let layers = ClientLayers::gather();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let hand_over = is_pipe_or_socket(stdin.as_fd()) && is_pipe_or_socket(stdout.as_fd());
    let stdio = hand_over.then(|| [stdin.as_fd(), stdout.as_fd()]);
    let answer = hello::send(&mut stream, &layers, listen, stdio)
        .await
        .map_err(|e| format!("the shared daemon did not answer: {e}"))?;
    drop(layers);
    // A daemon from before hellos answers with an error, and serves as it did.
    let Ok(answer) = answer else {
        return Ok(copy_stdio(stream).await.exit_status(false));
    };
    // What this relay asked for and did not get, e.g. `--listen` to a daemon already
    // running without the endpoint.
    for warning in answer["warnings"].as_array().into_iter().flatten() {
        if let Some(warning) = warning.as_str() {
            eprintln!("cfgate: warning: {warning}");
        }
    }
    let outcome = if answer["fds"] == true {
        wait_for_end(stream).await
    } else {
        copy_stdio(stream).await
    };
    Ok(outcome.exit_status(true))
}

/// The daemon serves the editor's pipes itself: only its last word is left to read.
async fn wait_for_end(mut stream: UnixStream) -> Outcome {
    let mut tail = Tail::default();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => tail.push(&buf[..n]),
        }
    }
    match Ended::find_in_tail(tail.bytes()) {
        Some(ended) => Outcome::Ended(ended),
        None => Outcome::DaemonGone,
    }
}

/// Where the editor's input comes from when it is copied.
enum Input {
    /// A pipe or socket, through the reactor.
    Polled(FdStream),
    /// A terminal or a file, which the reactor cannot wait on: read by a thread of its own
    /// (never the runtime's blocking pool, whose reads cannot be ended).
    Thread(mpsc::Receiver<Vec<u8>>),
}

type Output = Box<dyn AsyncWrite + Unpin + Send>;

fn stdio() -> (Input, Output) {
    use std::os::fd::AsFd;
    let owned = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().ok();
    let input = owned(std::io::stdin().as_fd())
        .filter(|fd| is_pipe_or_socket(fd))
        .and_then(|fd| FdStream::reader(fd).ok());
    let output = owned(std::io::stdout().as_fd())
        .filter(|fd| is_pipe_or_socket(fd))
        .and_then(|fd| FdStream::writer(fd).ok());
    (
        match input {
            Some(input) => Input::Polled(input),
            None => Input::Thread(read_stdin_on_a_thread()),
        },
        match output {
            Some(output) => Box::new(output),
            None => Box::new(tokio::io::stdout()),
        },
    )
}

fn read_stdin_on_a_thread() -> mpsc::Receiver<Vec<u8>> {
    use std::io::Read;
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Copies both ways until the daemon's side ends or the editor goes.
pub async fn copy_stdio(stream: UnixStream) -> Outcome {
    let (input, output) = stdio();
    copy(stream, input, output).await
}

async fn copy(stream: UnixStream, input: Input, mut output: Output) -> Outcome {
    let (mut from_daemon, mut to_daemon) = stream.into_split();
    let input_ended = Arc::new(AtomicBool::new(false));
    let ended = input_ended.clone();
    let to_daemon_task = tokio::spawn(async move {
        match input {
            Input::Polled(mut input) => {
                let _ = tokio::io::copy(&mut input, &mut to_daemon).await;
            }
            Input::Thread(mut chunks) => {
                while let Some(chunk) = chunks.recv().await {
                    if to_daemon.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
        }
        ended.store(true, Ordering::Relaxed);
        let _ = to_daemon.shutdown().await;
    });
    let mut tail = Tail::default();
    let mut buf = vec![0u8; 64 * 1024];
    let outcome = loop {
        let n = match from_daemon.read(&mut buf).await {
            Ok(0) | Err(_) => break None,
            Ok(n) => n,
        };
        tail.push(&buf[..n]);
        // Flushed each time: a terminal's or a file's stdout holds back what follows the
        // last newline, which is a frame's whole body.
        if output.write_all(&buf[..n]).await.is_err() || output.flush().await.is_err() {
            break Some(Outcome::EditorGone);
        }
    };
    let _ = output.flush().await;
    to_daemon_task.abort();
    outcome.unwrap_or_else(|| match Ended::find_in_tail(tail.bytes()) {
        Some(ended) => Outcome::Ended(ended),
        None if input_ended.load(Ordering::Relaxed) => Outcome::EditorGone,
        None => Outcome::DaemonGone,
    })
}
