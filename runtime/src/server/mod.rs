//! The ADR-32 service layer: endpoints with bounded concurrency and a
//! bounded backlog, deadlines counted from arrival, panic isolation, a
//! reply-subject policy and statistics; discovery on `$SRV.*`; a connection
//! watchdog; a graceful stop bounded in time.

mod builder;
pub(crate) mod discovery;
mod endpoint;
pub(crate) mod interceptor;
pub(crate) mod reply_policy;
pub(crate) mod stream;
mod unary;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{Subject, Subscriber};
use bytes::Bytes;
use futures_util::future::Either;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use builder::ServiceBuilder;
use discovery::{EndpointInfo, Identity, StatsResponse, serve_discovery};
use endpoint::{Endpoint, Serving, serve_endpoint};
use reply_policy::ReplyCheck;
pub use unary::{stored_unary_handler, unary_handler};

use crate::error::{Error, StartError};
use crate::future::{BoxFuture, first};

/// The queue group endpoints join unless it is disabled.
pub const DEFAULT_QUEUE_GROUP: &str = "q";
/// Requests one endpoint handles at once unless set otherwise.
pub const DEFAULT_MAX_CONCURRENCY: usize = 1024;
/// Requests one endpoint lets wait for a handler slot unless the proto or
/// the builder sets otherwise; beyond it requests get `RESOURCE_EXHAUSTED`.
pub const DEFAULT_PENDING_MSG_LIMIT: usize = 4096;
/// How long [`Service::stop`] waits for requests before cancelling them,
/// unless set otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a shed request is asked to wait before retrying, by default (its
/// `RetryInfo` detail, PROTOCOL §5).
pub const DEFAULT_RETRY_AFTER_HINT: Duration = Duration::from_millis(100);
/// How often a service checks that its connection still carries requests.
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(250);
/// How long `start` waits for the server to confirm its subscriptions.
const START_FLUSH_LIMIT: Duration = Duration::from_secs(1);
/// How long cancelled requests get to send their replies at the end of a stop.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// Makes a new connection for a service whose connection died.
type Connector = Arc<dyn Fn() -> BoxFuture<Result<async_nats::Client, async_nats::ConnectError>> + Send + Sync>;

/// A running service. Dropping it without [`Service::stop`] aborts its tasks
/// at once; `stop` ends it gracefully.
#[must_use = "the service stops when this handle is dropped"]
pub struct Service {
    identity: Arc<Identity>,
    infos: Vec<EndpointInfo>,
    drain_timeout: Duration,
    stop: watch::Sender<bool>,
    cancel: watch::Sender<bool>,
    running: Arc<Mutex<Running>>,
    watchdog: Option<JoinHandle<()>>,
    lost: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.identity.name)
            .field("id", &self.identity.id)
            .field("endpoints", &self.infos)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// The instance id (unique per start).
    pub fn id(&self) -> &str {
        &self.identity.id
    }

    /// The ADR-32 service name.
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// The endpoints with their names, subjects, queue groups and metadata.
    pub fn endpoints(&self) -> &[EndpointInfo] {
        &self.infos
    }

    /// Current statistics (what `$SRV.STATS` replies).
    pub fn stats(&self) -> StatsResponse {
        self.identity.stats()
    }

    /// How many times the service moved to a new connection because its
    /// connection stopped working (see [`ServiceBuilder::reconnect_with`]).
    pub fn connection_restarts(&self) -> u64 {
        self.identity.restarts.load(Ordering::Relaxed)
    }

    /// Serves until `shutdown` completes, then stops gracefully; or until
    /// the connection is lost for good (it died and no
    /// [`ServiceBuilder::reconnect_with`] was given), then returns that
    /// failure as `UNAVAILABLE`.
    ///
    /// ```no_run
    /// # async fn demo(service: nats_micro_runtime::Service) -> Result<(), nats_micro_runtime::Error> {
    /// // Any future: a signal, a channel, a timer (here: serve for an hour).
    /// service.run_until(tokio::time::sleep(std::time::Duration::from_secs(3600))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut lost = self.lost.clone();
        let lost = async { lost.wait_for(Option::is_some).await.map(|reason| reason.clone().unwrap_or_default()) };
        let failure = match first(shutdown, lost).await {
            Either::Left(()) => None,
            Either::Right(reason) => Some(reason.unwrap_or_else(|_| "the service's connection watchdog ended".to_owned())),
        };
        match failure {
            None => {
                self.stop().await;
                Ok(())
            }
            Some(reason) => {
                self.stop_within(Duration::ZERO).await;
                Err(Error::unavailable(reason))
            }
        }
    }

    /// Stops gracefully within the drain timeout (see
    /// [`Service::stop_within`]).
    pub async fn stop(self) {
        let drain = self.drain_timeout;
        self.stop_within(drain).await;
    }

    /// Stops taking requests (unsubscribing the endpoints and serving what
    /// was already delivered), waits up to `drain` for the requests running
    /// and waiting, then cancels the rest (their callers get `UNAVAILABLE`)
    /// and leaves discovery. Never waits much longer than `drain`.
    pub async fn stop_within(mut self, drain: Duration) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        let _ = self.stop.send(true);
        let (tasks, discovery) = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            (std::mem::take(&mut running.endpoint_tasks), running.discovery_task.take())
        };
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let mut endpoints = futures_util::future::join_all(tasks);
        if tokio::time::timeout(drain, &mut endpoints).await.is_err() {
            tracing::warn!(service = %self.identity.name, ?drain, "requests still running at the end of the drain timeout; cancelling them");
            let _ = self.cancel.send(true);
            if tokio::time::timeout(CANCEL_GRACE, &mut endpoints).await.is_err() {
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
            }
        }
        if let Some(task) = discovery {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
        self.running.lock().unwrap_or_else(PoisonError::into_inner).abort();
    }
}

