//! Retries (PROTOCOL §10.1): the policy of a generated client's unary
//! calls, the budget that keeps an outage from multiplying the load, and a
//! helper that retries any async operation with the same delays.
//!
//! ```
//! use std::time::Duration;
//! use nats_micro_runtime::retry::RetryPolicy;
//!
//! let policy = RetryPolicy::default().max_attempts(5).max_delay(Duration::from_millis(500));
//! assert_eq!(policy.attempts(), 5);
//! // Without jitter the delays are the schedule itself: 50, 100, 200, 400 ms.
//! let policy = policy.jitter(false);
//! assert_eq!(policy.backoff(3), Duration::from_millis(200));
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::code::Code;
use crate::error::{Error, ErrorKind};

/// A source of uniform random numbers in `[0, 1)` for the jitter; tests
/// inject a fixed one.
pub type RandomSource = Arc<dyn Fn() -> f64 + Send + Sync>;

/// When and how often a failed unary call is sent again.
///
/// The defaults are PROTOCOL §10.1's: 3 attempts (the first included),
/// delays starting at 50 ms, doubling, at most 1 s, with full jitter (each
/// delay uniform in `[0, computed]`), no per-attempt timeout. Attempts share
/// the call's deadline: no attempt starts and no delay is slept past it.
///
/// A policy is set per client ([`Client::with_retry_policy`]), per method
/// ([`Client::with_method_retry_policy`]) or per call
/// ([`Request::with_retry`]); the most specific wins.
///
/// [`Client::with_retry_policy`]: crate::Client::with_retry_policy
/// [`Client::with_method_retry_policy`]: crate::Client::with_method_retry_policy
/// [`Request::with_retry`]: crate::Request::with_retry
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_delay: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: bool,
    attempt_timeout: Option<Duration>,
    random: Option<RandomSource>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_delay", &self.initial_delay)
            .field("multiplier", &self.multiplier)
            .field("max_delay", &self.max_delay)
            .field("jitter", &self.jitter)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("random", &self.random.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(50),
            multiplier: 2.0,
            max_delay: Duration::from_secs(1),
            jitter: true,
            attempt_timeout: None,
            random: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that sends every call once.
    ///
    /// ```
    /// use nats_micro_runtime::retry::RetryPolicy;
    /// assert_eq!(RetryPolicy::disabled().attempts(), 1);
    /// ```
    pub fn disabled() -> Self {
        RetryPolicy::default().max_attempts(1)
    }

    /// Attempts in all, the first included (at least 1; 1 turns retries off).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The computed delay before the first retry.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// What each computed delay is multiplied by for the next (at least 1).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() { multiplier.max(1.0) } else { 1.0 };
        self
    }

    /// The longest computed delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Full jitter (the default): each delay is uniform in `[0, computed]`.
    /// Without it every delay is the computed one.
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Bounds each attempt (default: none, an attempt may use all that is
    /// left of the call's deadline).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Replaces the random source of the jitter: `random()` returns a number
    /// in `[0, 1)`. For tests; the default is a fast per-thread generator.
    pub fn random_source(mut self, random: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.random = Some(Arc::new(random));
        self
    }

    /// Attempts in all, the first included.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The per-attempt timeout, if any.
    pub fn per_attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// The computed delay before attempt `failed + 1`, before jitter:
    /// `min(max delay, initial × multiplier^(failed − 1))`.
    pub fn backoff(&self, failed: u32) -> Duration {
        let exponent = failed.saturating_sub(1).min(64) as i32;
        let computed = self.initial_delay.as_secs_f64() * self.multiplier.powi(exponent);
        if !computed.is_finite() || computed >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(computed)
        }
    }

    /// The delay to sleep before attempt `failed + 1`: the backoff, jittered
    /// when jitter is on.
    pub fn delay(&self, failed: u32) -> Duration {
        let backoff = self.backoff(failed);
        if !self.jitter {
            return backoff;
        }
        let fraction = match &self.random {
            Some(random) => random(),
            None => thread_random(),
        };
        backoff.mul_f64(fraction.clamp(0.0, 1.0))
    }
}

