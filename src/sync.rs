//! The one way the daemon takes a `std::sync::Mutex`.
//!
//! Every lock here guards plain data (a map insert, a counter, a cached list) and is never
//! held across an `.await`. A handler that panicked while holding one (panics are contained
//! per request) cannot have left that data half-changed in a way later readers could trip
//! over, so a poisoned lock is taken as it is: one bad request must not wedge the others.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
