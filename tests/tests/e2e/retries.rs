//! Retries of unary calls (PROTOCOL §10.1) on a real nats-server, against a
//! ChaosService whose behaviour each request's text scripts: what is
//! retried, how often, with which attempt header and budget, within the
//! call's deadline, and how a lost connection ends a call at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats_micro_runtime::breaker::CircuitBreaker;
use nats_micro_runtime::retry::RetryPolicy;
use nats_micro_runtime::{ErrorKind, Request, RequestContext, headers};
use nats_micro_tests::harness::{NatsServer, free_port};
use nats_micro_tests::project::chaos::v1::chaos_service_nats::{
    self as chaos, ChaosService, ChaosServiceClient, ChaosServiceError,
};
use nats_micro_tests::project::chaos::v1::{Answer, Ask, Calls, Down};

/// One request as the service saw it: its text, `ctx.attempt()`, and its
/// `Nats-Micro-Attempt` and `Nats-Micro-Timeout` headers.
#[derive(Clone, Debug)]
struct Seen {
    text: String,
    attempt: u32,
    attempt_header: Option<String>,
    budget: Option<Duration>,
}

/// Behaves as the request's text says, for `Get` and `Put` alike:
/// - `fail-until:N`: UNAVAILABLE `down at attempt K` before attempt N, then success;
/// - `fail-always`: UNAVAILABLE `down at attempt K`, with header `X-Attempt: K`;
/// - `slow-first`: the first attempt sleeps 2 s, later ones answer at once;
/// - `slow`: sleeps 5 s;
/// - `exhausted`: RESOURCE_EXHAUSTED without a retry hint;
/// - `hinted:MS`: the first attempt fails with RESOURCE_EXHAUSTED and a
///   `RetryInfo` of MS milliseconds, later ones succeed;
/// - `missing`: NOT_FOUND;
/// - anything else: success.
#[derive(Clone, Default)]
struct Scripted {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    async fn serve(&self, ctx: RequestContext, request: Ask) -> Result<Answer, ChaosServiceError> {
        let attempt = ctx.attempt();
        self.seen.lock().expect("lock").push(Seen {
            text: request.text.clone(),
            attempt,
            attempt_header: ctx.header(headers::ATTEMPT).map(str::to_owned),
            budget: ctx.header(headers::TIMEOUT).and_then(headers::decode_timeout),
        });
        let down = || ChaosServiceError::unavailable(format!("down at attempt {attempt}"));
        match request.text.as_str() {
            "fail-always" => {
                ctx.set_response_header("X-Attempt", &attempt.to_string());
                return Err(down());
            }
            text if text.starts_with("fail-until:") => {
                let until: u32 = text["fail-until:".len()..].parse().expect("a number");
                if attempt < until {
                    return Err(down());
                }
            }
            text if text.starts_with("hinted:") && attempt == 1 => {
                let ms: u64 = text["hinted:".len()..].parse().expect("a number");
                return Err(ChaosServiceError::resource_exhausted("come back later").with_retry_info(Duration::from_millis(ms)));
            }
            "slow-first" if attempt == 1 => tokio::time::sleep(Duration::from_secs(2)).await,
            "slow" => tokio::time::sleep(Duration::from_secs(5)).await,
            "exhausted" => return Err(ChaosServiceError::resource_exhausted("busy")),
            "missing" => return Err(ChaosServiceError::not_found("no such thing")),
            _ => {}
        }
        Ok(Answer { id: request.id, text: request.text })
    }

    fn seen(&self, text: &str) -> Vec<Seen> {
        self.seen.lock().expect("lock").iter().filter(|seen| seen.text == text).cloned().collect()
    }
}