/// A uniform number in `[0, 1)` from a per-thread xorshift generator seeded
/// by std's random hasher keys: no lock, no allocation, no dependency.
fn thread_random() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish() | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The retry budget of a client: a token bucket shared by all its calls, as
/// in gRPC retry throttling (PROTOCOL §10.1). It starts full; every failed
/// attempt that would be retried takes one token, every success gives back
/// `token_ratio` (never above the maximum). A retry is sent only while more
/// than half the tokens remain, so an outage cannot multiply the load.
///
/// ```
/// use nats_micro_runtime::retry::RetryBudget;
/// let budget = RetryBudget::new(4.0, 0.5);
/// assert!(budget.try_retry()); // 3 left > 2
/// assert!(!budget.try_retry()); // 2 left: throttled
/// for _ in 0..3 {
///     budget.record_success(); // 3.5 tokens
/// }
/// assert!(budget.try_retry()); // 2.5 left > 2
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    /// In thousandths of a token, so that the bucket is one atomic.
    max_milli: u64,
    ratio_milli: u64,
    milli: AtomicU64,
}

impl Default for RetryBudget {
    /// 10 tokens, 0.1 back per success.
    fn default() -> Self {
        RetryBudget::new(10.0, 0.1)
    }
}

impl RetryBudget {
    /// A full bucket of `max_tokens`, giving back `token_ratio` per success.
    pub fn new(max_tokens: f64, token_ratio: f64) -> Self {
        let milli = |value: f64| if value.is_finite() && value > 0.0 { (value * 1000.0).round() as u64 } else { 0 };
        let max_milli = milli(max_tokens);
        RetryBudget { max_milli, ratio_milli: milli(token_ratio), milli: AtomicU64::new(max_milli) }
    }

    /// Tokens left.
    pub fn tokens(&self) -> f64 {
        self.milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Takes a token for a retry; whether the retry may be sent (more than
    /// half the maximum left after taking it).
    pub fn try_retry(&self) -> bool {
        let previous = self.milli.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| Some(m.saturating_sub(1000)));
        let left = previous.unwrap_or(0).saturating_sub(1000);
        left * 2 > self.max_milli
    }

    /// Gives back the token ratio for a successful attempt.
    pub fn record_success(&self) {
        if self.ratio_milli == 0 || self.milli.load(Ordering::Relaxed) >= self.max_milli {
            return; // full: no write on the happy path
        }
        let _ =
            self.milli.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| Some((m + self.ratio_milli).min(self.max_milli)));
    }
}

/// The delay a failed reply asks its caller to wait before coming back: its
/// `RetryInfo` detail (PROTOCOL §4.1). A retry waits at least that long, and
/// `RESOURCE_EXHAUSTED` is retried only when it carries one.
///
/// ```
/// use std::time::Duration;
/// use nats_micro_runtime::Error;
/// use nats_micro_runtime::retry::retry_hint;
/// let shed = Error::resource_exhausted("endpoint slow is overloaded").with_retry_info(Duration::from_millis(100));
/// assert_eq!(retry_hint(&shed), Some(Duration::from_millis(100)));
/// assert_eq!(retry_hint(&Error::unavailable("down")), None);
/// ```
pub fn retry_hint(error: &Error) -> Option<Duration> {
    error.retry_info().and_then(|info| info.delay())
}

