//! A few recent results of a pure function that costs more than looking them up.
//!
//! A daemon resolves the same handful of URLs on every request (the base URL checked, the
//! chat URL parsed): parsing one is thousands of instructions, a lookup among a few a
//! hundred. Bounded: the oldest result goes when a new one comes.

use std::collections::VecDeque;
use std::sync::Mutex;

pub struct Recent<K, V> {
    entries: Mutex<VecDeque<(K, V)>>,
    capacity: usize,
}

impl<K, V: Clone> Recent<K, V> {
    pub const fn new(capacity: usize) -> Self {
        Recent {
            entries: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    /// The remembered value for the key `is_key` recognizes, else `compute()`, remembered
    /// under `key()`. `compute` runs outside the lock.
    pub fn get_or(
        &self,
        is_key: impl Fn(&K) -> bool,
        key: impl FnOnce() -> K,
        compute: impl FnOnce() -> V,
    ) -> V {
        let lock = || crate::sync::lock(&self.entries);
        if let Some((_, value)) = lock().iter().find(|(k, _)| is_key(k)) {
            return value.clone();
        }
        let value = compute();
        let mut entries = lock();
        if entries.len() >= self.capacity.max(1) {
            entries.pop_front();
        }
        entries.push_back((key(), value.clone()));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_few_and_forgets_the_oldest() {
        let memo: Recent<String, usize> = Recent::new(2);
        let calls = std::cell::Cell::new(0);
        let len = |s: &str| {
            memo.get_or(
                |k| k == s,
                || s.to_string(),
                || {
                    calls.set(calls.get() + 1);
                    s.len()
                },
            )
        };
        assert_eq!(len("a"), 1);
        assert_eq!(len("bb"), 2);
        assert_eq!(len("a"), 1);
        assert_eq!(calls.get(), 2);
        assert_eq!(len("ccc"), 3); // "a" goes
        assert_eq!(len("a"), 1);
        assert_eq!(calls.get(), 4);
    }
}