/// Whether a subject (or token) is non-empty, has no empty token, no
/// whitespace, and no wildcard.
///
/// Every request's reply subject goes through this (PROTOCOL §6): an ASCII
/// subject is checked in one pass over its bytes, without decoding chars.
pub(crate) fn valid_subject(subject: &str) -> bool {
    if !subject.is_ascii() {
        return valid_subject_chars(subject);
    }
    let mut token_len = 0usize;
    for &byte in subject.as_bytes() {
        match byte {
            b'.' if token_len == 0 => return false,
            b'.' => token_len = 0,
            // ASCII whitespace as `char::is_whitespace` has it: space, and \t \n \x0b \x0c \r.
            b'*' | b'>' | b' ' | b'\t'..=b'\r' => return false,
            _ => token_len += 1,
        }
    }
    token_len > 0
}

/// [`valid_subject`] by chars, for subjects beyond ASCII.
fn valid_subject_chars(subject: &str) -> bool {
    subject.split('.').all(|token| !token.is_empty() && !token.chars().any(|c| c.is_whitespace() || c == '*' || c == '>'))
}

async fn subscribe(nats: &async_nats::Client, subject: &str, queue_group: Option<&str>) -> Result<Subscriber, StartError> {
    let subject = Subject::from(subject);
    let result = match queue_group {
        Some(group) => nats.queue_subscribe(subject.clone(), group.to_owned()).await,
        None => nats.subscribe(subject.clone()).await,
    };
    result.map_err(|source| StartError::Subscribe { subject: subject.to_string(), source })
}

fn json_body<T: serde::Serialize>(value: &T) -> Result<Bytes, serde_json::Error> {
    serde_json::to_vec(value).map(Bytes::from)
}

/// What a service serves, independent of the connection it serves it on.
struct Plan {
    identity: Arc<Identity>,
    /// Discovery replies follow the endpoints' reply-subject policy.
    reply_check: Arc<ReplyCheck>,
    endpoints: Vec<Arc<Endpoint>>,
    ping: Bytes,
    info: Bytes,
    stop: watch::Receiver<bool>,
    cancel: watch::Receiver<bool>,
}

