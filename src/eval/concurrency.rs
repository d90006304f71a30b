//! How many requests go to one model at once: a fixed number (`max_connections: N`), or found
//! while the run goes (`max_connections: auto`) by AIMD, as TCP finds a window: every answer
//! that comes back without 429/503 adds `1/limit` (about one more slot per round of answers),
//! every 429/503 halves the limit, never below 1 nor above the ceiling. Only a request sent
//! since the last halving can halve it again, so a burst of rejections that were all in flight
//! together halves it once, not once each.
//!
//! One permit is one attempt in flight: retries wait their backoff without holding a slot, so
//! the limit is what the endpoint actually sees.
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::runfiles::results::ConcurrencyUse;

/// What an attempt's answer says about the endpoint's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// An answer (or an error that says nothing about load): room for more.
    Fine,
    /// 429 or 503: too many.
    Overloaded,
    /// No answer (refused, timed out): says nothing about load either way.
    Silent,
}

pub struct Limiter {
    auto: bool,
    ceiling: usize,
    state: Mutex<State>,
    freed: Notify,
}

struct State {
    /// The limit with its fraction (additive increase adds 1/limit).
    window: f64,
    in_flight: usize,
    /// Halvings so far; a permit remembers the count when it was taken.
    decreases: u64,
    peak: usize,
    in_flight_peak: usize,
}

impl State {
    fn limit(&self) -> usize {
        self.window as usize
    }
}

/// One attempt's slot; `finish` reports how it went (dropping it unreported counts as silent).
pub struct Permit<'a> {
    limiter: &'a Limiter,
    taken_at: u64,
    signal: Signal,
}

impl Limiter {
    pub fn fixed(n: usize) -> Limiter {
        Limiter::new(false, n.max(1), n.max(1))
    }

    /// Starts at `start` (at most `ceiling`) and moves by AIMD.
    pub fn auto(start: usize, ceiling: usize) -> Limiter {
        let ceiling = ceiling.max(1);
        Limiter::new(true, start.clamp(1, ceiling), ceiling)
    }

    fn new(auto: bool, start: usize, ceiling: usize) -> Limiter {
        Limiter {
            auto,
            ceiling,
            state: Mutex::new(State {
                window: start as f64,
                in_flight: 0,
                decreases: 0,
                peak: start,
                in_flight_peak: 0,
            }),
            freed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a free slot.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            // Registered before the check, so a slot freed between the check and the wait
            // still wakes this waiter.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.state();
                if s.in_flight < s.limit() {
                    s.in_flight += 1;
                    s.in_flight_peak = s.in_flight_peak.max(s.in_flight);
                    return Permit { limiter: self, taken_at: s.decreases, signal: Signal::Silent };
                }
            }
            freed.await;
        }
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.state().limit()
    }

    pub fn is_auto(&self) -> bool {
        self.auto
    }

    pub fn report(&self) -> ConcurrencyUse {
        let s = self.state();
        ConcurrencyUse {
            mode: if self.auto { "auto" } else { "fixed" }.into(),
            limit: s.limit(),
            peak: s.peak,
            ceiling: self.ceiling,
            decreases: s.decreases,
            in_flight_peak: s.in_flight_peak,
        }
    }

    fn release(&self, taken_at: u64, signal: Signal) {
        {
            let mut s = self.state();
            s.in_flight -= 1;
            if self.auto {
                match signal {
                    Signal::Fine => {
                        s.window = (s.window + 1.0 / s.window).min(self.ceiling as f64);
                    }
                    Signal::Overloaded if taken_at == s.decreases => {
                        s.window = (s.window / 2.0).max(1.0);
                        s.decreases += 1;
                    }
                    Signal::Overloaded | Signal::Silent => {}
                }
                s.peak = s.peak.max(s.limit());
            }
        }
        self.freed.notify_waiters();
    }
}

impl Permit<'_> {
    pub fn finish(mut self, signal: Signal) {
        self.signal = signal;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limiter.release(self.taken_at, self.signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn answers_grow_the_limit_by_about_one_per_round_up_to_the_ceiling() {
        rt().block_on(async {
            let l = Limiter::auto(4, 6);
            for _ in 0..4 {
                l.acquire().await.finish(Signal::Fine);
            }
            assert_eq!(l.limit(), 4, "4 + 4 × 1/4.x stays below 5");
            for _ in 0..2 {
                l.acquire().await.finish(Signal::Fine);
            }
            assert_eq!(l.limit(), 5);
            for _ in 0..100 {
                l.acquire().await.finish(Signal::Fine);
            }
            assert_eq!((l.limit(), l.report().peak), (6, 6));
        });
    }

    #[test]
    fn a_burst_of_rejections_halves_the_limit_once() {
        rt().block_on(async {
            let l = Limiter::auto(8, 100);
            let mut permits = Vec::new();
            for _ in 0..8 {
                permits.push(l.acquire().await);
            }
            for p in permits {
                p.finish(Signal::Overloaded);
            }
            assert_eq!(l.limit(), 4);
            l.acquire().await.finish(Signal::Overloaded);
            assert_eq!(l.limit(), 2, "a request sent after the halving halves again");
            for _ in 0..5 {
                l.acquire().await.finish(Signal::Overloaded);
            }
            assert_eq!(l.limit(), 1, "never below one");
            let r = l.report();
            assert_eq!((r.decreases, r.peak, r.in_flight_peak, r.mode.as_str()), (7, 8, 8, "auto"));
        });
    }

    #[test]
    fn a_fixed_limit_never_moves_and_bounds_what_is_in_flight() {
        rt().block_on(async {
            let l = Limiter::fixed(2);
            let a = l.acquire().await;
            let _b = l.acquire().await;
            let third = tokio::time::timeout(std::time::Duration::from_millis(20), l.acquire());
            assert!(third.await.is_err(), "a third waits while two are in flight");
            a.finish(Signal::Overloaded);
            l.acquire().await.finish(Signal::Fine);
            assert_eq!((l.limit(), l.report().decreases), (2, 0));
        });
    }
}
