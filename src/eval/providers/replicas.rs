//! The replicas of one model (`base_url` as a list): which one takes the next attempt, and
//! which ones rest.
//!
//! Each attempt goes to the replica with the fewest attempts in flight among those not resting
//! (ties go round the list, so equal replicas get equal shares). A replica that refuses
//! connections or times out `FAILURES_TO_REST` times in a row rests: no attempt goes to it for
//! `backoff_base · 2^(rests in a row − 1)` (at most `backoff_max`); after a rest it gets one
//! probing attempt at a time until one succeeds (attempts sent before a rest that fail after it,
//! a burst timing out together, count once). When every replica has rested `RESTS_TO_DOWN`
//! times in a row, the model is down: `pick` says so and the run stops, incomplete, with every
//! answer so far journaled. A single `base_url` is a list of one.
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::runfiles::results::ReplicaUse;

/// Connection failures or timeouts in a row that rest a replica.
pub const FAILURES_TO_REST: u32 = 3;
/// Rests in a row (each ended by a failed probe) of every replica that make the model down.
pub const RESTS_TO_DOWN: u32 = 5;
/// The shortest rest, whatever `backoff_base_s` says: a rest of 0 would be no rest.
const MIN_REST: Duration = Duration::from_millis(10);

pub struct Replicas {
    list: Vec<Replica>,
    /// Where the next tie-break starts.
    turn: AtomicUsize,
    rest_base: Duration,
    rest_max: Duration,
}

struct Replica {
    base_url: String,
    chat_url: String,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    errors: AtomicU64,
    rests: AtomicU64,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    /// Connection failures or timeouts since the last answer.
    failures: u32,
    /// Rests since the last answer; > 0 means probing (one attempt at a time).
    rests_in_a_row: u32,
    resting_until: Option<Instant>,
    /// Rests so far; a lease remembers it, so attempts sent before a rest (a burst that timed
    /// out together) cannot count as failed probes after it.
    epoch: u64,
    last_error: String,
}

/// What `pick` found.
pub enum Pick<'a> {
    /// Send the attempt here; report how it went with `Lease::finish`.
    Use(Lease<'a>),
    /// Every replica is resting or probing; try again after this long.
    Wait(Duration),
    /// Every replica rested `RESTS_TO_DOWN` times in a row: the message says which and why.
    Down(String),
}

/// One attempt on one replica.
pub struct Lease<'a> {
    replica: &'a Replica,
    epoch: u64,
}

/// How an attempt on a replica went, for its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered (whatever the status).
    Answered,
    /// It answered with an error status: counted as an error, but the replica is up.
    Failed,
    /// Connection refused or timed out.
    Unreachable,
}

impl Replicas {
    /// `base_urls` as configured; rests follow the execution's backoff settings.
    pub fn new(base_urls: &[String], rest_base: Duration, rest_max: Duration) -> Replicas {
        let list = base_urls
            .iter()
            .map(|b| Replica {
                base_url: b.clone(),
                chat_url: format!("{}/chat/completions", b.trim_end_matches('/')),
                in_flight: AtomicUsize::new(0),
                requests: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                rests: AtomicU64::new(0),
                health: Mutex::new(Health::default()),
            })
            .collect();
        Replicas {
            list,
            turn: AtomicUsize::new(0),
            rest_base: rest_base.max(MIN_REST),
            rest_max: rest_max.max(MIN_REST),
        }
    }

    /// Every replica's chat URL, in the config's order.
    pub fn urls(&self) -> Vec<&str> {
        self.list.iter().map(|r| r.chat_url.as_str()).collect()
    }

