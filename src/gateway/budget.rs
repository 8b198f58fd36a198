//! One rate budget per upstream, shared by every client and front end of the daemon.
//!
//! A gateway limits requests (its own rate limit, Unified Billing's 200 a minute) and
//! answers 429 past it. Only the daemon sees the whole load of every editor and script, so
//! it keeps one budget per upstream (base URL, gateway, endpoint and credential) and spends
//! it well:
//! - a 429 starts a **cool-down** for that budget: nothing more is sent to it until the
//!   `Retry-After` (else the backoff's delay) has passed. Interactive requests (chat, code
//!   actions) wait within their own deadline; completions are refused at once with
//!   `rate_limited` and `retry_after_ms`, since a stale completion is worthless;
//! - a **token bucket** sends no more than the `requests_per_minute` setting, and keeps a
//!   fifth of it for interactive requests: completions are shed first;
//! - the bucket **learns** from a 429 that did not say how long to wait: it halves the rate it allows (from what was sent in the last
//!   minute, at least 30 a minute), and the rate doubles for each minute without a 429 (and
//!   each success gives one request a minute back), so a user who never set the limit still
//!   converges under it and a passing limit is soon forgotten.
//!
//! The lock guards plain numbers and is never held across an `.await`; a waiting request
//! sleeps until a computed instant, never on a periodic tick.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind};
use crate::sync::lock;

/// Who is waiting: interactive requests wait for the budget, completions never do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// `cfgate/chat`, code actions: a person waits for the answer.
    Interactive,
    /// `cfgate/complete`, inline completion: worthless once stale.
    Completion,
}

/// Where a request waiting for its budget says how long it will wait (a streamed chat
/// shows it to the user); only the latest wait counts, so it is a `watch`.
pub type WaitReports = watch::Sender<Option<Duration>>;

/// Which budget a request spends: a hash of the upstream and the credential (never the
/// credential itself), and a label a person can read in `cfgate/status`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    id: u64,
    pub label: String,
}

impl BudgetKey {
    /// `label` names the upstream (URL and gateway); `secrets` are hashed in with a key
    /// drawn once per process, so the key says nothing about them.
    pub fn new(label: String, secrets: &[&str]) -> BudgetKey {
        static SEED: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let mut hasher = SEED.get_or_init(Default::default).build_hasher();
        label.hash(&mut hasher);
        for secret in secrets {
            secret.hash(&mut hasher);
        }
        BudgetKey {
            id: hasher.finish(),
            label,
        }
    }
}

/// Share of the bucket kept for interactive requests.
const RESERVE: f64 = 0.2;
/// A learned limit is dropped once it has grown back past this (the upstream's limit, if
/// any, is higher than anything an editor sends).
const FORGET_LEARNED_ABOVE: f64 = 600.0;
/// A learned limit never goes below one request every two seconds.
const MIN_LEARNED_RPM: f64 = 30.0;
/// Cool-down after a 429 that said nothing of how long to wait.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Budget {
    cool_down_until: Option<Instant>,
    /// Requests a minute the bucket allows, learned from 429s (none until the first), and
    /// since when: it doubles for each minute without a 429.
    learned_rpm: Option<f64>,
    learned_at: Option<Instant>,
    /// Tokens in the bucket, and when it was last filled.
    tokens: Option<(f64, Instant)>,
    /// When each request of the last minute was sent.
    sent: VecDeque<Instant>,
}

impl Budget {
    fn limit(&self, configured: Option<u32>) -> Option<f64> {
        let learned = match (self.learned_rpm, self.learned_at) {
            (Some(rpm), Some(at)) => {
                let minutes = Instant::now().saturating_duration_since(at).as_secs() / 60;
                let grown = rpm * 2f64.powi(minutes.min(16) as i32);
                (grown < FORGET_LEARNED_ABOVE).then_some(grown)
            }
            _ => None,
        };
        match (configured.map(f64::from), learned) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.sent.pop_front();
        }
    }

    /// Takes a token for `priority`, or says how long until one is free for it.
    fn take(
        &mut self,
        limit: Option<f64>,
        priority: Priority,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(limit) = limit else {
            return Ok(());
        };
        let limit = limit.max(1.0);
        let per_sec = limit / 60.0;
        let (tokens, filled) = self.tokens.unwrap_or((limit, now));
        let tokens = (tokens + now.duration_since(filled).as_secs_f64() * per_sec).min(limit);
        let floor = match priority {
            Priority::Interactive => 0.0,
            Priority::Completion => limit * RESERVE,
        };
        if tokens - 1.0 >= floor {
            self.tokens = Some((tokens - 1.0, now));
            Ok(())
        } else {
            self.tokens = Some((tokens, now));
            Err(Duration::from_secs_f64((floor + 1.0 - tokens) / per_sec))
        }
    }
}

