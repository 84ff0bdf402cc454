//! Fixed-window counters of failed logins, per client address and per user name.
//! Only failures count: a user who logs in successfully is never slowed down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    windows: moka::sync::Cache<String, Arc<Mutex<(u32, Instant)>>>,
}

impl FailureLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            // Bounded so a flood of distinct names cannot grow memory without limit; entries
            // outlive their window by design (time_to_live) and then vanish.
            windows: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
        }
    }

    /// `Some(retry_after)` when `key` has used up its failures in the current window.
    pub fn blocked(&self, key: &str) -> Option<Duration> {
        let w = self.windows.get(key)?;
        let g = w.lock().ok()?;
        let elapsed = g.1.elapsed();
        (g.0 >= self.limit && elapsed < self.window).then(|| self.window - elapsed)
    }

    pub fn record_failure(&self, key: &str) {
        let w = self.windows.get_with(key.to_string(), || {
            Arc::new(Mutex::new((0, Instant::now())))
        });
        let mut g = match w.lock() {
            Ok(g) => g,
            // A poisoned window only means another thread panicked mid-update; the
            // counter is still a valid number to keep counting from.
            Err(p) => p.into_inner(),
        };
        if g.1.elapsed() >= self.window {
            *g = (0, Instant::now());
        }
        g.0 += 1;
    }

    pub fn same_settings(&self, limit: u32, window: Duration) -> bool {
        self.limit == limit && self.window == window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_until_window_ends() {
        let l = FailureLimiter::new(2, Duration::from_millis(200));
        assert!(l.blocked("ip:1").is_none());
        l.record_failure("ip:1");
        assert!(l.blocked("ip:1").is_none());
        l.record_failure("ip:1");
        assert!(l.blocked("ip:1").is_some());
        assert!(l.blocked("ip:2").is_none());
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.blocked("ip:1").is_none());
    }
}
