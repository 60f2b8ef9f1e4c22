//! The model every emitter reads: services, methods and their validated
//! options, read once from the descriptors.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FileDescriptor, MessageDescriptor, MethodDescriptor, ServiceDescriptor,
};
use prost_types::method_options::IdempotencyLevel;

pub use crate::error::{Problem, Problems};
use crate::naming::{go_camel_case, subject_token};
use crate::options::{EndpointOptions, ServiceOptions, StreamOptions};

mod check;
mod store;

pub use check::{RESERVED_CODE_NAMES, invalid_subject, is_identifier, is_upper_snake, valid_service_name};
pub use store::{
    ChunkedIo, DEFAULT_CHUNK_SIZE, KeyEnum, KeyField, KeyKind, KeySegment, KeyTemplate, KvBucket, KvStore, KvWriteMode,
    MAX_CHUNK_SIZE, ObjectBucket, ObjectStore, PersistFailurePolicy, is_key_char,
};

/// A canonical error code: its wire name and, for the seven built-ins, the
/// number servers send by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanonicalCode {
    /// Wire name (`NOT_FOUND`).
    pub name: &'static str,
    /// HTTP-like number for the built-ins (`404`), `None` for the others.
    pub number: Option<u16>,
}

const fn code(name: &'static str, number: Option<u16>) -> CanonicalCode {
    CanonicalCode { name, number }
}

/// The one table of canonical codes on the plugin side, in the Go plugin's
/// order (its seven built-ins first, in its order, then the further
/// canonical codes): the order users see in every language. Pinned to the
/// runtime's `Code` table by `tests/canonical_codes.rs`.
pub const CANONICAL_CODES: [CanonicalCode; 16] = [
    code("INVALID_ARGUMENT", Some(400)),
    code("NOT_FOUND", Some(404)),
    code("ALREADY_EXISTS", Some(409)),
    code("PERMISSION_DENIED", Some(403)),
    code("UNAUTHENTICATED", Some(401)),
    code("INTERNAL", Some(500)),
    code("UNAVAILABLE", Some(503)),
    code("CANCELLED", None),
    code("UNKNOWN", None),
    code("DEADLINE_EXCEEDED", None),
    code("RESOURCE_EXHAUSTED", None),
    code("FAILED_PRECONDITION", None),
    code("ABORTED", None),
    code("OUT_OF_RANGE", None),
    code("UNIMPLEMENTED", None),
    code("DATA_LOSS", None),
];

/// The names of the first `N` codes of [`CANONICAL_CODES`] from `start`.
const fn code_names<const N: usize>(start: usize) -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        names[i] = CANONICAL_CODES[start + i].name;
        i += 1;
    }
    names
}

/// The names of [`CANONICAL_CODES`], in the same (the Go plugin's) order:
/// the table the TypeScript and Python emitters list.
pub const CANONICAL_CODE_NAMES: [&str; 16] = code_names(0);

/// The seven built-in codes (those with a number), which custom codes must
/// not repeat, in the Go plugin's order.
pub const BUILTIN_CODES: [&str; 7] = code_names(0);

/// The further canonical codes the runtime knows (sent by name). A custom
/// code with one of these names is that canonical code.
pub const EXTRA_CANONICAL_CODES: [&str; 9] = code_names(7);

/// Everything to generate, grouped by proto file in request order.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Files to generate that declare at least one service (skipped or not).
    pub files: Vec<File>,
}

/// One proto file to generate.
#[derive(Clone, Debug)]
pub struct File {
    /// Path as imported (`order/v1/service.proto`).
    pub name: String,
    /// Proto package (`order.v1`), possibly empty.
    pub package: String,
    /// Services that are generated (not skipped), in proto order.
    pub services: Vec<Service>,
}