impl ChaosService for Scripted {
    async fn get(&self, ctx: RequestContext, request: Ask) -> Result<Answer, ChaosServiceError> {
        self.serve(ctx, request).await
    }
    async fn put(&self, ctx: RequestContext, request: Ask) -> Result<Answer, ChaosServiceError> {
        self.serve(ctx, request).await
    }
    async fn flaky(&self, ctx: RequestContext, request: Ask) -> Result<Answer, ChaosServiceError> {
        self.serve(ctx, request).await
    }
    async fn set_down(&self, _ctx: RequestContext, _request: Down) -> Result<Calls, ChaosServiceError> {
        Ok(Calls::default())
    }
    async fn slow(&self, ctx: RequestContext, request: Ask) -> Result<Answer, ChaosServiceError> {
        self.serve(ctx, request).await
    }
}

struct Fixture {
    server: NatsServer,
    service: nats_micro_runtime::Service,
    scripted: Scripted,
    /// Retries without jitter, so that timings are the schedule's.
    client: ChaosServiceClient,
}

impl Fixture {
    async fn start() -> Fixture {
        let server = NatsServer::start_on(free_port(), &[]);
        let scripted = Scripted::default();
        let service = chaos::serve(&server.connect().await, scripted.clone()).await.expect("starts");
        let client = ChaosServiceClient::new(server.connect().await).with_retry_policy(RetryPolicy::default().jitter(false));
        Fixture { server, service, scripted, client }
    }
}

fn ask(text: &str) -> Ask {
    Ask { id: 1, text: text.into(), sleep_ms: 0 }
}

#[tokio::test]
async fn unavailable_is_retried_with_the_attempt_header_and_what_is_left_of_the_deadline() {
    let fx = Fixture::start().await;
    let answer = fx.client.put(Request::new(ask("fail-until:3")).with_timeout(Duration::from_secs(4))).await.expect("third time");
    assert_eq!(answer.text, "fail-until:3");
    let seen = fx.scripted.seen("fail-until:3");
    let attempts: Vec<_> = seen.iter().map(|s| (s.attempt, s.attempt_header.as_deref())).collect();
    assert_eq!(attempts, [(1, None), (2, Some("2")), (3, Some("3"))], "UNAVAILABLE is retried even for Put");
    let budgets: Vec<Duration> = seen.iter().map(|s| s.budget.expect("a budget")).collect();
    assert_eq!(budgets[0], Duration::from_secs(4));
    // Each retry carries what is left: less the 50 ms and 100 ms delays at least.
    assert!(budgets[1] <= Duration::from_millis(3950) && budgets[2] <= budgets[1] - Duration::from_millis(100), "{budgets:?}");
    fx.service.stop().await;
}

#[tokio::test]
async fn the_final_error_is_the_last_attempts_with_the_attempt_count() {
    let fx = Fixture::start().await;
    let err = fx.client.get(ask("fail-always")).await.expect_err("always down");
    assert!(err.is_unavailable());
    assert_eq!(err.attempts(), 3, "the default policy makes 3 attempts");
    assert_eq!(err.message(), "down at attempt 3");
    assert_eq!(err.headers().and_then(|h| h.get("X-Attempt")).map(|v| v.as_str()), Some("3"));
    assert_eq!(fx.scripted.seen("fail-always").len(), 3);

    let once = fx.client.clone().with_retry_policy(RetryPolicy::disabled());
    let err = once.get(ask("fail-always")).await.expect_err("always down");
    assert_eq!(err.attempts(), 1);
    fx.service.stop().await;
}

#[tokio::test]
async fn answers_are_not_retried() {
    let fx = Fixture::start().await;
    let err = fx.client.get(ask("missing")).await.expect_err("not found");
    assert!(err.is_not_found());
    assert_eq!(err.attempts(), 1);
    let err = fx.client.get(ask("exhausted")).await.expect_err("busy");
    assert!(err.is_resource_exhausted());
    assert_eq!(err.attempts(), 1, "RESOURCE_EXHAUSTED without a retry hint is the service's answer");
    assert_eq!(fx.scripted.seen("missing").len() + fx.scripted.seen("exhausted").len(), 2);
    fx.service.stop().await;
}

