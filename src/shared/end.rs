//! A shared-daemon connection's last word: when the daemon ends a connection that began with
//! a hello, it sends `cfgate/connectionEnded` with the exit status a private `cfgate serve`
//! would have ended with, and why when that is not 0. The relay exits with that status and
//! prints the reason; a connection that ends without it ended because the daemon went away
//! (killed, crashed).

use serde::{Deserialize, Serialize};

use crate::server::{Ending, framing};

pub const METHOD: &str = "cfgate/connectionEnded";
/// The most of the daemon's output the relay keeps to find the last word in.
pub const TAIL: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub status: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Ended {
    /// How a private `cfgate serve` would have exited after this ending.
    pub fn of(ending: Ending, stopped: bool) -> Ended {
        if stopped {
            return Ended {
                status: 1,
                reason: Some("the shared daemon was stopped (`cfgate stop`)".into()),
            };
        }
        match ending {
            Ending::Eof
            | Ending::Exit {
                after_shutdown: true,
            } => Ended {
                status: 0,
                reason: None,
            },
            Ending::Exit {
                after_shutdown: false,
            } => Ended {
                status: 1,
                reason: None,
            },
            Ending::Overflow => Ended {
                status: 1,
                reason: Some("cut off for leaving too much output unread".into()),
            },
            _ => Ended {
                status: 1,
                reason: None,
            },
        }
    }

    /// The notification, framed.
    pub fn frame(&self) -> bytes::Bytes {
        let body = serde_json::json!({"jsonrpc": "2.0", "method": METHOD, "params": self});
        framing::encode(body.to_string().as_bytes())
    }

    /// The last word, if `tail` (the end of what the daemon sent) ends with it.
    pub fn find_in_tail(tail: &[u8]) -> Option<Ended> {
        let at = tail.windows(4).rposition(|w| w == b"\r\n\r\n")?;
        #[derive(Deserialize)]
        struct Notification {
            method: String,
            params: Ended,
        }
        let last: Notification = serde_json::from_slice(&tail[at + 4..]).ok()?;
        (last.method == METHOD).then_some(last.params)
    }
}

/// The last [`TAIL`] bytes of a stream.
#[derive(Default)]
pub struct Tail(Vec<u8>);

impl Tail {
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= TAIL {
            self.0.clear();
            self.0.extend_from_slice(&bytes[bytes.len() - TAIL..]);
            return;
        }
        self.0.extend_from_slice(bytes);
        if self.0.len() > TAIL {
            let extra = self.0.len() - TAIL;
            self.0.drain(..extra);
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_word_is_found_after_any_output_however_it_is_cut() {
        let ended = Ended::of(Ending::Eof, true);
        let mut output = b"Content-Length: 2\r\n\r\n{}".repeat(100);
        output.extend_from_slice(&ended.frame());
        for cut in [1, 7, 100, 5000] {
            let mut tail = Tail::default();
            for piece in output.chunks(cut) {
                tail.push(piece);
            }
            assert_eq!(Ended::find_in_tail(tail.bytes()), Some(ended.clone()));
        }
        let mut tail = Tail::default();
        tail.push(b"Content-Length: 2\r\n\r\n{}");
        assert_eq!(Ended::find_in_tail(tail.bytes()), None);
    }
}
