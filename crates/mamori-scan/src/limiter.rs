//! The request budget and rate limiter every connection and request of a scan goes through.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A fixed number of requests, at most `rate` per second, within a time budget.
#[derive(Debug)]
pub struct Limiter {
    max_requests: u32,
    interval: Duration,
    started: Instant,
    max_duration: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    spent: u32,
    next: Instant,
}

impl Limiter {
    /// `rate` requests per second (at least 0.01).
    pub fn new(max_requests: u32, rate: f64, max_duration: Duration) -> Limiter {
        let now = Instant::now();
        Limiter {
            max_requests,
            interval: Duration::from_secs_f64(1.0 / rate.max(0.01)),
            started: now,
            max_duration,
            state: Mutex::new(State {
                spent: 0,
                next: now,
            }),
        }
    }

    /// Takes one request from the budget and waits for its slot; fails, sending nothing, once
    /// the budget or the time is spent.
    pub fn acquire(&self) -> Result<()> {
        let slot = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.spent >= self.max_requests {
                return Err(Error::BudgetSpent(self.max_requests));
            }
            let now = Instant::now();
            let slot = s.next.max(now);
            if slot.duration_since(self.started) >= self.max_duration {
                return Err(Error::TimeSpent(self.max_duration.as_secs()));
            }
            s.spent += 1;
            s.next = slot + self.interval;
            slot
        };
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
        Ok(())
    }

    pub fn spent(&self) -> u32 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).spent
    }

    pub fn max_requests(&self) -> u32 {
        self.max_requests
    }

    /// Time left before the time budget is spent.
    pub fn time_left(&self) -> Duration {
        self.max_duration.saturating_sub(self.started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_never_exceeded() {
        let l = Limiter::new(5, 1000.0, Duration::from_secs(60));
        for _ in 0..5 {
            l.acquire().unwrap();
        }
        assert!(matches!(l.acquire(), Err(Error::BudgetSpent(5))));
        assert_eq!(l.spent(), 5);
    }

    #[test]
    fn slots_are_spaced_by_the_rate() {
        // 20/s: four requests need at least three intervals (150 ms); no upper bound is
        // asserted (a loaded machine may be slower, never faster).
        let l = Limiter::new(10, 20.0, Duration::from_secs(60));
        let t = Instant::now();
        for _ in 0..4 {
            l.acquire().unwrap();
        }
        assert!(
            t.elapsed() >= Duration::from_millis(149),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn time_budget_stops_requests() {
        let l = Limiter::new(100, 1000.0, Duration::ZERO);
        assert!(matches!(l.acquire(), Err(Error::TimeSpent(0))));
        assert_eq!(l.spent(), 0);
    }
}