/// Why a failed attempt may be retried (PROTOCOL §10.1), or `None`.
///
/// Retried for every method: no responders, `UNAVAILABLE` from the service,
/// `RESOURCE_EXHAUSTED` carrying a retry hint. Only for methods safe to
/// repeat: a timeout (`DEADLINE_EXCEEDED`) and a lost connection.
pub(crate) fn retryable(err: &Error, idempotent: bool, has_retry_hint: bool) -> bool {
    match err.kind() {
        ErrorKind::CircuitOpen | ErrorKind::Decode | ErrorKind::Encode | ErrorKind::MaxPayloadExceeded => false,
        ErrorKind::NoResponders => true,
        // The request may have reached the service.
        ErrorKind::ConnectionLost | ErrorKind::ConnectionClosed | ErrorKind::Transport | ErrorKind::Timeout => idempotent,
        _ => match err.code() {
            Code::Unavailable => true,
            Code::ResourceExhausted => has_retry_hint,
            Code::DeadlineExceeded => idempotent,
            _ => false,
        },
    }
}

/// What a circuit breaker counts as a failure (PROTOCOL §10.2): no
/// responders, connection loss, `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
/// `RESOURCE_EXHAUSTED`. Every other reply is a success for the breaker.
pub(crate) fn transient(err: &Error) -> bool {
    match err.kind() {
        ErrorKind::CircuitOpen | ErrorKind::Decode | ErrorKind::Encode | ErrorKind::MaxPayloadExceeded => false,
        _ => matches!(err.code(), Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted),
    }
}

/// A failed operation after the last attempt of a [`Retry`]: the last error
/// and how many attempts were made.
///
/// ```
/// use nats_micro_runtime::retry::RetriesExhausted;
/// let err = RetriesExhausted::new(std::io::Error::other("refused"), 4);
/// assert_eq!(err.attempts(), 4);
/// assert_eq!(err.to_string(), "gave up after 4 attempts: refused");
/// ```
#[derive(Debug, Clone)]
pub struct RetriesExhausted<E> {
    last: E,
    attempts: u32,
}

impl<E> RetriesExhausted<E> {
    /// The last error after `attempts` attempts.
    pub fn new(last: E, attempts: u32) -> Self {
        RetriesExhausted { last, attempts }
    }

    /// Attempts made, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last attempt's error.
    pub fn last_error(&self) -> &E {
        &self.last
    }

    /// The last attempt's error, by value.
    pub fn into_last_error(self) -> E {
        self.last
    }
}

impl<E: fmt::Display> fmt::Display for RetriesExhausted<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(f, "gave up after {} attempt{plural}: {}", self.attempts, self.last)
    }
}

impl<E: StdError + 'static> StdError for RetriesExhausted<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.last)
    }
}

/// Retries any async operation with the delays of a [`RetryPolicy`]:
/// up to its attempts, within an optional overall timeout, optionally
/// drawing on a shared [`RetryBudget`].
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use nats_micro_runtime::retry::Retry;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let calls = AtomicU32::new(0);
/// let answer = Retry::new()
///     .max_attempts(5)
///     .backoff(Duration::from_millis(10), 2.0, Duration::from_millis(100))
///     .run(|| async {
///         match calls.fetch_add(1, Ordering::Relaxed) {
///             0 | 1 => Err("not yet"),
///             _ => Ok(42),
///         }
///     })
///     .await;
/// assert_eq!(answer.ok(), Some(42));
/// assert_eq!(calls.load(Ordering::Relaxed), 3);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Retry {
    policy: RetryPolicy,
    timeout: Option<Duration>,
    budget: Option<Arc<RetryBudget>>,
}

impl Retry {
    /// The default policy (3 attempts, 50 ms doubling to 1 s, full jitter), no timeout.
    pub fn new() -> Self {
        Retry::default()
    }

    /// Retries with this policy's attempts and delays (its per-attempt
    /// timeout bounds client calls, not operations run here).
    pub fn with_policy(policy: RetryPolicy) -> Self {
        Retry { policy, ..Retry::default() }
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.policy = self.policy.max_attempts(attempts);
        self
    }

    /// Initial delay, multiplier and maximum delay of the backoff.
    pub fn backoff(mut self, initial: Duration, multiplier: f64, max: Duration) -> Self {
        self.policy = self.policy.initial_delay(initial).multiplier(multiplier).max_delay(max);
        self
    }

