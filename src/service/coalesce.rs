//! Identical completions in flight share one upstream request.
//!
//! Two editor windows on one file, or an editor and a script, often ask for the very same
//! completion at once: same gateway, credential, model, prompt and options. The first
//! becomes the leader and is sent; the others follow it, waiting for its outcome instead
//! of spending the gateway's rate budget (and the user's money) twice. A leader that is
//! cancelled (its user typed on) tells nothing: its followers then go on by themselves,
//! the first of them leading the rest.
//!
//! The table holds one entry per leader in flight and the lock guards only the map, never
//! an `.await`.

use std::collections::HashMap;
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::lock;
use crate::error::Error;
use crate::gateway::UpstreamRequest;
use crate::protocol::CompleteResult;

/// What a leader tells its followers: the cleaned completion and the gateway's headers,
/// or the error it ended with.
pub(super) type Outcome = Result<(CompleteResult, Map<String, Value>), Error>;

type Told = watch::Receiver<Option<Arc<Outcome>>>;

/// Which completion a request is: a 128-bit hash of everything sent upstream except
/// whether it streams (a streamed and a whole request get the same text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct CompletionKey(u64, u64);

impl CompletionKey {
    /// Serializes the request once, into two independently seeded hashers.
    pub(super) fn of(request: &UpstreamRequest) -> CompletionKey {
        static SEEDS: OnceLock<[RandomState; 2]> = OnceLock::new();
        let [a, b] = SEEDS.get_or_init(Default::default);
        let mut hasher = TwoHashers(a.build_hasher(), b.build_hasher());
        request.url.hash(&mut hasher);
        request.budget.hash(&mut hasher);
        for (name, value) in &request.headers {
            name.as_str().hash(&mut hasher);
            value.as_bytes().hash(&mut hasher);
        }
        if let Value::Object(body) = &request.body {
            for (name, value) in body {
                if name != "stream" && name != "stream_options" {
                    name.hash(&mut hasher);
                    // Writing into a hasher cannot fail.
                    let _ = serde_json::to_writer(&mut hasher, value);
                }
            }
        }
        CompletionKey(hasher.0.finish(), hasher.1.finish())
    }
}

/// Two hashers fed the same bytes: 128 bits of key from one pass over the request. Also
/// a writer, so serialized JSON goes in without building the string.
struct TwoHashers(DefaultHasher, DefaultHasher);

impl Hasher for TwoHashers {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }

    /// Only the first half; [`CompletionKey::of`] takes both.
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl std::io::Write for TwoHashers {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Hasher::write(self, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The leaders in flight, shared by every client of the daemon.
#[derive(Default)]
pub(super) struct InFlightCompletions {
    leaders: Mutex<HashMap<CompletionKey, Told>>,
}

/// A request's part: send it, or wait for the identical one already sent.
pub(super) enum Role {
    Lead(Lead),
    Follow(Follower),
}

impl InFlightCompletions {
    pub(super) fn join_or_lead(self: &Arc<Self>, key: CompletionKey) -> Role {
        let mut leaders = lock(&self.leaders);
        if let Some(told) = leaders.get(&key) {
            return Role::Follow(Follower(told.clone()));
        }
        let (tell, told) = watch::channel(None);
        leaders.insert(key, told);
        Role::Lead(Lead {
            key,
            table: self.clone(),
            tell,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.leaders).len()
    }
}

/// The request that is sent; its followers hear how it ended. Dropped without telling
/// (cancelled), it lets them go on by themselves.
pub(super) struct Lead {
    key: CompletionKey,
    table: Arc<InFlightCompletions>,
    tell: watch::Sender<Option<Arc<Outcome>>>,
}

impl Lead {
    pub(super) fn tell(self, outcome: Outcome) {
        self.tell.send_replace(Some(Arc::new(outcome)));
    }
}

/// Passes `result` on; a failure is told to the followers of `lead` first (once: the lead
/// is taken), so they get the same error rather than sending again.
pub(super) fn tell_failure<T>(
    lead: &mut Option<Lead>,
    result: Result<T, Error>,
) -> Result<T, Error> {
    if let Err(err) = &result {
        if let Some(lead) = lead.take() {
            lead.tell(Err(err.clone()));
        }
    }
    result
}

impl Drop for Lead {
    fn drop(&mut self) {
        lock(&self.table.leaders).remove(&self.key);
    }
}

/// A request waiting for an identical one in flight.
pub(super) struct Follower(Told);

impl Follower {
    /// The leader's outcome, or `None` when it was cancelled before it had one.
    pub(super) async fn outcome(mut self) -> Option<Arc<Outcome>> {
        let told = self.0.wait_for(Option::is_some).await.ok()?;
        told.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(text: &str) -> Outcome {
        Ok((
            CompleteResult {
                text: text.into(),
                finish_reason: None,
                model: "m".into(),
                usage: None,
            },
            Map::new(),
        ))
    }

    fn key(n: u64) -> CompletionKey {
        CompletionKey(n, n)
    }

    #[tokio::test]
    async fn followers_hear_the_leader_and_the_table_empties() {
        let table = Arc::new(InFlightCompletions::default());
        let Role::Lead(lead) = table.join_or_lead(key(1)) else {
            panic!("the first leads")
        };
        let Role::Follow(follower) = table.join_or_lead(key(1)) else {
            panic!("the second follows")
        };
        assert!(matches!(table.join_or_lead(key(2)), Role::Lead(_)));
        lead.tell(result("x"));
        let outcome = follower.outcome().await.expect("told");
        assert_eq!(outcome.as_ref().as_ref().unwrap().0.text, "x");
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_leader_frees_its_followers() {
        let table = Arc::new(InFlightCompletions::default());
        let lead = table.join_or_lead(key(1));
        let Role::Follow(follower) = table.join_or_lead(key(1)) else {
            panic!("follows")
        };
        drop(lead);
        assert!(follower.outcome().await.is_none());
        assert!(matches!(table.join_or_lead(key(1)), Role::Lead(_)));
    }

    #[tokio::test]
    async fn only_a_failure_is_told_and_it_ends_the_lead() {
        let table = Arc::new(InFlightCompletions::default());
        let Role::Lead(lead) = table.join_or_lead(key(1)) else {
            panic!("leads")
        };
        let Role::Follow(follower) = table.join_or_lead(key(1)) else {
            panic!("follows")
        };
        let mut lead = Some(lead);
        assert!(tell_failure(&mut lead, Ok::<_, Error>(())).is_ok());
        assert!(lead.is_some(), "a success keeps the lead");
        let failed = Error::internal("upstream broke");
        assert!(tell_failure(&mut lead, Err::<(), _>(failed.clone())).is_err());
        assert!(lead.is_none());
        let outcome = follower.outcome().await.expect("told");
        assert_eq!(outcome.as_ref().as_ref().unwrap_err(), &failed);
    }
}