/// One service to generate.
#[derive(Clone, Debug)]
pub struct Service {
    /// Proto name (`OrderService`).
    pub proto_name: String,
    /// Full proto name (`order.v1.OrderService`).
    pub full_name: String,
    /// Proto package.
    pub package: String,
    /// Leading comments.
    pub comments: Option<String>,
    /// `option deprecated = true`.
    pub deprecated: bool,
    /// ADR-32 name.
    pub name: String,
    /// ADR-32 version.
    pub version: String,
    /// ADR-32 description.
    pub description: String,
    /// Subject prefix.
    pub subject_prefix: String,
    /// Service metadata, sorted by key.
    pub metadata: BTreeMap<String, String>,
    /// Service-wide timeout.
    pub timeout: Option<Duration>,
    /// Encode with the proto3 JSON mapping.
    pub json: bool,
    /// Custom codes that are not canonical, in declaration order.
    pub error_codes: Vec<String>,
    /// No queue group.
    pub queue_group_disabled: bool,
    /// Unary methods, in proto order.
    pub methods: Vec<Method>,
    /// Streaming methods, in proto order.
    pub streaming: Vec<StreamingMethod>,
}

/// One RPC's endpoint (a unary RPC, or the endpoint of a streaming one).
#[derive(Clone, Debug)]
pub struct Method {
    /// Position among the service's generated RPCs, in proto order.
    pub position: usize,
    /// Proto name (`CreateOrder`).
    pub proto_name: String,
    /// Endpoint name and last subject token (`create_order`).
    pub endpoint: String,
    /// Full subject (`api.v1.create_order`).
    pub subject: String,
    /// Request message.
    pub input: MessageRef,
    /// Response message.
    pub output: MessageRef,
    /// Leading comments.
    pub comments: Option<String>,
    /// `option deprecated = true`.
    pub deprecated: bool,
    /// Safe to repeat: `option idempotency_level` is `NO_SIDE_EFFECTS` or
    /// `IDEMPOTENT` (PROTOCOL §10.1).
    pub idempotent: bool,
    /// The endpoint's own timeout.
    pub timeout: Option<Duration>,
    /// Endpoint metadata, sorted by key.
    pub metadata: BTreeMap<String, String>,
    /// No queue group for this endpoint.
    pub queue_group_disabled: bool,
    /// Pending message limit (`None`: unlimited).
    pub pending_msg_limit: Option<u32>,
    /// Pending bytes limit (`None`: unlimited).
    pub pending_bytes_limit: Option<u32>,
    /// `(natsmicro.kv_store)`: the response is kept in a key-value bucket
    /// (PROTOCOL §12.2). Unary RPCs only.
    pub kv_store: Option<KvStore>,
    /// `(natsmicro.object_store)`: the response is kept in an object store
    /// (PROTOCOL §12.3). Unary RPCs only.
    pub object_store: Option<ObjectStore>,
}

/// A streaming RPC: the endpoint it is served on (names, subject, message
/// types, endpoint options) and how it streams.
#[derive(Clone, Debug)]
pub struct StreamingMethod {
    /// The endpoint, as for a unary RPC (its `input` and `output` are the
    /// element types of the request and response streams).
    pub method: Method,
    /// Which side streams.
    pub kind: StreamKind,
    /// `(natsmicro.stream)` max_inflight: the flow-control window (PROTOCOL §9.4).
    pub max_inflight: Option<u32>,
    /// `(natsmicro.stream)` ordered (every stream is ordered; kept for the Go plugin's protos).
    pub ordered: bool,
    /// `(natsmicro.chunked_io)`: the stream carries one payload in chunks
    /// (PROTOCOL §12.5): an upload for client-streaming, a download for
    /// server-streaming.
    pub chunked_io: Option<ChunkedIo>,
}

/// Which side of an RPC streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// One request, a stream of responses.
    Server,
    /// A stream of requests, one response.
    Client,
    /// Streams both ways.
    Bidirectional,
}

impl StreamKind {
    /// `server-streaming`, `client-streaming` or `bidirectional-streaming`.
    pub fn label(self) -> &'static str {
        match self {
            StreamKind::Server => "server-streaming",
            StreamKind::Client => "client-streaming",
            StreamKind::Bidirectional => "bidirectional-streaming",
        }
    }

    /// The caller sends a stream of requests.
    pub fn client_streams(self) -> bool {
        matches!(self, StreamKind::Client | StreamKind::Bidirectional)
    }

    /// The server sends a stream of responses.
    pub fn server_streams(self) -> bool {
        matches!(self, StreamKind::Server | StreamKind::Bidirectional)
    }
}

