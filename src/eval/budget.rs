//! Budgets (`execution.max_usd`, `exp run --max-usd`): a run stops sending before its spend
//! could pass the cap. The spend counts what the run paid in earlier invocations (a resume) and
//! what its answers so far cost, and every request in flight at its maximum: its body's bytes
//! as input tokens (a token is at least a byte, so that is an upper bound) and `max_tokens` at
//! the output price. So the cap holds whatever the in-flight answers turn out to cost; the run
//! ends `incomplete`, and `--resume --max-usd` with a higher cap continues it. Reused answers
//! (the response cache) cost nothing and never count. A model without pricing costs $0.
use std::sync::Mutex;

use super::config::Pricing;

/// The most a request can cost: its body's bytes as input tokens, `max_tokens` as output.
pub fn max_cost(pricing: Option<Pricing>, body_bytes: usize, max_tokens: u64) -> f64 {
    pricing.map(|p| p.usd(body_bytes as u64, max_tokens)).unwrap_or(0.0)
}

/// The cap and what counts against it, shared by every request task.
#[derive(Debug)]
pub struct Budget {
    cap: f64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Paid: earlier invocations and answers that have arrived.
    spent: f64,
    /// Requests in flight, each at its maximum cost.
    reserved: f64,
    /// A request did not fit: nothing more is sent, so the run stops in a definite state.
    exhausted: bool,
}

impl Budget {
    /// `spent`: what the run paid before this invocation.
    pub fn new(cap: f64, spent: f64) -> Budget {
        Budget { cap, state: Mutex::new(State { spent, ..State::default() }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request about to be sent at its maximum cost `max`; false, and from then on
    /// always false, when that could take the spend past the cap.
    pub fn reserve(&self, max: f64) -> bool {
        let mut s = self.state();
        if s.exhausted || s.spent + s.reserved + max > self.cap {
            s.exhausted = true;
            return false;
        }
        s.reserved += max;
        true
    }

    /// A request reserved at `max` has ended and cost `actual`.
    pub fn settle(&self, max: f64, actual: f64) {
        let mut s = self.state();
        s.reserved = (s.reserved - max).max(0.0);
        s.spent += actual;
    }

    pub fn cap(&self) -> f64 {
        self.cap
    }

    pub fn spent(&self) -> f64 {
        self.state().spent
    }

    /// Some request was held back by the cap.
    pub fn exhausted(&self) -> bool {
        self.state().exhausted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_count_at_their_maximum_and_a_miss_stops_everything() {
        let b = Budget::new(1.0, 0.25);
        assert!(b.reserve(0.5));
        // 0.25 spent + 0.5 in flight + 0.5 would pass 1.0.
        assert!(!b.reserve(0.5));
        // Once stopped, even a request that would fit is held back.
        b.settle(0.5, 0.1);
        assert!(!b.reserve(0.01));
        assert!(b.exhausted());
        assert!((b.spent() - 0.35).abs() < 1e-12);
    }

    #[test]
    fn the_maximum_cost_is_body_bytes_in_and_max_tokens_out() {
        let p: Pricing =
            serde_yaml::from_str("{input_per_mtok: 1.0, output_per_mtok: 2.0}").unwrap();
        assert!((max_cost(Some(p), 1_000_000, 1_000_000) - 3.0).abs() < 1e-12);
        assert_eq!(max_cost(None, 10, 10), 0.0);
    }
}