impl Plan {
    /// Subscribes everything on `nats` and starts the tasks that serve it.
    /// Fails without leaving anything subscribed.
    async fn launch(&self, nats: &async_nats::Client) -> Result<Running, StartError> {
        // Persisting endpoints bind their buckets first: a service that cannot keep its contract does not serve.
        for endpoint in &self.endpoints {
            endpoint.handler.prepare(nats).await?;
        }
        let mut subscribers = Vec::with_capacity(self.endpoints.len());
        for endpoint in &self.endpoints {
            subscribers.push(subscribe(nats, &endpoint.info.subject, endpoint.info.queue_group.as_deref()).await?);
        }
        let name = &self.identity.name;
        let mut discovery = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            for subject in
                [format!("$SRV.{verb}"), format!("$SRV.{verb}.{name}"), format!("$SRV.{verb}.{name}.{}", self.identity.id)]
            {
                discovery.push((verb, subscribe(nats, &subject, None).await?));
            }
        }
        // A request sent on any connection once `start` returns must find the
        // subscriptions on the server. During a reconnect the flush waits, so it
        // is bounded: the client replays the subscriptions when it is back.
        let _ = tokio::time::timeout(START_FLUSH_LIMIT, nats.flush()).await;
        let endpoint_tasks = self
            .endpoints
            .iter()
            .zip(subscribers)
            .map(|(endpoint, subscriber)| {
                let serving = Arc::new(Serving { endpoint: endpoint.clone(), nats: nats.clone(), cancel: self.cancel.clone() });
                tokio::spawn(serve_endpoint(serving, subscriber, self.stop.clone()))
            })
            .collect();
        let discovery_task = Some(tokio::spawn(serve_discovery(
            nats.clone(),
            discovery,
            self.identity.clone(),
            self.reply_check.clone(),
            self.ping.clone(),
            self.info.clone(),
        )));
        Ok(Running { endpoint_tasks, discovery_task })
    }
}

/// The tasks serving a service on one connection.
struct Running {
    endpoint_tasks: Vec<JoinHandle<()>>,
    discovery_task: Option<JoinHandle<()>>,
}

impl Running {
    fn abort(&self) {
        self.endpoint_tasks.iter().for_each(JoinHandle::abort);
        if let Some(task) = &self.discovery_task {
            task.abort();
        }
    }
}

/// Checks every [`WATCHDOG_INTERVAL`] that the connection's task still
/// answers. A flush that fails (rather than waits, as during an ordinary
/// reconnect) means the task is gone: the service moves to a new connection
/// if it has a connector, else reports the loss through `lost`.
async fn watch_connection(
    mut nats: async_nats::Client,
    connector: Option<Connector>,
    plan: Arc<Plan>,
    running: Arc<Mutex<Running>>,
    lost: watch::Sender<Option<String>>,
) {
    loop {
        tokio::time::sleep(WATCHDOG_INTERVAL).await;
        if !matches!(tokio::time::timeout(WATCHDOG_INTERVAL * 4, nats.flush()).await, Ok(Err(_))) {
            continue;
        }
        let service = plan.identity.name.as_str();
        let Some(connect) = &connector else {
            let reason = format!(
                "service {service}: the NATS connection stopped working (its task ended, e.g. on a malformed message) and no reconnect_with connector is set"
            );
            tracing::error!("{reason}");
            let _ = lost.send(Some(reason));
            return;
        };
        tracing::error!(
            service,
            "the NATS connection stopped working (its task ended, e.g. on a malformed message); reconnecting"
        );
        let mut delay = Duration::from_millis(50);
        nats = loop {
            let fresh = match connect().await {
                Ok(client) => match plan.launch(&client).await {
                    Ok(fresh) => Ok((client, fresh)),
                    Err(err) => Err(err.to_string()),
                },
                Err(err) => Err(err.to_string()),
            };
            match fresh {
                Ok((client, fresh)) => {
                    std::mem::replace(&mut *running.lock().unwrap_or_else(PoisonError::into_inner), fresh).abort();
                    plan.identity.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(service, "serving again on a new connection");
                    break client;
                }
                Err(err) => tracing::warn!(service, error = %err, ?delay, "reconnecting failed; trying again"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        };
    }
}

#[cfg(test)]
mod tests {
    use super::{valid_subject, valid_subject_chars};

    #[test]
    fn the_ascii_subject_check_is_the_char_check() {
        let mut subjects = vec![String::new(), ".".into(), "a.".into(), ".a".into(), "a..b".into(), "_INBOX.abc.1".into()];
        for byte in 0u8..=127 {
            let c = char::from(byte);
            subjects.extend([format!("{c}"), format!("a{c}b"), format!("a.{c}"), format!("{c}.b"), format!("a.b{c}")]);
        }
        for subject in subjects {
            assert_eq!(valid_subject(&subject), valid_subject_chars(&subject), "{subject:?}");
        }
        assert!(!valid_subject("a.\u{a0}b"), "a no-break space is whitespace");
        assert!(valid_subject("a.é"));
    }
}