#[tokio::test]
async fn a_retry_hint_makes_resource_exhausted_retryable_and_sets_the_least_delay() {
    let fx = Fixture::start().await;
    let started = Instant::now();
    let answer = fx.client.put(ask("hinted:300")).await.expect("retried after the hint");
    assert_eq!(answer.text, "hinted:300");
    assert!(started.elapsed() >= Duration::from_millis(300), "waited only {:?}", started.elapsed());
    assert_eq!(fx.scripted.seen("hinted:300").len(), 2);

    // A hint past the call's deadline is not waited for: the call fails with that reply.
    let err = fx
        .client
        .get(Request::new(ask("hinted:5000")).with_timeout(Duration::from_secs(1)))
        .await
        .expect_err("the hint does not fit");
    assert!(err.is_resource_exhausted());
    assert_eq!((err.attempts(), err.message()), (1, "come back later"));
    assert!(err.retry_info().is_some(), "the final error keeps the last reply's details");
    fx.service.stop().await;
}

#[tokio::test]
async fn timeouts_are_retried_only_when_safe_to_repeat() {
    let fx = Fixture::start().await;
    let bounded = RetryPolicy::default().jitter(false).attempt_timeout(Duration::from_millis(300));
    let client = fx.client.clone().with_retry_policy(bounded);

    // Get is NO_SIDE_EFFECTS in the proto: its timed-out attempt is sent again.
    let answer = client.get(ask("slow-first")).await.expect("the second attempt answers");
    assert_eq!(answer.text, "slow-first");
    assert_eq!(fx.scripted.seen("slow-first").len(), 2);

    // Put is not: one attempt, DEADLINE_EXCEEDED.
    fx.scripted.seen.lock().expect("lock").clear();
    let err = client.put(ask("slow-first")).await.expect_err("not repeated");
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert_eq!(err.attempts(), 1);
    assert_eq!(fx.scripted.seen("slow-first").len(), 1);

    // Unless the call says it is safe...
    fx.scripted.seen.lock().expect("lock").clear();
    client.put(Request::new(ask("slow-first")).idempotent(true)).await.expect("repeated");
    assert_eq!(fx.scripted.seen("slow-first").len(), 2);

    // ...or the client does, for the method.
    fx.scripted.seen.lock().expect("lock").clear();
    let trusting = ChaosServiceClient::from_client(client.clone().into_inner().with_method_idempotent("Put", true));
    trusting.put(ask("slow-first")).await.expect("repeated");
    assert_eq!(fx.scripted.seen("slow-first").len(), 2);
    fx.service.stop().await;
}

#[tokio::test]
async fn retries_never_go_past_the_calls_deadline() {
    let fx = Fixture::start().await;
    let patient =
        RetryPolicy::default().jitter(false).max_attempts(100).initial_delay(Duration::from_millis(100)).multiplier(1.0);
    let started = Instant::now();
    let err = fx
        .client
        .get(Request::new(ask("fail-always")).with_timeout(Duration::from_millis(450)).with_retry(patient))
        .await
        .expect_err("always down");
    let elapsed = started.elapsed();
    // Attempts at about 0, 100, 200, 300 and 400 ms; the next delay would end past 450 ms.
    assert_eq!(err.attempts(), 5, "{err:?} after {elapsed:?}");
    assert!(elapsed < Duration::from_millis(450), "{elapsed:?}");
    let budgets: Vec<Duration> = fx.scripted.seen("fail-always").iter().map(|s| s.budget.expect("a budget")).collect();
    assert!(budgets.windows(2).all(|pair| pair[1] < pair[0]), "{budgets:?}");
    fx.service.stop().await;
}

