//! The circuit breaker of a client or of one of its methods (PROTOCOL §10.2):
//! after repeated transient failures, calls fail at once without touching
//! the network until a probe shows the service is back.
//!
//! ```
//! use std::time::Duration;
//! use nats_micro_runtime::breaker::{BreakerState, CircuitBreaker};
//!
//! let breaker = CircuitBreaker::new().consecutive_failures(3).open_interval(Duration::from_secs(2));
//! assert_eq!(breaker.state(), BreakerState::Closed);
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Where a [`CircuitBreaker`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls fail at once with `UNAVAILABLE` ("circuit open").
    Open,
    /// After the open interval: a few probe calls pass, the rest fail at once.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

type StateCallback = Arc<dyn Fn(BreakerState, BreakerState) + Send + Sync>;

/// A circuit breaker, shared by the calls it guards (clones share state).
///
/// Defaults (PROTOCOL §10.2): opens after 5 consecutive transient failures,
/// or when at least half of the last 20 calls failed once 10 are in the
/// window; stays open 5 s; then lets 1 probe through. Only transient
/// failures count (no responders, connection loss, `UNAVAILABLE`,
/// `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`); every other reply, an error
/// such as `NOT_FOUND` included, is a success.
///
/// ```
/// use nats_micro_runtime::breaker::{BreakerState, CircuitBreaker};
///
/// let breaker = CircuitBreaker::new()
///     .consecutive_failures(2)
///     .on_state_change(|from, to| println!("breaker {from} -> {to}"));
/// for _ in 0..2 {
///     let permit = breaker.try_acquire().expect("closed");
///     breaker.record(permit, true); // a transient failure
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.try_acquire().is_none(), "fails fast while open");
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    settings: Settings,
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Settings {
    consecutive: u32,
    ratio: f64,
    window: usize,
    min_calls: usize,
    open_interval: Duration,
    probes: u32,
    on_change: Option<StateCallback>,
    name: Arc<str>,
}

struct Shared {
    state: Mutex<Machine>,
}

struct Machine {
    state: BreakerState,
    /// Bumped at every state change, so that results of calls admitted in
    /// an earlier state are ignored.
    generation: u64,
    consecutive: u32,
    /// Outcomes of the last calls in the closed state, `true` for a failure.
    window: VecDeque<bool>,
    failures_in_window: usize,
    opened_at: Instant,
    probes_admitted: u32,
    probes_succeeded: u32,
}

/// Admission of one call by a [`CircuitBreaker`]; hand it back with the
/// call's outcome to [`CircuitBreaker::record`]. A permit dropped without
/// an outcome (the call was abandoned) frees its half-open probe slot.
#[must_use = "a permit's outcome must be recorded"]
pub struct Permit {
    shared: Arc<Shared>,
    generation: u64,
    settled: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut machine = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        if machine.generation == self.generation && machine.state == BreakerState::HalfOpen {
            machine.probes_admitted = machine.probes_admitted.saturating_sub(1);
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.settings.name)
            .field("state", &self.state())
            .field("consecutive_failures", &self.settings.consecutive)
            .field("failure_ratio", &self.settings.ratio)
            .field("window", &self.settings.window)
            .field("min_calls", &self.settings.min_calls)
            .field("open_interval", &self.settings.open_interval)
            .field("probes", &self.settings.probes)
            .finish()
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new()
    }
}

impl CircuitBreaker {
    /// A closed breaker with the default thresholds.
    pub fn new() -> Self {
        CircuitBreaker {
            settings: Settings {
                consecutive: 5,
                ratio: 0.5,
                window: 20,
                min_calls: 10,
                open_interval: Duration::from_secs(5),
                probes: 1,
                on_change: None,
                name: Arc::from(""),
            },
            shared: Arc::new(Shared {
                state: Mutex::new(Machine {
                    state: BreakerState::Closed,
                    generation: 0,
                    consecutive: 0,
                    window: VecDeque::new(),
                    failures_in_window: 0,
                    opened_at: Instant::now(),
                    probes_admitted: 0,
                    probes_succeeded: 0,
                }),
            }),
        }
    }