impl std::fmt::Display for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One RPC of a service as its endpoint is served: unary or streaming.
#[derive(Clone, Copy, Debug)]
pub enum Rpc<'a> {
    /// A unary RPC.
    Unary(&'a Method),
    /// A streaming RPC.
    Streaming(&'a StreamingMethod),
}

impl<'a> Rpc<'a> {
    /// The endpoint.
    pub fn method(self) -> &'a Method {
        match self {
            Rpc::Unary(method) => method,
            Rpc::Streaming(streaming) => &streaming.method,
        }
    }

    /// How it streams (`None`: unary).
    pub fn stream_kind(self) -> Option<StreamKind> {
        match self {
            Rpc::Unary(_) => None,
            Rpc::Streaming(streaming) => Some(streaming.kind),
        }
    }
}

impl Service {
    /// Every generated RPC, unary and streaming, in proto order (the order
    /// of the service's ADR-32 endpoints).
    pub fn rpcs(&self) -> Vec<Rpc<'_>> {
        let mut rpcs: Vec<Rpc<'_>> =
            self.methods.iter().map(Rpc::Unary).chain(self.streaming.iter().map(Rpc::Streaming)).collect();
        rpcs.sort_by_key(|rpc| rpc.method().position);
        rpcs
    }
}

/// A message type, located so every language can name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRef {
    /// Full name without leading dot (`order.v1.Order.Item`).
    pub full_name: String,
    /// Package (`order.v1`).
    pub package: String,
    /// Names from the outermost message to this one (`["Order", "Item"]`).
    pub path: Vec<String>,
    /// The proto file that declares it.
    pub file: String,
}

struct Extensions {
    service: Option<ExtensionDescriptor>,
    endpoint: Option<ExtensionDescriptor>,
    kv_store: Option<ExtensionDescriptor>,
    object_store: Option<ExtensionDescriptor>,
    stream: Option<ExtensionDescriptor>,
    chunked_io: Option<ExtensionDescriptor>,
}

impl Extensions {
    /// Our extensions in the pool, if imported; one with another number or
    /// a non-message type is a problem (a modified options.proto).
    fn find(pool: &DescriptorPool, problems: &mut Vec<Problem>) -> Extensions {
        let mut find = |name: &str, number: u32| {
            let ext = pool.get_extension_by_name(&format!("natsmicro.{name}"))?;
            let wrong = if ext.number() != number {
                Some(format!("extension number is {}, expected {number}", ext.number()))
            } else if ext.kind().as_message().is_none() || ext.is_list() {
                Some("extension is not a single message".to_owned())
            } else {
                None
            };
            if let Some(wrong) = wrong {
                problems.push(Problem {
                    file: ext.parent_file().name().to_owned(),
                    element: ext.full_name().to_owned(),
                    option: format!("option (natsmicro.{name})"),
                    message: format!("{wrong}: use natsmicro/options.proto as shipped"),
                });
                return None;
            }
            Some(ext)
        };
        Extensions {
            service: find("service", 50001),
            endpoint: find("endpoint", 50002),
            kv_store: find("kv_store", 50003),
            object_store: find("object_store", 50004),
            stream: find("stream", 50005),
            chunked_io: find("chunked_io", 50006),
        }
    }
}

