//! Saying a thing once per run: a flag that lets the first caller through and no later one.
//!
//! A failure that repeats for every image (a store that cannot be written, a shared cache or a
//! coordination table that cannot be reached) is logged the first time only; each such message
//! owns one [`LogOnce`].

use std::sync::atomic::{AtomicBool, Ordering};

/// True for the first [`LogOnce::first`] call, across threads, and false after.
#[derive(Debug, Default)]
pub struct LogOnce(AtomicBool);

impl LogOnce {
    pub const fn new() -> LogOnce {
        LogOnce(AtomicBool::new(false))
    }

    /// Whether this is the first call: the caller logs when it is.
    pub fn first(&self) -> bool {
        !self.0.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_of_many_threads_is_let_through() {
        let once = LogOnce::new();
        let firsts: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| usize::from(once.first())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(firsts, 1);
        assert!(!once.first());
    }
}
