//! The relay's copying: `serve --shared` joins the editor's stdin and stdout to its
//! connection to the daemon, and exits as a private `cfgate serve` would have: with the
//! status the daemon sends as the connection's last word (`end.rs`), with a one-line reason
//! on stderr when that is not 0, or, when the daemon went away without a word, 1 and why.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

use super::end::{Ended, Tail};

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

type Input = Box<dyn AsyncRead + Unpin + Send>;
type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// Stdin and stdout through the reactor when they are pipes, else tokio's own.
fn stdio() -> (Input, Output) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let input = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok());
    let output = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| pipe::Sender::from_owned_fd(fd).ok());
    (
        match input {
            Some(pipe) => Box::new(pipe),
            None => Box::new(tokio::io::stdin()),
        },
        match output {
            Some(pipe) => Box::new(pipe),
            None => Box::new(tokio::io::stdout()),
        },
    )
}

/// Copies both ways until the daemon's side ends or the editor goes.
pub async fn copy_stdio(stream: UnixStream) -> Outcome {
    let (input, output) = stdio();
    copy(stream, input, output).await
}

async fn copy(stream: UnixStream, mut input: Input, mut output: Output) -> Outcome {
    let (mut from_daemon, mut to_daemon) = stream.into_split();
    let input_ended = Arc::new(AtomicBool::new(false));
    let ended = input_ended.clone();
    let to_daemon_task = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut input, &mut to_daemon).await;
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
        if output.write_all(&buf[..n]).await.is_err() {
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