/// Reads the files to generate from a descriptor pool that was decoded with
/// its options intact (so that our extensions are readable). Every name
/// that reaches a subject or an identifier is validated here, once.
pub fn build(pool: &DescriptorPool, files_to_generate: &[String]) -> Result<(Model, Vec<String>), Problems> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let extensions = Extensions::find(pool, &mut problems);
    let mut model = Model::default();
    for name in files_to_generate {
        let Some(file) = pool.get_file_by_name(name) else {
            problems.push(Problem {
                file: crate::limits::shorten(name),
                element: "(file)".into(),
                option: "file".into(),
                message: "listed to generate but not among the request's files".into(),
            });
            continue;
        };
        if file.services().len() == 0 {
            continue;
        }
        let before = problems.len();
        check::file_names(&file, &mut problems);
        if problems.len() > before {
            // Names that cannot become identifiers: reading further would
            // only repeat the same problem in other words.
            continue;
        }
        let comments = comment_index(&file);
        let mut reader = Reader {
            file: &file,
            comments: &comments,
            extensions: &extensions,
            problems: &mut problems,
            warnings: &mut warnings,
        };
        let services = file.services().filter_map(|service| reader.service(&service)).collect();
        let file = File { name: file.name().to_owned(), package: file.package_name().to_owned(), services };
        store::check_shared_buckets(&file, &mut problems);
        model.files.push(file);
    }
    check_subject_clashes(&model, &mut warnings);
    if problems.is_empty() { Ok((model, warnings)) } else { Err(Problems(problems)) }
}

/// Two services serving the same subject would split each other's requests.
fn check_subject_clashes(model: &Model, warnings: &mut Vec<String>) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for service in model.files.iter().flat_map(|f| &f.services) {
        for method in &service.methods {
            if let Some(other) = seen.insert(&method.subject, &service.full_name)
                && other != service.full_name
            {
                warnings.push(format!(
                    "{} and {} both serve subject {}: give them different subject_prefix values",
                    other, service.full_name, method.subject
                ));
            }
        }
    }
}

struct Reader<'a> {
    file: &'a FileDescriptor,
    comments: &'a HashMap<Vec<i32>, String>,
    extensions: &'a Extensions,
    problems: &'a mut Vec<Problem>,
    warnings: &'a mut Vec<String>,
}

/// Where a value comes from, for problems: the element and the option.
#[derive(Clone, Copy)]
struct Site<'s> {
    element: &'s str,
    option: &'static str,
}

