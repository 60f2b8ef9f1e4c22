//! The ADR-32 service layer: endpoints with bounded concurrency and a
//! bounded backlog, deadlines counted from arrival, panic isolation, a
//! reply-subject policy and statistics; discovery on `$SRV.*`; a connection
//! watchdog; a graceful stop bounded in time.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use async_nats::{HeaderMap, Message, Subject, Subscriber};
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::code::CodeFormat;
use crate::context::RequestContext;
use crate::discovery::{
    EndpointInfo, EndpointStats, INFO_RESPONSE_TYPE, InfoResponse, PING_RESPONSE_TYPE, STATS_RESPONSE_TYPE, ServiceIdentity,
    StatsResponse,
};
use crate::error::Error;
use crate::headers;
use crate::interceptor::{BoxFuture, EndpointHandler, ServerInterceptor, ServerInterceptorFn, ServerNext};
use crate::reply_policy::ReplyPolicy;
use crate::spec::{EndpointSpec, ServiceSpec};

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
/// How often a service checks that its connection still carries requests.
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(250);
/// How long cancelled requests get to send their replies at the end of a stop.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// Makes a new connection for a service whose connection died.
type Connector = Arc<dyn Fn() -> BoxFuture<Result<async_nats::Client, async_nats::ConnectError>> + Send + Sync>;

/// Configures a service before it starts. Generated code returns one filled
/// from the proto options; every setting can be changed at run time.
///
/// Timeout precedence for a request on the server (first that is set wins),
/// capped by the caller's own budget from its `Nats-Micro-Timeout` header:
/// 1. [`ServiceBuilder::endpoint_timeout`] for that endpoint;
/// 2. [`ServiceBuilder::timeout`] for the whole service;
/// 3. the endpoint's proto option, else the service's proto option.
///
/// ```no_run
/// # async fn demo(nats: async_nats::Client, builder: nats_micro_runtime::ServiceBuilder) -> Result<(), nats_micro_runtime::Error> {
/// use std::time::Duration;
/// let service = builder
///     .add_metadata("region", "eu-west")
///     .timeout(Duration::from_millis(1500))
///     .start(&nats)
///     .await?;
/// for endpoint in service.endpoints() {
///     println!("{} on {}", endpoint.name, endpoint.subject);
/// }
/// service.stop().await;
/// # Ok(()) }
/// ```
pub struct ServiceBuilder {
    name: String,
    version: String,
    description: String,
    metadata: BTreeMap<String, String>,
    subject_prefix: String,
    queue_group: Option<String>,
    timeout: Option<Duration>,
    endpoint_timeouts: HashMap<String, Duration>,
    code_format: CodeFormat,
    expose_internal_errors: bool,
    max_concurrency: usize,
    pending_limit: Option<Option<usize>>,
    drain_timeout: Duration,
    reply_policy: ReplyPolicy,
    connector: Option<Connector>,
    interceptors: Vec<Arc<dyn ServerInterceptor>>,
    endpoints: Vec<(EndpointSpec, Arc<dyn EndpointHandler>)>,
}

