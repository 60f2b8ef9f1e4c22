//! [`ServiceBuilder`]: a service's configuration, validated and started.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, watch};

use super::discovery::{EndpointInfo, INFO_RESPONSE_TYPE, Identity, InfoResponse, PING_RESPONSE_TYPE};
use super::endpoint::{Endpoint, EndpointCounters};
use super::interceptor::{EndpointHandler, ServerInterceptor, ServerInterceptorFn, ServerNext};
use super::reply_policy::{ReplyCheck, ReplyPolicy};
use super::{
    Connector, DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_CONCURRENCY, DEFAULT_PENDING_MSG_LIMIT, DEFAULT_QUEUE_GROUP,
    DEFAULT_RETRY_AFTER_HINT, Plan, Service, json_body, valid_subject, watch_connection,
};
use crate::code::CodeFormat;
use crate::context::RequestContext;
use crate::error::{Error, StartError};
use crate::spec::{EndpointSpec, ServiceSpec};
use crate::stream::StreamSettings;

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
/// # async fn demo(nats: async_nats::Client, builder: nats_micro_runtime::ServiceBuilder) -> Result<(), Box<dyn std::error::Error>> {
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
    proto_name: Arc<str>,
    version: String,
    description: String,
    metadata: BTreeMap<String, String>,
    subject_prefix: String,
    queue_group: Option<String>,
    timeout: Option<Duration>,
    endpoint_timeouts: HashMap<String, Duration>,
    code_format: CodeFormat,
    expose_internal_errors: bool,
    retry_after_hint: Duration,
    max_concurrency: usize,
    pending_limit: Option<Option<usize>>,
    drain_timeout: Duration,
    reply_policy: ReplyPolicy,
    stream_settings: StreamSettings,
    connector: Option<Connector>,
    interceptors: Vec<Arc<dyn ServerInterceptor>>,
    endpoints: Vec<(EndpointSpec, Arc<dyn EndpointHandler>)>,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("subject_prefix", &self.subject_prefix)
            .field("queue_group", &self.queue_group)
            .field("endpoints", &self.endpoints())
            .field("max_concurrency", &self.max_concurrency)
            .field("drain_timeout", &self.drain_timeout)
            .field("reply_policy", &self.reply_policy)
            .finish_non_exhaustive()
    }
}

impl ServiceBuilder {
    /// A builder with everything the proto declares for the service.
    pub fn new(spec: &ServiceSpec) -> Self {
        ServiceBuilder {
            name: spec.name.to_owned(),
            proto_name: spec.proto_name.into(),
            version: spec.version.to_owned(),
            description: spec.description.to_owned(),
            metadata: spec.metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            subject_prefix: spec.subject_prefix.to_owned(),
            queue_group: (!spec.queue_group_disabled).then(|| DEFAULT_QUEUE_GROUP.to_owned()),
            timeout: None,
            endpoint_timeouts: HashMap::new(),
            code_format: CodeFormat::Numbers,
            expose_internal_errors: false,
            retry_after_hint: DEFAULT_RETRY_AFTER_HINT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            pending_limit: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            reply_policy: ReplyPolicy::default(),
            stream_settings: StreamSettings::default(),
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

    /// Sets the keepalive and silence limits of the service's streams
    /// (PROTOCOL §9.5; 5 s and 20 s by default).
    pub fn stream_settings(mut self, settings: StreamSettings) -> Self {
        self.stream_settings = settings;
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

    /// The delay of the `RetryInfo` detail sent with a shed request (one the
    /// full backlog cannot take): when the caller should come back. Default
    /// [`DEFAULT_RETRY_AFTER_HINT`].
    pub fn retry_after_hint(mut self, delay: Duration) -> Self {
        self.retry_after_hint = delay;
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
    /// # async fn demo(builder: nats_micro_runtime::ServiceBuilder) -> Result<(), Box<dyn std::error::Error>> {
    /// let url = "nats://127.0.0.1:4222".to_owned();
    /// let nats = async_nats::connect(&url).await?;
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
            metadata: spec.info_metadata(),
        }
    }

    fn validate(&self) -> Result<(), StartError> {
        let invalid = |what: String| Err(StartError::InvalidConfig(what));
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
    pub async fn start(self, nats: &async_nats::Client) -> Result<Service, StartError> {
        self.validate()?;
        let id = nuid::next().to_string();
        let started = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let chain: Arc<[Arc<dyn ServerInterceptor>]> = self.interceptors.clone().into();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let infos: Vec<EndpointInfo> = self.endpoints.iter().map(|(spec, _)| self.endpoint_info(spec)).collect();
        let own_subjects = infos.iter().map(|info| info.subject.clone()).collect();
        let reply_check = Arc::new(ReplyCheck::new(self.reply_policy.clone(), own_subjects));

        let endpoints: Vec<Arc<Endpoint>> = self
            .endpoints
            .iter()
            .zip(&infos)
            .map(|((spec, handler), info)| {
                let timeout = self.endpoint_timeouts.get(spec.method.endpoint).copied().or(self.timeout).or(spec.method.timeout);
                Arc::new(Endpoint {
                    info: info.clone(),
                    service: self.name.as_str().into(),
                    proto_service: self.proto_name.clone(),
                    method: spec.method.method.into(),
                    endpoint: spec.method.endpoint.into(),
                    timeout,
                    code_format: self.code_format,
                    expose_internal_errors: self.expose_internal_errors,
                    retry_after_hint: self.retry_after_hint,
                    chain: chain.clone(),
                    handler: handler.clone(),
                    reply_check: reply_check.clone(),
                    stats: EndpointCounters::default(),
                    permits: Arc::new(Semaphore::new(self.max_concurrency)),
                    max_concurrency: self.max_concurrency,
                    pending_msg_limit: self
                        .pending_limit
                        .unwrap_or(Some(spec.pending_msg_limit.unwrap_or(DEFAULT_PENDING_MSG_LIMIT))),
                    pending_bytes_limit: spec.pending_bytes_limit,
                    queued: AtomicUsize::new(0),
                    queued_bytes: AtomicUsize::new(0),
                    stream_settings: self.stream_settings,
                    window: spec.window,
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
        let plan =
            Arc::new(Plan { identity: identity.clone(), reply_check, endpoints, ping, info, stop: stop_rx, cancel: cancel_rx });
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