impl Reader<'_> {
    fn problem(&mut self, site: Site<'_>, field: &str, message: String) {
        let option = if field.is_empty() { format!("option {}", site.option) } else { format!("option {}.{field}", site.option) };
        self.problems.push(Problem { file: self.file.name().to_owned(), element: site.element.to_owned(), option, message });
    }

    /// Our extension `ext` on `options`, decoded into its typed struct
    /// (`None` when unset or unreadable; the latter is a problem).
    fn extension<T: prost::Message + Default>(
        &mut self,
        options: &DynamicMessage,
        ext: Option<&ExtensionDescriptor>,
        site: Site<'_>,
    ) -> Option<T> {
        let ext = ext.filter(|ext| options.has_extension(ext))?;
        let value = options.get_extension(ext);
        let decoded = match value.as_message() {
            Some(message) => message.transcode_to::<T>().map_err(|err| err.to_string()),
            None => Err("not a message".to_owned()),
        };
        decoded.map_err(|err| self.problem(site, "", format!("cannot be read: {err}"))).ok()
    }

    /// A non-negative count; zero is `None`.
    fn count(&mut self, site: Site<'_>, field: &str, value: i32) -> Option<u32> {
        if value < 0 {
            self.problem(site, field, format!("must not be negative, got {value}"));
        }
        u32::try_from(value).ok().filter(|v| *v > 0)
    }

    /// A `google.protobuf.Duration`; zero or unset is `None`.
    fn duration(&mut self, site: Site<'_>, field: &str, value: Option<&prost_types::Duration>) -> Option<Duration> {
        let value = value?;
        let (seconds, nanos) = (value.seconds, value.nanos);
        if seconds < 0 || nanos < 0 {
            self.problem(site, field, format!("must not be negative, got {seconds}s {nanos}ns"));
            return None;
        }
        if nanos >= 1_000_000_000 {
            self.problem(site, field, format!("nanos must be below 1000000000, got {nanos}"));
            return None;
        }
        let duration = Duration::new(seconds.unsigned_abs(), nanos.unsigned_abs());
        (!duration.is_zero()).then_some(duration)
    }

    fn service(&mut self, service: &ServiceDescriptor) -> Option<Service> {
        let full_name = service.full_name().to_owned();
        let site = Site { element: &full_name, option: "(natsmicro.service)" };
        let opts: ServiceOptions = self.extension(&service.options(), self.extensions.service.as_ref(), site).unwrap_or_default();
        if opts.skip {
            return None;
        }
        let identity = self.identity(service, &opts, site);
        let timeout = self.duration(site, "timeout", opts.timeout.as_ref());
        let error_codes = self.error_codes(&opts.error_codes, site);
        let (methods, streaming) = self.methods(service, &identity.subject_prefix);
        Some(Service {
            proto_name: service.name().to_owned(),
            package: service.package_name().to_owned(),
            comments: self.comments.get(service.path()).cloned(),
            deprecated: service.service_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
            name: identity.name,
            version: identity.version,
            description: identity.description,
            subject_prefix: identity.subject_prefix,
            metadata: opts.metadata,
            timeout,
            json: opts.json,
            error_codes,
            queue_group_disabled: opts.queue_group_disabled,
            methods,
            streaming,
            full_name,
        })
    }

    /// The ADR-32 identity and subject prefix, with defaults, validated.
    fn identity(&mut self, service: &ServiceDescriptor, opts: &ServiceOptions, site: Site<'_>) -> Identity {
        let or = |value: &str, default: String| if value.is_empty() { default } else { value.to_owned() };
        // The Go plugin registers its protogen `GoName` (`order_service` → `OrderService`).
        let go_name = go_camel_case(service.name());
        let name = or(&opts.name, go_name.clone());
        if !valid_service_name(&name) {
            self.problem(site, "name", format!("{name:?} must match [A-Za-z0-9_-]+"));
        }
        let version = or(&opts.version, "1.0.0".to_owned());
        if semver::Version::parse(&version).is_err() {
            self.problem(site, "version", format!("{version:?} is not a SemVer version (like 1.2.3)"));
        }
        let subject_prefix = or(&opts.subject_prefix, subject_token(service.name()));
        if let Some(why) = invalid_subject(&subject_prefix) {
            self.problem(site, "subject_prefix", format!("{subject_prefix:?} {why}"));
        }
        let description = or(&opts.description, format!("{go_name} - generated by protoc-gen-nats-micro"));
        Identity { name, version, description, subject_prefix }
    }

    /// The custom codes that are not canonical, validated; see
    /// [`check::code_problem`] for the rules.
    fn error_codes(&mut self, codes: &[String], site: Site<'_>) -> Vec<String> {
        let mut kept: Vec<String> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for code in codes {
            if let Some(message) = check::code_problem(code, &seen) {
                self.problem(site, "error_codes", message);
                continue;
            }
            seen.push(code);
            if !EXTRA_CANONICAL_CODES.contains(&code.as_str()) {
                kept.push(code.clone());
            }
        }
        kept
    }

    /// The unary and the streaming methods, skipping `skip: true` ones;
    /// names that would collide in some language are problems.
    fn methods(&mut self, service: &ServiceDescriptor, prefix: &str) -> (Vec<Method>, Vec<StreamingMethod>) {
        let (mut methods, mut streaming) = (Vec::new(), Vec::new());
        let mut names = check::NameClashes::default();
        for method in service.methods() {
            let element = format!("{}.{}", service.full_name(), method.name());
            let site = Site { element: &element, option: "(natsmicro.endpoint)" };
            let opts: EndpointOptions =
                self.extension(&method.options(), self.extensions.endpoint.as_ref(), site).unwrap_or_default();
            if opts.skip {
                continue;
            }
            if let Some(message) = names.add(method.name()) {
                self.problems.push(Problem {
                    file: self.file.name().to_owned(),
                    element: element.clone(),
                    option: "name".to_owned(),
                    message,
                });
            }
            let mut endpoint = self.method(&method, opts, site, prefix);
            endpoint.position = methods.len() + streaming.len();
            if method.is_client_streaming() || method.is_server_streaming() {
                streaming.push(self.streaming_method(&method, endpoint));
            } else {
                methods.push(endpoint);
            }
        }
        (methods, streaming)
    }

    fn method(&mut self, method: &MethodDescriptor, opts: EndpointOptions, site: Site<'_>, prefix: &str) -> Method {
        let timeout = self.duration(site, "timeout", opts.timeout.as_ref());
        let pending_msg_limit = self.count(site, "pending_msg_limit", opts.pending_msg_limit);
        let pending_bytes_limit = self.count(site, "pending_bytes_limit", opts.pending_bytes_limit);
        let input = method.input();
        let streaming = method.is_client_streaming() || method.is_server_streaming();
        let (mut kv_store, mut object_store) = (self.kv_store(method, site.element), self.object_store(method, site.element));
        if streaming && (kv_store.is_some() || object_store.is_some()) {
            // The Go plugin persists unary responses only and ignores these options on streams.
            self.warnings.push(format!(
                "{}: (natsmicro.kv_store) and (natsmicro.object_store) apply to unary RPCs; ignored on this streaming RPC",
                site.element
            ));
            (kv_store, object_store) = (None, None);
        }
        if !streaming {
            self.chunked_io(method, site.element);
        }
        let endpoint = subject_token(method.name());
        Method {
            position: 0,
            proto_name: method.name().to_owned(),
            subject: format!("{prefix}.{endpoint}"),
            endpoint,
            input: message_ref(&input),
            output: message_ref(&method.output()),
            comments: self.comments.get(method.path()).cloned(),
            deprecated: method.method_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
            idempotent: method
                .method_descriptor_proto()
                .options
                .as_ref()
                .is_some_and(|o| matches!(o.idempotency_level(), IdempotencyLevel::NoSideEffects | IdempotencyLevel::Idempotent)),
            timeout,
            metadata: opts.metadata,
            queue_group_disabled: opts.queue_group_disabled,
            pending_msg_limit,
            pending_bytes_limit,
            kv_store,
            object_store,
        }
    }

    fn streaming_method(&mut self, method: &MethodDescriptor, endpoint: Method) -> StreamingMethod {
        let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
            (true, true) => StreamKind::Bidirectional,
            (true, false) => StreamKind::Client,
            _ => StreamKind::Server,
        };
        let element = &format!("{}.{}", method.parent_service().full_name(), method.name());
        let site = Site { element, option: "(natsmicro.stream)" };
        let stream: StreamOptions = self.extension(&method.options(), self.extensions.stream.as_ref(), site).unwrap_or_default();
        let max_inflight = self.count(site, "max_inflight", stream.max_inflight);
        let chunked_io = self.chunked_io(method, element);
        StreamingMethod { method: endpoint, kind, max_inflight, ordered: stream.ordered, chunked_io }
    }
}

/// A service's ADR-32 identity and subject prefix.
struct Identity {
    name: String,
    version: String,
    description: String,
    subject_prefix: String,
}

fn message_ref(message: &MessageDescriptor) -> MessageRef {
    let mut path = vec![message.name().to_owned()];
    let mut parent = message.parent_message();
    while let Some(outer) = parent {
        path.insert(0, outer.name().to_owned());
        parent = outer.parent_message();
    }
    MessageRef {
        full_name: message.full_name().to_owned(),
        package: message.package_name().to_owned(),
        path,
        file: message.parent_file().name().to_owned(),
    }
}

/// Leading comments by element path, read once per file (a lookup per
/// element would scan every location: quadratic in large files).
fn comment_index(file: &FileDescriptor) -> HashMap<Vec<i32>, String> {
    let Some(info) = file.file_descriptor_proto().source_code_info.as_ref() else { return HashMap::new() };
    info.location
        .iter()
        .filter_map(|location| {
            let text = location.leading_comments.as_deref()?.trim_end();
            (!text.trim().is_empty()).then(|| (location.path.clone(), text.to_owned()))
        })
        .collect()
}
