//! The ADR-32 service layer: endpoints with bounded concurrency, deadlines,
//! panic isolation and statistics, discovery on `$SRV.*`, graceful stop.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use async_nats::{HeaderMap, Message, Subject, Subscriber};
use bytes::Bytes;
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
use crate::interceptor::{EndpointHandler, ServerInterceptor, ServerInterceptorFn, ServerNext};
use crate::spec::{EndpointSpec, ServiceSpec};

/// The queue group endpoints join unless it is disabled.
pub const DEFAULT_QUEUE_GROUP: &str = "q";
/// Requests one endpoint handles at once unless set otherwise.
pub const DEFAULT_MAX_CONCURRENCY: usize = 1024;

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

        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for (spec, handler) in &self.endpoints {
            let info = self.endpoint_info(spec);
            let subscriber = subscribe(nats, &info.subject, info.queue_group.as_deref()).await?;
            let timeout = self.endpoint_timeouts.get(spec.method.endpoint).copied().or(self.timeout).or(spec.method.timeout);
            let shared = Arc::new(EndpointShared {
                nats: nats.clone(),
                method: spec.method.method.into(),
                endpoint: spec.method.endpoint.into(),
                timeout,
                code_format: self.code_format,
                expose_internal_errors: self.expose_internal_errors,
                chain: chain.clone(),
                handler: handler.clone(),
                stats: EndpointCounters::default(),
                permits: Arc::new(Semaphore::new(self.max_concurrency)),
                max_concurrency: self.max_concurrency,
                pending_msg_limit: spec.pending_msg_limit,
                pending_bytes_limit: spec.pending_bytes_limit,
                queued: AtomicUsize::new(0),
                queued_bytes: AtomicUsize::new(0),
            });
            endpoints.push((info, shared, subscriber));
        }

        let metadata = self.metadata.clone();
        let infos: Vec<EndpointInfo> = endpoints.iter().map(|(info, _, _)| info.clone()).collect();
        let identity = Arc::new(Identity {
            name: self.name.clone(),
            id: id.clone(),
            version: self.version.clone(),
            metadata,
            started,
            endpoints: endpoints.iter().map(|(info, shared, _)| (info.clone(), shared.clone())).collect(),
        });
        let ping = json_body(&identity.document(PING_RESPONSE_TYPE))?;
        let info = json_body(&InfoResponse {
            identity: identity.document(INFO_RESPONSE_TYPE),
            description: self.description.clone(),
            endpoints: infos.clone(),
        })?;

        let mut discovery = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            for subject in
                [format!("$SRV.{verb}"), format!("$SRV.{verb}.{}", self.name), format!("$SRV.{verb}.{}.{id}", self.name)]
            {
                discovery.push((verb, subscribe(nats, &subject, None).await?));
            }
        }
        let discovery_task = tokio::spawn(serve_discovery(nats.clone(), discovery, identity.clone(), ping, info));
        let endpoint_tasks = endpoints
            .into_iter()
            .map(|(_, shared, subscriber)| tokio::spawn(serve_endpoint(shared, subscriber, stop_rx.clone())))
            .collect();
        Ok(Service { identity, infos, stop: stop_tx, endpoint_tasks, discovery_task: Some(discovery_task) })
    }
}

/// A running service. Dropping it without [`Service::stop`] aborts its tasks
/// at once; `stop` ends it gracefully.
#[must_use = "the service stops when this handle is dropped"]
pub struct Service {
    identity: Arc<Identity>,
    infos: Vec<EndpointInfo>,
    stop: watch::Sender<bool>,
    endpoint_tasks: Vec<JoinHandle<()>>,
    discovery_task: Option<JoinHandle<()>>,
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

    /// Stops gracefully: stops taking requests (unsubscribing the endpoints
    /// and serving what was already delivered), waits for requests in
    /// flight, then leaves discovery.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.endpoint_tasks) {
            let _ = task.await;
        }
        if let Some(task) = self.discovery_task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for task in &self.endpoint_tasks {
            task.abort();
        }
        if let Some(task) = &self.discovery_task {
            task.abort();
        }
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