impl ServiceBuilder {
    /// A builder with everything the proto declares for the service.
    pub fn new(spec: &ServiceSpec) -> Self {
        ServiceBuilder {
            name: spec.name.to_owned(),
            version: spec.version.to_owned(),
            description: spec.description.to_owned(),
            metadata: spec.metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            subject_prefix: spec.subject_prefix.to_owned(),
            queue_group: (!spec.queue_group_disabled).then(|| DEFAULT_QUEUE_GROUP.to_owned()),
            timeout: None,
            endpoint_timeouts: HashMap::new(),
            code_format: CodeFormat::Numbers,
            expose_internal_errors: false,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            pending_limit: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            reply_policy: ReplyPolicy::default(),
            connector: None,
            interceptors: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    /// Adds an endpoint served by `handler` (generated code does this).
    pub fn endpoint(mut self, spec: &EndpointSpec, handler: Arc<dyn EndpointHandler>) -> Self {
        self.endpoints.push((*spec, handler));
        self
    }

    /// Replaces the ADR-32 service name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Replaces the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Replaces all service metadata.
    pub fn metadata<K: Into<String>, V: Into<String>>(mut self, metadata: impl IntoIterator<Item = (K, V)>) -> Self {
        self.metadata = metadata.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self
    }

    /// Merges metadata into what the proto declares (new values win).
    pub fn merge_metadata<K: Into<String>, V: Into<String>>(mut self, metadata: impl IntoIterator<Item = (K, V)>) -> Self {
        self.metadata.extend(metadata.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Adds or replaces one metadata entry.
    pub fn add_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Replaces the subject prefix.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Sets the queue group of every endpoint; `None` disables it (every
    /// instance gets every request). An endpoint whose proto disables its
    /// queue group keeps it disabled.
    pub fn queue_group(mut self, group: Option<impl Into<String>>) -> Self {
        self.queue_group = group.map(Into::into);
        self
    }

    /// Timeout for every endpoint, over the proto's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Timeout for one endpoint (by endpoint name, e.g. `create_order`), over all others.
    pub fn endpoint_timeout(mut self, endpoint: impl Into<String>, timeout: Duration) -> Self {
        self.endpoint_timeouts.insert(endpoint.into(), timeout);
        self
    }

    /// How the seven built-in codes are written: numbers (default), or names
    /// for clients generated by the Go plugin.
    pub fn code_format(mut self, format: CodeFormat) -> Self {
        self.code_format = format;
        self
    }

    /// Sends the text of uncoded handler errors to callers instead of a
    /// generic message. Off by default: such text may hold internal details.
    pub fn expose_internal_errors(mut self, expose: bool) -> Self {
        self.expose_internal_errors = expose;
        self
    }

    /// Requests each endpoint handles at once (default
    /// [`DEFAULT_MAX_CONCURRENCY`]); further ones wait.
    pub fn max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = max.max(1);
        self
    }

    /// Requests each endpoint lets wait for a slot, over the proto's
    /// `pending_msg_limit` (default [`DEFAULT_PENDING_MSG_LIMIT`]); more are
    /// answered `RESOURCE_EXHAUSTED` at once. `None` removes the bound, so a
    /// backlog can grow as long as the caller's deadlines allow.
    pub fn pending_limit(mut self, limit: Option<usize>) -> Self {
        self.pending_limit = Some(limit);
        self
    }

    /// How long [`Service::stop`] waits for requests in flight and waiting
    /// before it cancels them (default [`DEFAULT_DRAIN_TIMEOUT`]).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Which reply subjects are served (see [`ReplyPolicy`]; its default
    /// already refuses the service's own subjects and system subjects).
    pub fn reply_policy(mut self, policy: ReplyPolicy) -> Self {
        self.reply_policy = policy;
        self
    }

    /// How to connect again when the connection can no longer be used.
    ///
    /// async-nats 0.51 panics in its connection task on some malformed
    /// messages any client can send (a bare CR in a header value); the
    /// client then looks connected but delivers nothing. A service checks
    /// its connection every 250 ms; with a connector it resubscribes on a new
    /// connection within about a second, keeping its id and statistics.
    /// Without one, [`Service::run_until`] returns the failure so that the
    /// process can exit and be restarted.
    ///
    /// ```no_run
    /// # async fn demo(builder: nats_micro_runtime::ServiceBuilder) -> Result<(), nats_micro_runtime::Error> {
    /// let url = "nats://127.0.0.1:4222".to_owned();
    /// let nats = async_nats::connect(&url).await.map_err(nats_micro_runtime::Error::from_internal)?;
    /// let service = builder.reconnect_with(move || async_nats::connect(url.clone())).start(&nats).await?;
    /// # service.stop().await; Ok(()) }
    /// ```
    pub fn reconnect_with<F, Fut>(mut self, connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<async_nats::Client, async_nats::ConnectError>> + Send + 'static,
    {
        self.connector = Some(Arc::new(move || Box::pin(connect())));
        self
    }

    /// Adds a server interceptor; the first added runs outermost.
    pub fn interceptor(mut self, interceptor: impl ServerInterceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Adds a server interceptor written as an async closure.
    ///
    /// ```no_run
    /// # fn demo(builder: nats_micro_runtime::ServiceBuilder) -> nats_micro_runtime::ServiceBuilder {
    /// use nats_micro_runtime::{Error, RequestContext};
    /// use nats_micro_runtime::interceptor::ServerNext;
    /// builder.interceptor_fn(|ctx: RequestContext, payload: bytes::Bytes, next: ServerNext| async move {
    ///     if ctx.header("Authorization").is_none() {
    ///         return Err(Error::unauthenticated("missing Authorization"));
    ///     }
    ///     ctx.set_response_header("X-Checked", "yes");
    ///     next.run(ctx, payload).await
    /// })
    /// # }
    /// ```
    pub fn interceptor_fn<F, Fut>(self, interceptor: F) -> Self
    where
        F: Fn(RequestContext, Bytes, ServerNext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Bytes, Error>> + Send + 'static,
    {
        self.interceptor(ServerInterceptorFn(interceptor))
    }

    /// The endpoints as they will be registered.
    pub fn endpoints(&self) -> Vec<EndpointInfo> {
        self.endpoints.iter().map(|(spec, _)| self.endpoint_info(spec)).collect()
    }

    fn endpoint_info(&self, spec: &EndpointSpec) -> EndpointInfo {
        EndpointInfo {
            name: spec.method.endpoint.to_owned(),
            subject: format!("{}.{}", self.subject_prefix, spec.method.endpoint),
            queue_group: if spec.queue_group_disabled { None } else { self.queue_group.clone() },
            metadata: spec.metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |what: String| Err(Error::invalid_argument(what));
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return invalid(format!("service name {:?} must match [A-Za-z0-9_-]+", self.name));
        }
        if semver::Version::parse(&self.version).is_err() {
            return invalid(format!("service version {:?} is not SemVer", self.version));
        }
        for (spec, _) in &self.endpoints {
            let subject = format!("{}.{}", self.subject_prefix, spec.method.endpoint);
            if !valid_subject(&subject) {
                return invalid(format!("endpoint subject {subject:?} has an empty token, a space, `*` or `>`"));
            }
        }
        if let Some(group) = &self.queue_group
            && !valid_subject(group)
        {
            return invalid(format!("queue group {group:?} is not a valid token"));
        }
        Ok(())
    }

    /// Validates the configuration, subscribes every endpoint and the
    /// discovery subjects, and starts serving.
    pub async fn start(self, nats: &async_nats::Client) -> Result<Service, Error> {
        self.validate()?;
        let id = nuid::next().to_string();
        let started = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(Error::from_internal)?;
        let chain: Arc<[Arc<dyn ServerInterceptor>]> = self.interceptors.clone().into();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let infos: Vec<EndpointInfo> = self.endpoints.iter().map(|(spec, _)| self.endpoint_info(spec)).collect();
        let own_subjects: Arc<[String]> = infos.iter().map(|info| info.subject.clone()).collect();
        let reply_policy = Arc::new(self.reply_policy.clone());

        let endpoints: Vec<Arc<Endpoint>> = self
            .endpoints
            .iter()
            .zip(&infos)
            .map(|((spec, handler), info)| {
                let timeout = self.endpoint_timeouts.get(spec.method.endpoint).copied().or(self.timeout).or(spec.method.timeout);
                Arc::new(Endpoint {
                    info: info.clone(),
                    method: spec.method.method.into(),
                    endpoint: spec.method.endpoint.into(),
                    timeout,
                    code_format: self.code_format,
                    expose_internal_errors: self.expose_internal_errors,
                    chain: chain.clone(),
                    handler: handler.clone(),
                    reply_policy: reply_policy.clone(),
                    own_subjects: own_subjects.clone(),
                    stats: EndpointCounters::default(),
                    permits: Arc::new(Semaphore::new(self.max_concurrency)),
                    max_concurrency: self.max_concurrency,
                    pending_msg_limit: self
                        .pending_limit
                        .unwrap_or(Some(spec.pending_msg_limit.unwrap_or(DEFAULT_PENDING_MSG_LIMIT))),
                    pending_bytes_limit: spec.pending_bytes_limit,
                    queued: AtomicUsize::new(0),
                    queued_bytes: AtomicUsize::new(0),
                })
            })
            .collect();

        let identity = Arc::new(Identity {
            name: self.name.clone(),
            id,
            version: self.version.clone(),
            metadata: self.metadata.clone(),
            started,
            endpoints: endpoints.clone(),
            restarts: AtomicU64::new(0),
        });
        let ping = json_body(&identity.document(PING_RESPONSE_TYPE))?;
        let info = json_body(&InfoResponse {
            identity: identity.document(INFO_RESPONSE_TYPE),
            description: self.description.clone(),
            endpoints: infos.clone(),
        })?;
        let plan = Arc::new(Plan { identity: identity.clone(), endpoints, ping, info, stop: stop_rx, cancel: cancel_rx });
        let running = Arc::new(Mutex::new(plan.launch(nats).await?));
        let (lost_tx, lost_rx) = watch::channel(None);
        let watchdog = tokio::spawn(watch_connection(nats.clone(), self.connector.clone(), plan, running.clone(), lost_tx));
        Ok(Service {
            identity,
            infos,
            drain_timeout: self.drain_timeout,
            stop: stop_tx,
            cancel: cancel_tx,
            running,
            watchdog: Some(watchdog),
            lost: lost_rx,
        })
    }
}

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
pub fn valid_subject(subject: &str) -> bool {
    subject.split('.').all(|token| !token.is_empty() && !token.chars().any(|c| c.is_whitespace() || c == '*' || c == '>'))
}

async fn subscribe(nats: &async_nats::Client, subject: &str, queue_group: Option<&str>) -> Result<Subscriber, Error> {
    let subject = Subject::from(subject);
    let result = match queue_group {
        Some(group) => nats.queue_subscribe(subject.clone(), group.to_owned()).await,
        None => nats.subscribe(subject.clone()).await,
    };
    result.map_err(|err| Error::unavailable(format!("subscribing to {subject}: {err}")).with_source(err))
}

fn json_body<T: serde::Serialize>(value: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(value).map(Bytes::from).map_err(Error::from_internal)
}

/// What a service serves, independent of the connection it serves it on.
struct Plan {
    identity: Arc<Identity>,
    endpoints: Vec<Arc<Endpoint>>,
    ping: Bytes,
    info: Bytes,
    stop: watch::Receiver<bool>,
    cancel: watch::Receiver<bool>,
}

impl Plan {
    /// Subscribes everything on `nats` and starts the tasks that serve it.
    /// Fails without leaving anything subscribed.
    async fn launch(&self, nats: &async_nats::Client) -> Result<Running, Error> {
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

/// Who the service is, for discovery replies.
struct Identity {
    name: String,
    id: String,
    version: String,
    metadata: BTreeMap<String, String>,
    started: String,
    endpoints: Vec<Arc<Endpoint>>,
    restarts: AtomicU64,
}

impl Identity {
    fn document(&self, kind: &str) -> ServiceIdentity {
        ServiceIdentity {
            kind: kind.to_owned(),
            name: self.name.clone(),
            id: self.id.clone(),
            version: self.version.clone(),
            metadata: self.metadata.clone(),
        }
    }

    fn stats(&self) -> StatsResponse {
        StatsResponse {
            identity: self.document(STATS_RESPONSE_TYPE),
            started: self.started.clone(),
            endpoints: self.endpoints.iter().map(|endpoint| endpoint.stats.snapshot(&endpoint.info)).collect(),
        }
    }
}

async fn serve_discovery(
    nats: async_nats::Client,
    subscribers: Vec<(&'static str, Subscriber)>,
    identity: Arc<Identity>,
    ping: Bytes,
    info: Bytes,
) {
    let mut requests = futures_util::stream::select_all(
        subscribers.into_iter().map(|(verb, subscriber)| subscriber.map(move |message| (verb, message))),
    );
    while let Some((verb, message)) = requests.next().await {
        let Some(reply) = message.reply else { continue };
        let body = match verb {
            "PING" => ping.clone(),
            "INFO" => info.clone(),
            _ => match json_body(&identity.stats()) {
                Ok(body) => body,
                Err(err) => {
                    tracing::error!(error = %err, "encoding STATS");
                    continue;
                }
            },
        };
        if let Err(err) = nats.publish(reply, body).await {
            tracing::warn!(error = %err, verb, "replying to discovery request");
        }
    }
}

/// One endpoint: its configuration, limits and statistics, for the life of
/// the service (whatever connection serves it).
struct Endpoint {
    info: EndpointInfo,
    method: Arc<str>,
    endpoint: Arc<str>,
    timeout: Option<Duration>,
    code_format: CodeFormat,
    expose_internal_errors: bool,
    chain: Arc<[Arc<dyn ServerInterceptor>]>,
    handler: Arc<dyn EndpointHandler>,
    reply_policy: Arc<ReplyPolicy>,
    own_subjects: Arc<[String]>,
    stats: EndpointCounters,
    permits: Arc<Semaphore>,
    max_concurrency: usize,
    pending_msg_limit: Option<usize>,
    pending_bytes_limit: Option<usize>,
    queued: AtomicUsize,
    queued_bytes: AtomicUsize,
}

/// An endpoint served on one connection: what every request path needs.
struct Serving {
    endpoint: Arc<Endpoint>,
    nats: async_nats::Client,
    cancel: watch::Receiver<bool>,
}

impl Serving {
    /// Resolves once [`Service::stop`] gives up waiting (or the service is gone).
    async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        let _ = cancel.wait_for(|cancelled| *cancelled).await;
    }
}

#[derive(Default)]
struct EndpointCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    processing_nanos: AtomicU64,
    last_error: Mutex<String>,
}

impl EndpointCounters {
    fn record(&self, elapsed: Duration, error: Option<&Error>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.processing_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if let Some(error) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = format!("{}:{}", error.code(), error.message());
        }
    }

    fn snapshot(&self, info: &EndpointInfo) -> EndpointStats {
        let num_requests = self.requests.load(Ordering::Relaxed);
        let processing_time = self.processing_nanos.load(Ordering::Relaxed);
        EndpointStats {
            name: info.name.clone(),
            subject: info.subject.clone(),
            queue_group: info.queue_group.clone(),
            num_requests,
            num_errors: self.errors.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            processing_time,
            average_processing_time: processing_time.checked_div(num_requests).unwrap_or(0),
        }
    }
}

/// When a request arrived and when its caller stops waiting.
#[derive(Clone, Copy)]
struct Arrival {
    received: Instant,
    /// The earlier of arrival + the caller's budget and arrival + the server's timeout.
    deadline: Option<Instant>,
}

/// Reads requests until stopped, never waiting for a handler slot (so that
/// a request's arrival is when it is read and the subscription never backs
/// up): each runs at once when a slot is free, waits in a bounded backlog
/// otherwise, and is refused beyond it.
async fn serve_endpoint(serving: Arc<Serving>, mut subscriber: Subscriber, mut stop: watch::Receiver<bool>) {
    let endpoint = &serving.endpoint;
    let mut draining = false;
    loop {
        let message = if draining {
            subscriber.next().await
        } else {
            let stopped = async {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            match first(subscriber.next(), stopped).await {
                Either::Left(message) => message,
                Either::Right(()) => {
                    // Stop taking requests; what was delivered already is still served.
                    if let Err(err) = subscriber.drain().await {
                        tracing::warn!(error = %err, endpoint = %endpoint.endpoint, "draining endpoint");
                        break;
                    }
                    draining = true;
                    continue;
                }
            }
        };
        let Some(message) = message else { break };
        dispatch(&serving, message).await;
    }
    // Wait for the requests running and waiting (those wait ahead of this in the semaphore's queue).
    let _ = endpoint.permits.acquire_many(u32::try_from(endpoint.max_concurrency).unwrap_or(u32::MAX)).await;
}

async fn dispatch(serving: &Arc<Serving>, message: Message) {
    let received = Instant::now();
    let endpoint = &serving.endpoint;
    let reply_to = message.reply.as_ref().map_or("", |subject| subject.as_str());
    if let Some(reason) = endpoint.reply_policy.refusal(reply_to, &endpoint.own_subjects) {
        tracing::warn!(endpoint = %endpoint.endpoint, reason, "refused a request");
        endpoint.stats.record(received.elapsed(), Some(&Error::permission_denied(reason)));
        return;
    }
    let budget = message.headers.as_ref().and_then(headers::request_budget);
    let limit = match (budget, endpoint.timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let arrival = Arrival { received, deadline: limit.map(|limit| received + limit) };
    if let Ok(permit) = endpoint.permits.clone().try_acquire_owned() {
        serve_now(serving.clone(), message, arrival, permit).await;
        return;
    }
    let size = message.length;
    let queued = endpoint.queued.load(Ordering::Relaxed);
    let over_msgs = endpoint.pending_msg_limit.is_some_and(|limit| queued >= limit);
    let over_bytes =
        endpoint.pending_bytes_limit.is_some_and(|limit| endpoint.queued_bytes.load(Ordering::Relaxed) + size > limit);
    if over_msgs || over_bytes {
        let err = Error::resource_exhausted(format!("endpoint {} is overloaded: {queued} requests wait", endpoint.endpoint));
        reply(serving, message.reply, Err(err), None, received).await;
        return;
    }
    endpoint.queued.fetch_add(1, Ordering::Relaxed);
    endpoint.queued_bytes.fetch_add(size, Ordering::Relaxed);
    let serving = serving.clone();
    tokio::spawn(async move {
        let endpoint = &serving.endpoint;
        let permit = match first(serving.cancelled(), endpoint.permits.clone().acquire_owned()).await {
            Either::Left(()) => None,
            Either::Right(permit) => permit.ok(),
        };
        endpoint.queued.fetch_sub(1, Ordering::Relaxed);
        endpoint.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        match permit {
            Some(permit) => {
                handle(&serving, message, arrival).await;
                drop(permit);
            }
            None => {
                let err = Error::unavailable(format!("the service stopped before {} started", endpoint.method));
                reply(&serving, message.reply, Err(err), None, received).await;
            }
        }
    });
}

/// Serves a request holding a slot: polled once right here, and moved to a
/// task of its own only if it has to wait. A handler that finishes without
/// waiting thus replies from the endpoint's task, so the replies of a burst
/// leave in one write instead of one system call each; one that awaits runs
/// concurrently with the requests after it. (A handler's synchronous part,
/// up to its first `.await`, runs on the endpoint's task: keep CPU-heavy work
/// in `spawn_blocking`, as anywhere in tokio.)
async fn serve_now(serving: Arc<Serving>, message: Message, arrival: Arrival, permit: OwnedSemaphorePermit) {
    let mut request = Box::pin(async move {
        handle(&serving, message, arrival).await;
        drop(permit);
    });
    let first_poll = std::future::poll_fn(|cx| Poll::Ready(request.as_mut().poll(cx))).await;
    if first_poll.is_pending() {
        tokio::spawn(request);
    }
}

/// Serves one request: nothing starts after its deadline; then
/// interceptors and handler with panic isolation, cancelled at the deadline
/// or when a stop gives up waiting; reply; stats.
async fn handle(serving: &Serving, message: Message, arrival: Arrival) {
    let endpoint = &serving.endpoint;
    if arrival.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
        let err = Error::deadline_exceeded(format!("the deadline of {} passed before a handler was free", endpoint.method));
        reply(serving, message.reply, Err(err), None, arrival.received).await;
        return;
    }
    let headers = message.headers.unwrap_or_default();
    let ctx = RequestContext::new(endpoint.method.clone(), endpoint.endpoint.clone(), message.subject, headers, arrival.deadline);
    let response_headers = ctx.response_headers_handle();
    let call = AssertUnwindSafe(ServerNext::start(endpoint.chain.clone(), endpoint.handler.clone()).run(ctx, message.payload))
        .catch_unwind();
    let timed = async {
        match arrival.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, call).await.unwrap_or_else(|_| {
                Ok(Err(Error::deadline_exceeded(format!("{} did not finish before its deadline", endpoint.method))))
            }),
            None => call.await,
        }
    };
    let outcome = match first(timed, serving.cancelled()).await {
        Either::Left(outcome) => outcome,
        Either::Right(()) => Ok(Err(Error::unavailable(format!("the service stopped before {} finished", endpoint.method)))),
    };
    let result = outcome.unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".to_owned());
        Err(Error::from_internal(std::io::Error::other(format!("handler panicked: {detail}"))))
    });
    reply(serving, message.reply, result, response_headers.take(), arrival.received).await;
}

async fn reply(
    serving: &Serving,
    reply_to: Option<Subject>,
    result: Result<Bytes, Error>,
    response_headers: Option<HeaderMap>,
    received: Instant,
) {
    let endpoint = &serving.endpoint;
    let elapsed = received.elapsed();
    let (headers, body) = match &result {
        Ok(body) => (response_headers, body.clone()),
        Err(err) => {
            let mut headers = response_headers.unwrap_or_default();
            if let Some(extra) = err.headers() {
                for (name, values) in extra.iter() {
                    for value in values {
                        headers.append(name.clone(), value.clone());
                    }
                }
            }
            let message = match err.detail() {
                Some(detail) => {
                    tracing::error!(method = %endpoint.method, detail, "handler failed without an error code");
                    if endpoint.expose_internal_errors { detail } else { err.message() }
                }
                None => err.message(),
            };
            headers.insert(headers::ERROR_CODE, err.code().to_wire(endpoint.code_format).as_ref());
            headers.insert(headers::ERROR_MESSAGE, sanitize_header_value(message).as_str());
            (Some(headers), err.data().clone())
        }
    };
    let Some(reply_to) = reply_to else {
        endpoint.stats.record(elapsed, result.as_ref().err());
        return;
    };
    let sent = match headers {
        Some(headers) => serving.nats.publish_with_headers(reply_to.clone(), headers, body).await,
        None => serving.nats.publish(reply_to.clone(), body).await,
    };
    match (sent, result) {
        (Ok(()), result) => endpoint.stats.record(elapsed, result.as_ref().err()),
        (Err(err), Ok(_)) => {
            // Most likely a response over max_payload: tell the caller rather than leave it waiting.
            let failure = Error::resource_exhausted(format!("the response could not be sent: {err}"));
            tracing::warn!(error = %err, method = %endpoint.method, "sending reply");
            let mut headers = HeaderMap::new();
            headers.insert(headers::ERROR_CODE, failure.code().to_wire(endpoint.code_format).as_ref());
            headers.insert(headers::ERROR_MESSAGE, failure.message());
            if let Err(err) = serving.nats.publish_with_headers(reply_to, headers, Bytes::new()).await {
                tracing::warn!(error = %err, method = %endpoint.method, "sending error reply");
            }
            endpoint.stats.record(elapsed, Some(&failure));
        }
        (Err(err), Err(failure)) => {
            tracing::warn!(error = %err, method = %endpoint.method, "sending error reply");
            endpoint.stats.record(elapsed, Some(&failure));
        }
    }
}

/// Whichever of `a` and `b` completes first (`a` when both are ready): a
/// `select!` that needs no tokio `macros` feature from the runtime's users.
async fn first<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    match futures_util::future::select(std::pin::pin!(a), std::pin::pin!(b)).await {
        Either::Left((a, _)) => Either::Left(a),
        Either::Right((b, _)) => Either::Right(b),
    }
}

/// Header values cannot hold line breaks; keep the message on one line.
fn sanitize_header_value(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}