/// Every budget of the daemon.
#[derive(Clone)]
pub struct Budgets {
    inner: Arc<Mutex<HashMap<BudgetKey, Budget>>>,
    /// `true` while any budget cools down, for `cfgate/didChangeStatus`.
    cooling: watch::Sender<bool>,
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets {
            inner: Arc::default(),
            cooling: watch::Sender::new(false),
        }
    }
}

/// One budget as `cfgate/status` shows it.
#[derive(Clone, Debug)]
pub struct BudgetView {
    pub label: String,
    pub limit: Option<u32>,
    pub learned: bool,
    pub used_last_minute: u32,
    pub cool_down_ms: Option<u64>,
}

impl Budgets {
    /// Waits until `key`'s budget lets a request of `priority` go, or refuses it: at once
    /// for a completion, at `deadline` for an interactive request.
    pub async fn admit(
        &self,
        key: &BudgetKey,
        priority: Priority,
        configured: Option<u32>,
        deadline: Instant,
        waits: Option<&WaitReports>,
    ) -> Result<(), Error> {
        loop {
            let now = Instant::now();
            let wait = {
                let mut budgets = lock(&self.inner);
                let budget = budgets.entry(key.clone()).or_default();
                budget.forget_old(now);
                match budget.cool_down_until.filter(|until| *until > now) {
                    Some(until) => Err((until - now, true)),
                    None => {
                        let limit = budget.limit(configured);
                        match budget.take(limit, priority, now) {
                            Ok(()) => {
                                budget.sent.push_back(now);
                                Ok(())
                            }
                            Err(wait) => Err((wait, false)),
                        }
                    }
                }
            };
            let (wait, cooling) = match wait {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            if priority == Priority::Completion || now + wait > deadline {
                return Err(refused(wait, cooling, priority));
            }
            if let Some(waits) = waits {
                waits.send_replace(Some(wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A 429 came: the budget cools down for `wait`. When the gateway did not say how
    /// long to wait (`learn`), the budget also learns a lower rate: a limit that says when
    /// to come back is met by waiting that long, one that does not by sending less.
    pub fn limited(&self, key: &BudgetKey, wait: Duration, learn: bool) {
        let now = Instant::now();
        let until = now + wait;
        {
            let mut budgets = lock(&self.inner);
            let budget = budgets.entry(key.clone()).or_default();
            budget.forget_old(now);
            budget.cool_down_until = Some(budget.cool_down_until.map_or(until, |u| u.max(until)));
            if learn {
                let sent = budget.sent.len() as f64;
                let rate = budget.learned_rpm.map_or(sent, |r| r.min(sent));
                let learned = (rate / 2.0).max(MIN_LEARNED_RPM);
                budget.learned_rpm = Some(learned);
                budget.learned_at = Some(until);
                // A fifth of the learned rate may go when the cool-down ends; the rest paced.
                budget.tokens = Some(((learned * RESERVE).max(1.0), until));
            }
        }
        self.cooling.send_replace(true);
        // One deadline, not a tick: clears the flag when no budget cools down any more.
        let budgets = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep_until(until).await;
                let now = Instant::now();
                let any = lock(&budgets.inner)
                    .values()
                    .any(|b| b.cool_down_until.is_some_and(|u| u > now));
                if !any {
                    budgets.cooling.send_replace(false);
                }
            });
        }
    }

    /// A request went through: a learned limit grows back by one request a minute.
    pub fn succeeded(&self, key: &BudgetKey) {
        let mut budgets = lock(&self.inner);
        if let Some(budget) = budgets.get_mut(key) {
            if let Some(rpm) = budget.learned_rpm {
                budget.learned_rpm = (rpm + 1.0 < FORGET_LEARNED_ABOVE).then_some(rpm + 1.0);
            }
        }
    }

    /// Whether any budget cools down now, and every change of that.
    pub fn cooling(&self) -> watch::Receiver<bool> {
        self.cooling.subscribe()
    }

    pub fn views(&self, configured: Option<u32>) -> Vec<BudgetView> {
        let now = Instant::now();
        let mut budgets = lock(&self.inner);
        let mut views: Vec<BudgetView> = budgets
            .iter_mut()
            .map(|(key, budget)| {
                budget.forget_old(now);
                BudgetView {
                    label: key.label.clone(),
                    limit: budget.limit(configured).map(|l| l.round() as u32),
                    learned: budget.learned_rpm.is_some(),
                    used_last_minute: budget.sent.len() as u32,
                    cool_down_ms: budget
                        .cool_down_until
                        .filter(|u| *u > now)
                        .map(|u| (u - now).as_millis() as u64),
                }
            })
            .collect();
        views.sort_by(|a, b| a.label.cmp(&b.label));
        views
    }
}

fn refused(wait: Duration, cooling: bool, priority: Priority) -> Error {
    let why = if cooling {
        "the gateway answered 429 and cfgate is letting it cool down"
    } else {
        "the requests_per_minute budget is spent for now"
    };
    let what = match priority {
        Priority::Completion => "a completion is not queued",
        Priority::Interactive => "the wait would pass the request's deadline",
    };
    let mut err = Error::new(
        ErrorKind::RateLimited,
        format!(
            "rate limited: {why}; {what} (free again in {:.1} s)",
            wait.as_secs_f64()
        ),
    )
    .with_hint("every client of this daemon shares the gateway's rate budget; chat goes first, completions are shed; `cfgate status` shows the budget");
    err.retry_after = Some(wait);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> BudgetKey {
        BudgetKey::new("gw".into(), &["token"])
    }

    #[tokio::test(start_paused = true)]
    async fn completions_are_shed_first_and_chat_keeps_a_reserve() {
        let budgets = Budgets::default();
        let far = Instant::now() + Duration::from_secs(600);
        // 10 a minute: completions may take the bucket down to its reserve of 2.
        let mut completions = 0;
        while budgets
            .admit(&key(), Priority::Completion, Some(10), far, None)
            .await
            .is_ok()
        {
            completions += 1;
        }
        assert_eq!(completions, 8);
        let err = budgets
            .admit(&key(), Priority::Completion, Some(10), far, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert!(err.retry_after.is_some());
        for _ in 0..2 {
            budgets
                .admit(&key(), Priority::Interactive, Some(10), far, None)
                .await
                .expect("the reserve is chat's");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_cools_down_completions_refused_chat_waits() {
        let budgets = Budgets::default();
        let far = Instant::now() + Duration::from_secs(600);
        budgets.limited(&key(), Duration::from_secs(2), true);
        assert!(*budgets.cooling().borrow());
        let err = budgets
            .admit(&key(), Priority::Completion, None, far, None)
            .await
            .unwrap_err();
        assert!(err.retry_after.unwrap() <= Duration::from_secs(2));
        let before = Instant::now();
        budgets
            .admit(&key(), Priority::Interactive, None, far, None)
            .await
            .unwrap();
        assert!(Instant::now() - before >= Duration::from_secs(2) - Duration::from_millis(1));
        // Not past a request's own deadline.
        budgets.limited(&key(), Duration::from_secs(30), false);
        let soon = Instant::now() + Duration::from_secs(1);
        assert!(
            budgets
                .admit(&key(), Priority::Interactive, None, soon, None)
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_429_without_retry_after_teaches_a_rate() {
        let budgets = Budgets::default();
        budgets.limited(&key(), Duration::ZERO, false);
        assert_eq!(budgets.views(None)[0].limit, None);
        budgets.limited(&key(), Duration::from_secs(1), true);
        let view = &budgets.views(None)[0];
        assert!(view.learned && view.limit == Some(30), "{view:?}");
    }

    #[test]
    fn keys_tell_credentials_apart_without_holding_them() {
        let a = BudgetKey::new("gw".into(), &["one"]);
        let b = BudgetKey::new("gw".into(), &["two"]);
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains("one"));
    }
}