/// Who the service is, for discovery replies.
struct Identity {
    name: String,
    id: String,
    version: String,
    metadata: BTreeMap<String, String>,
    started: String,
    endpoints: Vec<(EndpointInfo, Arc<EndpointShared>)>,
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
            endpoints: self.endpoints.iter().map(|(info, shared)| shared.stats.snapshot(info)).collect(),
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

/// Everything the request path of one endpoint needs.
struct EndpointShared {
    nats: async_nats::Client,
    method: Arc<str>,
    endpoint: Arc<str>,
    timeout: Option<Duration>,
    code_format: CodeFormat,
    expose_internal_errors: bool,
    chain: Arc<[Arc<dyn ServerInterceptor>]>,
    handler: Arc<dyn EndpointHandler>,
    stats: EndpointCounters,
    permits: Arc<Semaphore>,
    max_concurrency: usize,
    pending_msg_limit: Option<usize>,
    pending_bytes_limit: Option<usize>,
    queued: AtomicUsize,
    queued_bytes: AtomicUsize,
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

/// Reads requests until stopped, handing each to its own task while the
/// endpoint has a free slot; with pending limits set, sheds what does not fit.
async fn serve_endpoint(shared: Arc<EndpointShared>, mut subscriber: Subscriber, mut stop: watch::Receiver<bool>) {
    let mut draining = false;
    loop {
        let message = if draining {
            subscriber.next().await
        } else {
            tokio::select! {
                message = subscriber.next() => message,
                _ = stop.changed() => {
                    // Stop taking requests; what was delivered already is still served.
                    if let Err(err) = subscriber.drain().await {
                        tracing::warn!(error = %err, endpoint = %shared.endpoint, "draining endpoint");
                        break;
                    }
                    draining = true;
                    continue;
                }
            }
        };
        let Some(message) = message else { break };
        dispatch(&shared, message).await;
    }
    // Wait for the requests in flight.
    let _ = shared.permits.acquire_many(u32::try_from(shared.max_concurrency).unwrap_or(u32::MAX)).await;
}

async fn dispatch(shared: &Arc<EndpointShared>, message: Message) {
    let received = Instant::now();
    if let Ok(permit) = shared.permits.clone().try_acquire_owned() {
        serve_now(shared.clone(), message, received, permit).await;
        return;
    }
    let limited = shared.pending_msg_limit.is_some() || shared.pending_bytes_limit.is_some();
    if !limited {
        // No pending limit: wait for a slot, leaving further requests in the subscription's buffer.
        let Ok(permit) = shared.permits.clone().acquire_owned().await else { return };
        serve_now(shared.clone(), message, received, permit).await;
        return;
    }
    let size = message.length;
    let over_msgs = shared.pending_msg_limit.is_some_and(|limit| shared.queued.load(Ordering::Relaxed) >= limit);
    let over_bytes = shared.pending_bytes_limit.is_some_and(|limit| shared.queued_bytes.load(Ordering::Relaxed) + size > limit);
    if over_msgs || over_bytes {
        let err = Error::unavailable(format!("endpoint {} is overloaded", shared.endpoint));
        reply(shared, message.reply, Err(err), None, received).await;
        return;
    }
    shared.queued.fetch_add(1, Ordering::Relaxed);
    shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
    let shared = shared.clone();
    tokio::spawn(async move {
        let permit = shared.permits.clone().acquire_owned().await;
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        if let Ok(permit) = permit {
            handle(&shared, message, received).await;
            drop(permit);
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
async fn serve_now(shared: Arc<EndpointShared>, message: Message, received: Instant, permit: OwnedSemaphorePermit) {
    let mut request = Box::pin(async move {
        handle(&shared, message, received).await;
        drop(permit);
    });
    let first_poll = std::future::poll_fn(|cx| Poll::Ready(request.as_mut().poll(cx))).await;
    if first_poll.is_pending() {
        tokio::spawn(request);
    }
}

/// Serves one request: deadline, interceptors and handler, panic isolation, reply, stats.
async fn handle(shared: &EndpointShared, message: Message, received: Instant) {
    let headers = message.headers.unwrap_or_default();
    let budget = headers.get(headers::TIMEOUT).and_then(|value| headers::decode_timeout(value.as_str()));
    let deadline = match (budget, shared.timeout) {
        (Some(a), Some(b)) => Some(received + a.min(b)),
        (a, b) => a.or(b).map(|limit| received + limit),
    };
    let ctx = RequestContext::new(shared.method.clone(), shared.endpoint.clone(), message.subject, headers, deadline);
    let response_headers = ctx.response_headers_handle();
    let call = AssertUnwindSafe(ServerNext::start(shared.chain.clone(), shared.handler.clone()).run(ctx, message.payload))
        .catch_unwind();
    let outcome = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, call).await.unwrap_or_else(|_| {
            Ok(Err(Error::deadline_exceeded(format!("{} did not finish before its deadline", shared.method))))
        }),
        None => call.await,
    };
    let result = outcome.unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".to_owned());
        Err(Error::from_internal(std::io::Error::other(format!("handler panicked: {detail}"))))
    });
    reply(shared, message.reply, result, response_headers.take(), received).await;
}

async fn reply(
    shared: &EndpointShared,
    reply_to: Option<Subject>,
    result: Result<Bytes, Error>,
    response_headers: Option<HeaderMap>,
    received: Instant,
) {
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
                    tracing::error!(method = %shared.method, detail, "handler failed without an error code");
                    if shared.expose_internal_errors { detail } else { err.message() }
                }
                None => err.message(),
            };
            headers.insert(headers::ERROR_CODE, err.code().to_wire(shared.code_format).as_ref());
            headers.insert(headers::ERROR_MESSAGE, sanitize_header_value(message).as_str());
            (Some(headers), err.data().clone())
        }
    };
    let Some(reply_to) = reply_to else {
        shared.stats.record(elapsed, result.as_ref().err());
        return;
    };
    let sent = match headers {
        Some(headers) => shared.nats.publish_with_headers(reply_to.clone(), headers, body).await,
        None => shared.nats.publish(reply_to.clone(), body).await,
    };
    match (sent, result) {
        (Ok(()), result) => shared.stats.record(elapsed, result.as_ref().err()),
        (Err(err), Ok(_)) => {
            // Most likely a response over max_payload: tell the caller rather than leave it waiting.
            let failure = Error::resource_exhausted(format!("the response could not be sent: {err}"));
            tracing::warn!(error = %err, method = %shared.method, "sending reply");
            let mut headers = HeaderMap::new();
            headers.insert(headers::ERROR_CODE, failure.code().to_wire(shared.code_format).as_ref());
            headers.insert(headers::ERROR_MESSAGE, failure.message());
            if let Err(err) = shared.nats.publish_with_headers(reply_to, headers, Bytes::new()).await {
                tracing::warn!(error = %err, method = %shared.method, "sending error reply");
            }
            shared.stats.record(elapsed, Some(&failure));
        }
        (Err(err), Err(failure)) => {
            tracing::warn!(error = %err, method = %shared.method, "sending error reply");
            shared.stats.record(elapsed, Some(&failure));
        }
    }
}

/// Header values cannot hold line breaks; keep the message on one line.
fn sanitize_header_value(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}