#[tokio::test]
async fn the_budget_throttles_retries_across_calls() {
    let fx = Fixture::start().await;
    let client =
        fx.client.clone().with_retry_budget(4.0, 1.0).with_retry_policy(RetryPolicy::default().jitter(false).max_attempts(10));
    let err = client.get(ask("fail-always")).await.expect_err("down");
    assert_eq!(err.attempts(), 2, "4 tokens: one retry, then throttled");
    let err = client.get(ask("fail-always")).await.expect_err("down");
    assert_eq!(err.attempts(), 1, "the budget is spent");
    // 1 token left; each success gives one back (ratio 1), up to 4.
    for _ in 0..3 {
        client.get(ask("fine")).await.expect("ok");
    }
    let err = client.get(ask("fail-always")).await.expect_err("down");
    assert_eq!(err.attempts(), 2, "successes refilled the budget");
    fx.service.stop().await;
}

#[tokio::test]
async fn per_method_policy_wins_over_the_clients() {
    let fx = Fixture::start().await;
    let client = fx.client.clone().with_method_retry_policy("Get", RetryPolicy::disabled());
    assert_eq!(client.get(ask("fail-always")).await.expect_err("down").attempts(), 1);
    assert_eq!(client.put(ask("fail-always")).await.expect_err("down").attempts(), 3);
    fx.service.stop().await;
}

#[tokio::test]
async fn a_lost_connection_fails_calls_in_flight_at_once() {
    let mut fx = Fixture::start().await;
    let client = fx.client.clone();
    let call = tokio::spawn(async move {
        let started = Instant::now();
        let outcome = client.put(Request::new(ask("slow")).with_timeout(Duration::from_secs(10))).await;
        (outcome, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    fx.server.stop();
    let (outcome, elapsed) = call.await.expect("task");
    let err = outcome.expect_err("the connection is gone");
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err:?}");
    assert!(err.is_unavailable());
    assert_eq!(err.attempts(), 1, "Put is not safe to repeat");
    assert!(elapsed < Duration::from_secs(1), "failed after {elapsed:?}, not at its timeout");
}

#[tokio::test]
async fn an_idempotent_call_is_retried_after_reconnection() {
    let mut fx = Fixture::start().await;
    let client = fx.client.clone().with_retry_policy(RetryPolicy::default().jitter(false).max_attempts(10));
    let call =
        tokio::spawn(async move { client.get(Request::new(ask("slow-first")).with_timeout(Duration::from_secs(10))).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    fx.server.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fx.server.restart();
    let answer = call.await.expect("task").expect("answered after the reconnection");
    assert_eq!(answer.text, "slow-first");
    let attempts: Vec<u32> = fx.scripted.seen("slow-first").iter().map(|s| s.attempt).collect();
    assert_eq!(attempts.first(), Some(&1));
    assert!(attempts.len() >= 2, "{attempts:?}");
}

#[tokio::test]
async fn an_open_breaker_fails_at_once_and_is_not_retried() {
    let fx = Fixture::start().await;
    let breaker = CircuitBreaker::new().consecutive_failures(2);
    let client = fx.client.clone().with_circuit_breaker(breaker);
    // Each attempt goes through the breaker: the third attempt finds it open.
    let err = client.get(ask("fail-always")).await.expect_err("down");
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err:?}");
    assert_eq!(err.message(), "circuit open for chaos.v1.ChaosService.Get");
    assert_eq!(err.attempts(), 3);
    assert_eq!(fx.scripted.seen("fail-always").len(), 2);
    let err = client.get(ask("fine")).await.expect_err("still open");
    assert_eq!((err.kind(), err.attempts()), (ErrorKind::CircuitOpen, 1));
    // Other errors are successes for the breaker.
    let fresh = fx.client.clone().with_circuit_breaker(CircuitBreaker::new().consecutive_failures(2));
    for _ in 0..3 {
        assert!(fresh.get(ask("missing")).await.expect_err("not found").is_not_found());
    }
    fx.service.stop().await;
}