    /// The replica for the next attempt (see the module doc).
    pub fn pick(&self) -> Pick<'_> {
        let now = Instant::now();
        let n = self.list.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(&Replica, usize, u64)> = None;
        let mut soonest: Option<Duration> = None;
        if let Some(message) = self.down() {
            return Pick::Down(message);
        }
        for i in 0..n {
            let r = &self.list[(start + i) % n];
            let h = r.health();
            if let Some(until) = h.resting_until
                && until > now
            {
                soonest = Some(soonest.map_or(until - now, |s| s.min(until - now)));
                continue;
            }
            let in_flight = r.in_flight.load(Ordering::SeqCst);
            if h.rests_in_a_row > 0 && in_flight > 0 {
                // Probing: one attempt at a time until it answers.
                soonest = Some(soonest.map_or(MIN_REST, |s| s.min(MIN_REST)));
                continue;
            }
            if best.is_none_or(|(_, b, _)| in_flight < b) {
                best = Some((r, in_flight, h.epoch));
            }
        }
        match best {
            Some((r, _, epoch)) => {
                r.in_flight.fetch_add(1, Ordering::SeqCst);
                r.requests.fetch_add(1, Ordering::Relaxed);
                Pick::Use(Lease { replica: r, epoch })
            }
            None => Pick::Wait(soonest.unwrap_or(MIN_REST)),
        }
    }

    /// Why the model is down, when every replica has rested `RESTS_TO_DOWN` times in a row.
    pub fn down(&self) -> Option<String> {
        if !self.list.iter().all(|r| r.health().rests_in_a_row >= RESTS_TO_DOWN) {
            return None;
        }
        let each: Vec<String> = self
            .list
            .iter()
            .map(|r| format!("{} ({})", r.base_url, r.health().last_error))
            .collect();
        let what = if self.list.len() == 1 { "the endpoint is" } else { "every replica is" };
        Some(format!("{what} down after {RESTS_TO_DOWN} rests in a row: {}", each.join("; ")))
    }

    /// Counts per replica, in `base_url` order.
    pub fn report(&self) -> Vec<ReplicaUse> {
        self.list
            .iter()
            .map(|r| ReplicaUse {
                url: r.base_url.clone(),
                requests: r.requests.load(Ordering::Relaxed),
                errors: r.errors.load(Ordering::Relaxed),
                rests: r.rests.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn rest_for(&self, rests_in_a_row: u32) -> Duration {
        let factor = 2f64.powi(rests_in_a_row.saturating_sub(1).min(30) as i32);
        self.rest_base.mul_f64(factor).min(self.rest_max)
    }
}

impl Replica {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Lease<'_> {
    /// The URL to post the attempt to.
    pub fn url(&self) -> &str {
        &self.replica.chat_url
    }

    /// Records how the attempt went; `error` is its message when it failed. Rests the replica
    /// when that makes `FAILURES_TO_REST` unreachable attempts in a row.
    pub fn finish(self, replicas: &Replicas, outcome: Outcome, error: Option<&str>) {
        let r = self.replica;
        if outcome != Outcome::Answered {
            r.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut h = r.health();
        if let Some(e) = error {
            h.last_error = e.to_string();
        }
        if outcome != Outcome::Unreachable {
            h.failures = 0;
            h.rests_in_a_row = 0;
            h.resting_until = None;
            return;
        }
        if self.epoch != h.epoch {
            // Sent before the replica's last rest: that rest already accounts for it.
            return;
        }
        h.failures += 1;
        // A probe that fails rests the replica again at once; otherwise it takes a few.
        if h.rests_in_a_row > 0 || h.failures >= FAILURES_TO_REST {
            h.failures = 0;
            h.rests_in_a_row += 1;
            h.epoch += 1;
            h.resting_until = Some(Instant::now() + replicas.rest_for(h.rests_in_a_row));
            r.rests.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.replica.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: usize) -> Replicas {
        let urls: Vec<String> = (0..n).map(|i| format!("http://r{i}/v1")).collect();
        Replicas::new(&urls, Duration::from_secs(3600), Duration::from_secs(3600))
    }

    fn lease(r: &Replicas) -> Lease<'_> {
        match r.pick() {
            Pick::Use(l) => l,
            Pick::Wait(_) => panic!("waits"),
            Pick::Down(m) => panic!("down: {m}"),
        }
    }

    #[test]
    fn each_attempt_goes_to_the_replica_with_the_fewest_in_flight() {
        let r = replicas(3);
        let held: Vec<Lease<'_>> = (0..6).map(|_| lease(&r)).collect();
        let counts: Vec<u64> = r.report().iter().map(|u| u.requests).collect();
        assert_eq!(counts, [2, 2, 2]);
        assert_eq!(held[0].url(), "http://r0/v1/chat/completions");
        drop(held);
        for _ in 0..30 {
            lease(&r).finish(&r, Outcome::Answered, None);
        }
        let counts: Vec<u64> = r.report().iter().map(|u| u.requests).collect();
        assert_eq!(counts, [12, 12, 12], "ties go round the list");
    }

    #[test]
    fn an_unreachable_replica_rests_and_the_others_take_its_share() {
        let r = replicas(2);
        for _ in 0..FAILURES_TO_REST {
            loop {
                let l = lease(&r);
                if l.url().contains("r1") {
                    l.finish(&r, Outcome::Unreachable, Some("connection failed"));
                    break;
                }
                l.finish(&r, Outcome::Answered, None);
            }
        }
        let before = r.report()[1].requests;
        for _ in 0..10 {
            let l = lease(&r);
            assert!(l.url().contains("r0"), "r1 rests");
            l.finish(&r, Outcome::Answered, None);
        }
        let report = r.report();
        assert_eq!((report[1].requests, report[1].errors, report[1].rests), (before, 3, 1));
    }

    #[test]
    fn a_burst_that_timed_out_together_rests_a_replica_once() {
        let r = replicas(1);
        let burst: Vec<Lease<'_>> = (0..8).map(|_| lease(&r)).collect();
        for l in burst {
            l.finish(&r, Outcome::Unreachable, Some("timed out"));
        }
        assert_eq!(r.report()[0].rests, 1, "one rest, not one per attempt of the burst");
        assert_eq!(r.report()[0].errors, 8);
    }

    #[test]
    fn when_every_replica_rests_pick_waits_and_after_enough_rests_says_down() {
        let urls = vec!["http://a/v1".to_string()];
        let r = Replicas::new(&urls, Duration::ZERO, Duration::ZERO);
        let mut rests = 0;
        loop {
            match r.pick() {
                Pick::Use(l) => {
                    l.finish(&r, Outcome::Unreachable, Some("connection failed: refused"))
                }
                Pick::Wait(d) => {
                    assert!(d <= MIN_REST);
                    std::thread::sleep(d);
                }
                Pick::Down(message) => {
                    assert!(message.contains("the endpoint is down"), "{message}");
                    assert!(
                        message.contains("http://a/v1 (connection failed: refused)"),
                        "{message}"
                    );
                    break;
                }
            }
            rests = r.report()[0].rests;
            assert!(rests <= u64::from(RESTS_TO_DOWN));
        }
        assert_eq!(rests, u64::from(RESTS_TO_DOWN));
        assert_eq!(r.report()[0].requests, u64::from(FAILURES_TO_REST + RESTS_TO_DOWN - 1));
    }
}