    /// Full jitter on (the default) or off.
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.policy = self.policy.jitter(jitter);
        self
    }

    /// Gives up once this much time has passed since the first attempt: no
    /// attempt starts and no delay is slept past it. (An attempt that is
    /// running is not interrupted: bound the operation itself, e.g. with
    /// `tokio::time::timeout`.)
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Draws retries from a budget (shared with other `Retry`s or calls).
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Runs `op` until it succeeds or attempts, time or budget run out;
    /// every error is retried.
    pub async fn run<T, E, F, Fut>(&self, op: F) -> Result<T, RetriesExhausted<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_if(op, |_| true).await
    }

    /// Like [`run`](Retry::run), retrying only errors for which `retry_on`
    /// is true; any other error ends the run at once.
    pub async fn run_if<T, E, F, Fut, P>(&self, mut op: F, mut retry_on: P) -> Result<T, RetriesExhausted<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: FnMut(&E) -> bool,
    {
        let deadline = self.timeout.map(|timeout| Instant::now() + timeout);
        let mut attempt = 1;
        loop {
            let err = match op().await {
                Ok(value) => {
                    if let Some(budget) = &self.budget {
                        budget.record_success();
                    }
                    return Ok(value);
                }
                Err(err) => err,
            };
            if attempt >= self.policy.max_attempts || !retry_on(&err) {
                return Err(RetriesExhausted::new(err, attempt));
            }
            if self.budget.as_ref().is_some_and(|budget| !budget.try_retry()) {
                return Err(RetriesExhausted::new(err, attempt));
            }
            let wake = Instant::now() + self.policy.delay(attempt);
            if deadline.is_some_and(|deadline| wake >= deadline) {
                return Err(RetriesExhausted::new(err, attempt));
            }
            tokio::time::sleep_until(wake).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(fraction: f64) -> RetryPolicy {
        RetryPolicy::default().random_source(move || fraction)
    }

    #[test]
    fn defaults_are_the_protocols() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.attempts(), 3);
        assert_eq!(policy.per_attempt_timeout(), None);
        let policy = policy.jitter(false);
        let schedule: Vec<_> = (1..=7).map(|n| policy.delay(n)).collect();
        let ms = Duration::from_millis;
        assert_eq!(schedule, [ms(50), ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
    }

    #[test]
    fn backoff_follows_multiplier_and_cap() {
        let policy =
            RetryPolicy::default().initial_delay(Duration::from_millis(10)).multiplier(3.0).max_delay(Duration::from_millis(200));
        let schedule: Vec<_> = (1..=5).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(schedule, [10, 30, 90, 200, 200]);
        // Huge exponents stay capped instead of overflowing.
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(200));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_backoff() {
        assert_eq!(fixed(0.0).delay(3), Duration::ZERO);
        assert_eq!(fixed(0.5).delay(3), Duration::from_millis(100));
        assert_eq!(fixed(0.999_999).delay(3), Duration::from_millis(200).mul_f64(0.999_999));
        // Out-of-range sources are clamped into the bounds.
        assert_eq!(fixed(7.0).delay(1), Duration::from_millis(50));
        assert_eq!(fixed(-1.0).delay(1), Duration::ZERO);
    }

    #[test]
    fn the_default_random_source_stays_in_bounds_and_varies() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (0..1000).map(|_| policy.delay(2)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(100)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 900, "jitter should spread delays: {} distinct", distinct.len());
        let mean = delays.iter().sum::<Duration>() / 1000;
        assert!(mean > Duration::from_millis(40) && mean < Duration::from_millis(60), "{mean:?}");
    }

    #[test]
    fn budget_throttles_at_half_and_refills_by_ratio() {
        let budget = RetryBudget::default();
        let allowed = (0..10).filter(|_| budget.try_retry()).count();
        // 10 tokens: retries while more than 5 remain after taking one.
        assert_eq!(allowed, 4);
        assert_eq!(budget.tokens(), 0.0);
        for _ in 0..59 {
            budget.record_success();
        }
        assert!((budget.tokens() - 5.9).abs() < 1e-9);
        assert!(!budget.try_retry(), "4.9 left is not more than half");
        for _ in 0..200 {
            budget.record_success();
        }
        assert_eq!(budget.tokens(), 10.0, "never above the maximum");
        assert!(budget.try_retry());
    }

    #[test]
    fn classification_follows_the_protocol() {
        let no_responders = Error::transport(ErrorKind::NoResponders, Code::Unavailable, "x");
        let lost = Error::transport(ErrorKind::ConnectionLost, Code::Unavailable, "x");
        let timeout = Error::transport(ErrorKind::Timeout, Code::DeadlineExceeded, "x");
        let open = Error::transport(ErrorKind::CircuitOpen, Code::Unavailable, "x");
        let unavailable = Error::unavailable("x");
        let exhausted = Error::resource_exhausted("x");
        let deadline = Error::deadline_exceeded("x");
        for idempotent in [false, true] {
            assert!(retryable(&no_responders, idempotent, false));
            assert!(retryable(&unavailable, idempotent, false));
            assert!(!retryable(&open, idempotent, false));
            assert!(!retryable(&exhausted, idempotent, false));
            assert!(retryable(&exhausted, idempotent, true));
            assert!(!retryable(&Error::not_found("x"), idempotent, true));
            assert_eq!(retryable(&lost, idempotent, false), idempotent);
            assert_eq!(retryable(&timeout, idempotent, false), idempotent);
            assert_eq!(retryable(&deadline, idempotent, false), idempotent);
        }
        assert!(transient(&lost) && transient(&timeout) && transient(&exhausted) && transient(&deadline));
        assert!(!transient(&open) && !transient(&Error::not_found("x")) && !transient(&Error::internal("x")));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_helper_sleeps_the_schedule_and_reports_attempts() {
        let started = Instant::now();
        let mut wakes = Vec::new();
        let result: Result<(), _> = Retry::with_policy(RetryPolicy::default().jitter(false).max_attempts(4))
            .run(|| {
                wakes.push(started.elapsed());
                async { Err::<(), _>(String::from("down")) }
            })
            .await;
        let err = result.expect_err("always fails");
        assert_eq!(err.attempts(), 4);
        assert_eq!(err.last_error(), "down");
        let ms = Duration::from_millis;
        assert_eq!(wakes, [ms(0), ms(50), ms(150), ms(350)]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_helper_stops_at_the_deadline_and_on_unretryable_errors() {
        let mut calls = 0;
        let result: Result<(), _> = Retry::with_policy(RetryPolicy::default().jitter(false).max_attempts(10))
            .timeout(Duration::from_millis(120))
            .run(|| {
                calls += 1;
                async { Err::<(), _>(String::from("down")) }
            })
            .await;
        // Attempts at 0 and 50 ms; the next would wake at 150 ms, past the deadline.
        assert_eq!((calls, result.expect_err("fails").attempts()), (2, 2));

        let mut calls = 0;
        let result: Result<(), _> = Retry::new()
            .run_if(
                || {
                    calls += 1;
                    async { Err::<(), _>(String::from("bad request")) }
                },
                |err| err != "bad request",
            )
            .await;
        assert_eq!((calls, result.expect_err("fails").attempts()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_helper_respects_a_shared_budget() {
        let budget = Arc::new(RetryBudget::new(4.0, 0.1));
        let retry = Retry::new().max_attempts(10).budget(budget.clone());
        let result: Result<(), _> = retry.run(|| async { Err::<(), _>(String::from("down")) }).await;
        // 4 tokens: one retry (3 left > 2), then throttled.
        assert_eq!(result.expect_err("fails").attempts(), 2);
        let result: Result<(), _> = retry.run(|| async { Err::<(), _>(String::from("down")) }).await;
        assert_eq!(result.expect_err("fails").attempts(), 1, "the budget is spent");
    }
}