    /// Consecutive transient failures that open the breaker (0: never by count).
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.settings.consecutive = failures;
        self
    }

    /// The failure ratio over the last `window` calls that opens the
    /// breaker, once at least `min_calls` calls are in the window.
    pub fn failure_ratio(mut self, ratio: f64, window: usize, min_calls: usize) -> Self {
        self.settings.ratio = if ratio.is_finite() { ratio.clamp(0.0, 1.0) } else { 1.0 };
        self.settings.window = window.max(1);
        self.settings.min_calls = min_calls.clamp(1, self.settings.window);
        self
    }

    /// How long the breaker stays open before letting probes through.
    pub fn open_interval(mut self, interval: Duration) -> Self {
        self.settings.open_interval = interval;
        self
    }

    /// Probe calls let through in the half-open state (at least 1); all must
    /// succeed to close the breaker.
    pub fn probes(mut self, probes: u32) -> Self {
        self.settings.probes = probes.max(1);
        self
    }

    /// Called with the old and the new state at every change (each change is
    /// also logged: warn when opening, info otherwise).
    pub fn on_state_change(mut self, callback: impl Fn(BreakerState, BreakerState) + Send + Sync + 'static) -> Self {
        self.settings.on_change = Some(Arc::new(callback));
        self
    }

    /// A name for the log lines (the client sets the service or method).
    pub fn named(mut self, name: &str) -> Self {
        self.settings.name = Arc::from(name);
        self
    }

    /// The state now (an open breaker whose interval has passed reports
    /// half-open only once a call asks to pass).
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks to let one call through: `None` while open (or half-open with
    /// every probe taken).
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut machine = self.lock();
        let mut change = None;
        if machine.state == BreakerState::Open && machine.opened_at.elapsed() >= self.settings.open_interval {
            change = Some(self.transition(&mut machine, BreakerState::HalfOpen));
        }
        let permit = match machine.state {
            BreakerState::Closed => Some(self.permit(machine.generation)),
            BreakerState::Open => None,
            BreakerState::HalfOpen if machine.probes_admitted < self.settings.probes => {
                machine.probes_admitted += 1;
                Some(self.permit(machine.generation))
            }
            BreakerState::HalfOpen => None,
        };
        drop(machine);
        self.announce(change);
        permit
    }

    fn permit(&self, generation: u64) -> Permit {
        Permit { shared: self.shared.clone(), generation, settled: false }
    }

    /// Records the outcome of an admitted call: `transient_failure` is true
    /// when it failed in a way the breaker counts.
    pub fn record(&self, mut permit: Permit, transient_failure: bool) {
        permit.settled = true;
        let mut machine = self.lock();
        if permit.generation != machine.generation {
            return; // admitted before the last change: no longer relevant
        }
        let change = match machine.state {
            BreakerState::Closed => {
                if transient_failure {
                    machine.consecutive += 1;
                } else {
                    machine.consecutive = 0;
                }
                machine.window.push_back(transient_failure);
                machine.failures_in_window += usize::from(transient_failure);
                if machine.window.len() > self.settings.window && machine.window.pop_front() == Some(true) {
                    machine.failures_in_window -= 1;
                }
                let by_count = self.settings.consecutive > 0 && machine.consecutive >= self.settings.consecutive;
                let by_ratio = machine.window.len() >= self.settings.min_calls
                    && machine.failures_in_window as f64 >= self.settings.ratio * machine.window.len() as f64;
                (by_count || by_ratio).then(|| self.transition(&mut machine, BreakerState::Open))
            }
            BreakerState::HalfOpen if transient_failure => Some(self.transition(&mut machine, BreakerState::Open)),
            BreakerState::HalfOpen => {
                machine.probes_succeeded += 1;
                (machine.probes_succeeded >= self.settings.probes).then(|| self.transition(&mut machine, BreakerState::Closed))
            }
            BreakerState::Open => None,
        };
        drop(machine);
        self.announce(change);
    }

    fn transition(&self, machine: &mut Machine, to: BreakerState) -> (BreakerState, BreakerState) {
        let from = machine.state;
        machine.state = to;
        machine.generation += 1;
        machine.consecutive = 0;
        machine.probes_admitted = 0;
        machine.probes_succeeded = 0;
        if to != BreakerState::HalfOpen {
            machine.window.clear();
            machine.failures_in_window = 0;
        }
        if to == BreakerState::Open {
            machine.opened_at = Instant::now();
        }
        (from, to)
    }

    /// Logs a change and calls the callback, outside the lock.
    fn announce(&self, change: Option<(BreakerState, BreakerState)>) {
        let Some((from, to)) = change else { return };
        let name = &*self.settings.name;
        if to == BreakerState::Open {
            tracing::warn!(breaker = name, %from, %to, "circuit breaker opened");
        } else {
            tracing::info!(breaker = name, %from, %to, "circuit breaker changed state");
        }
        if let Some(callback) = &self.settings.on_change {
            callback(from, to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(breaker: &CircuitBreaker, n: usize) {
        for _ in 0..n {
            let permit = breaker.try_acquire().expect("admitted");
            breaker.record(permit, true);
        }
    }

    fn succeed(breaker: &CircuitBreaker, n: usize) {
        for _ in 0..n {
            let permit = breaker.try_acquire().expect("admitted");
            breaker.record(permit, false);
        }
    }

    type Changes = Arc<Mutex<Vec<(BreakerState, BreakerState)>>>;

    fn recorded() -> (CircuitBreaker, Changes) {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = changes.clone();
        let breaker = CircuitBreaker::new().on_state_change(move |from, to| seen.lock().expect("lock").push((from, to)));
        (breaker, changes)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_fails_fast() {
        let (breaker, changes) = recorded();
        fail(&breaker, 4);
        succeed(&breaker, 1); // resets the run
        fail(&breaker, 4);
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.try_acquire().is_none());
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert!(breaker.try_acquire().is_none(), "still open before the interval");
        assert_eq!(*changes.lock().expect("lock"), [(BreakerState::Closed, BreakerState::Open)]);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_by_ratio_over_the_window() {
        let breaker = CircuitBreaker::new().consecutive_failures(0);
        // Alternating: never consecutive, but half the window fails.
        for _ in 0..4 {
            fail(&breaker, 1);
            succeed(&breaker, 1);
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "8 calls: below the minimum of 10");
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Closed, "9 calls");
        succeed(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open, "5 of 10 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let breaker = CircuitBreaker::new().consecutive_failures(0);
        fail(&breaker, 4);
        succeed(&breaker, 16); // 4 of 20 failed
        fail(&breaker, 4); // the first 4 failures slid out: 4 of 20
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail(&breaker, 6); // 10 of 20
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probe_success_closes() {
        let (breaker, changes) = recorded();
        fail(&breaker, 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = breaker.try_acquire().expect("one probe passes");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.try_acquire().is_none(), "only one probe");
        breaker.record(probe, false);
        assert_eq!(breaker.state(), BreakerState::Closed);
        use BreakerState::*;
        assert_eq!(*changes.lock().expect("lock"), [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
        // Closed with a clean slate: 4 failures do not open it.
        fail(&breaker, 4);
        assert_eq!(breaker.state(), Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probe_failure_reopens_for_another_interval() {
        let breaker = CircuitBreaker::new().probes(2);
        fail(&breaker, 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        let first = breaker.try_acquire().expect("probe 1");
        let second = breaker.try_acquire().expect("probe 2");
        breaker.record(first, false);
        assert_eq!(breaker.state(), BreakerState::HalfOpen, "both probes must succeed");
        breaker.record(second, true);
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(4000)).await;
        assert!(breaker.try_acquire().is_none(), "a new interval started at the failed probe");
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert!(breaker.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_its_slot() {
        let breaker = CircuitBreaker::new();
        fail(&breaker, 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = breaker.try_acquire().expect("probe");
        assert!(breaker.try_acquire().is_none());
        drop(probe); // the call was cancelled: no outcome
        let probe = breaker.try_acquire().expect("another probe may go");
        breaker.record(probe, false);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_from_an_earlier_state_are_ignored() {
        let breaker = CircuitBreaker::new().consecutive_failures(1);
        let late = breaker.try_acquire().expect("closed");
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = breaker.try_acquire().expect("probe");
        breaker.record(late, true); // admitted while closed: ignored
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.record(probe, false);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
