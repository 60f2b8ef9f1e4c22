//! The model every emitter reads: services, methods and their validated
//! options, read once from the descriptors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FileDescriptor, MapKey, MessageDescriptor, MethodDescriptor,
    ReflectMessage, ServiceDescriptor, Value,
};

use crate::naming::subject_token;

/// The seven built-in codes, which custom codes must not repeat.
pub const BUILTIN_CODES: [&str; 7] =
    ["INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "ALREADY_EXISTS", "INTERNAL", "UNAVAILABLE"];

/// The further canonical codes the runtime knows (sent by name). A custom
/// code with one of these names is that canonical code.
pub const EXTRA_CANONICAL_CODES: [&str; 9] = [
    "CANCELLED",
    "UNKNOWN",
    "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "DATA_LOSS",
];

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
    /// Streaming methods, left out of the generated API for now.
    pub streaming: Vec<StreamingMethod>,
}

/// One unary RPC.
#[derive(Clone, Debug)]
pub struct Method {
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
    /// `(natsmicro.kv_store)`, validated; generated in a later version.
    pub kv_store: Option<KvStore>,
    /// `(natsmicro.object_store)`, validated; generated in a later version.
    pub object_store: Option<ObjectStore>,
}

/// A streaming RPC that is left out.
#[derive(Clone, Debug)]
pub struct StreamingMethod {
    /// Proto name.
    pub proto_name: String,
    /// `server-streaming`, `client-streaming` or `bidirectional-streaming`.
    pub kind: &'static str,
    /// `(natsmicro.stream)` max_inflight.
    pub max_inflight: Option<u32>,
    /// `(natsmicro.stream)` ordered.
    pub ordered: bool,
    /// `(natsmicro.chunked_io)`: chunked field and default chunk size.
    pub chunked_io: Option<(String, Option<u32>)>,
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

/// Validated `(natsmicro.kv_store)`.
#[derive(Clone, Debug)]
pub struct KvStore {
    /// Bucket name.
    pub bucket: String,
    /// Key template with `{field}` placeholders.
    pub key_template: String,
    /// Bucket TTL.
    pub ttl: Option<Duration>,
    /// Revisions kept.
    pub max_history: Option<u32>,
    /// Client-side only.
    pub client_only: bool,
    /// Write mode (enum value name).
    pub write_mode: String,
    /// Persist failure policy (enum value name).
    pub persist_failure_policy: String,
}

/// Validated `(natsmicro.object_store)`.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    /// Bucket name.
    pub bucket: String,
    /// Object name template.
    pub key_template: String,
    /// Bucket TTL.
    pub ttl: Option<Duration>,
    /// Client-side only.
    pub client_only: bool,
}

/// A problem found while reading the descriptors: names the file, the
/// service or method, and the option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Proto file.
    pub file: String,
    /// Full name of the service or `Service.Method`.
    pub element: String,
    /// The option, e.g. `(natsmicro.service).version`.
    pub option: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: option {}: {}", self.file, self.element, self.option, self.message)
    }
}

/// All problems of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

struct Extensions {
    service: Option<ExtensionDescriptor>,
    endpoint: Option<ExtensionDescriptor>,
    kv_store: Option<ExtensionDescriptor>,
    object_store: Option<ExtensionDescriptor>,
    stream: Option<ExtensionDescriptor>,
    chunked_io: Option<ExtensionDescriptor>,
}

impl Extensions {
    fn find(pool: &DescriptorPool, problems: &mut Vec<Problem>) -> Extensions {
        let mut find = |name: &str, number: u32| {
            let ext = pool.get_extension_by_name(&format!("natsmicro.{name}"))?;
            if ext.number() != number {
                problems.push(Problem {
                    file: ext.parent_file().name().to_owned(),
                    element: ext.full_name().to_owned(),
                    option: format!("(natsmicro.{name})"),
                    message: format!(
                        "extension number is {}, expected {number}: use natsmicro/options.proto as shipped",
                        ext.number()
                    ),
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
/// its options intact (so that our extensions are readable).
pub fn build(pool: &DescriptorPool, files_to_generate: &[String]) -> Result<(Model, Vec<String>), Problems> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let extensions = Extensions::find(pool, &mut problems);
    let mut model = Model::default();
    for name in files_to_generate {
        let Some(file) = pool.get_file_by_name(name) else {
            problems.push(Problem {
                file: name.clone(),
                element: "(file)".into(),
                option: "-".into(),
                message: "listed to generate but not among the request's files".into(),
            });
            continue;
        };
        if file.services().len() == 0 {
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
        model.files.push(File { name: file.name().to_owned(), package: file.package_name().to_owned(), services });
    }
    check_subject_clashes(&model, &mut warnings);
    if problems.is_empty() { Ok((model, warnings)) } else { Err(Problems(problems)) }
}

/// Two services serving the same subject would split each other's requests.
fn check_subject_clashes(model: &Model, warnings: &mut Vec<String>) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for service in model.files.iter().flat_map(|f| &f.services) {
        for method in &service.methods {
            if let Some(other) = seen.insert(&method.subject, &service.full_name) {
                if other != service.full_name {
                    warnings.push(format!(
                        "{} and {} both serve subject {}: give them different subject_prefix values",
                        other, service.full_name, method.subject
                    ));
                }
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

/// Reads typed fields out of one options message, reporting bad values.
struct Options<'r, 'a> {
    reader: &'r mut Reader<'a>,
    message: Option<DynamicMessage>,
    element: String,
    option: &'static str,
}

impl Options<'_, '_> {
    fn field(&self, name: &str) -> Option<Value> {
        let message = self.message.as_ref()?;
        let field = message.descriptor().get_field_by_name(name)?;
        message.has_field(&field).then(|| message.get_field(&field).into_owned())
    }

    fn string(&self, name: &str) -> String {
        self.field(name).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    fn bool(&self, name: &str) -> bool {
        self.field(name).and_then(|v| v.as_bool()).unwrap_or(false)
    }

    fn strings(&self, name: &str) -> Vec<String> {
        match self.field(name) {
            Some(Value::List(values)) => values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    }

    fn enum_name(&self, name: &str) -> String {
        let Some(message) = &self.message else { return String::new() };
        let Some(field) = message.descriptor().get_field_by_name(name) else { return String::new() };
        let number = message.get_field(&field).as_enum_number().unwrap_or(0);
        match field.kind().as_enum() {
            Some(e) => e.get_value(number).map(|v| v.name().to_owned()).unwrap_or_else(|| number.to_string()),
            None => String::new(),
        }
    }

    fn map(&self, name: &str) -> BTreeMap<String, String> {
        match self.field(name) {
            Some(Value::Map(entries)) => entries
                .iter()
                .filter_map(|(k, v)| match (k, v.as_str()) {
                    (MapKey::String(k), Some(v)) => Some((k.clone(), v.to_owned())),
                    _ => None,
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// A non-negative count; zero or unset is `None`.
    fn count(&mut self, name: &str) -> Option<u32> {
        let value = self.field(name).and_then(|v| v.as_i32()).unwrap_or(0);
        if value < 0 {
            self.problem(name, format!("must not be negative, got {value}"));
        }
        u32::try_from(value).ok().filter(|v| *v > 0)
    }

    /// A `google.protobuf.Duration`; zero or unset is `None`.
    fn duration(&mut self, name: &str) -> Option<Duration> {
        let Some(Value::Message(duration)) = self.field(name) else { return None };
        let seconds = duration.get_field_by_name("seconds").and_then(|v| v.as_i64()).unwrap_or(0);
        let nanos = duration.get_field_by_name("nanos").and_then(|v| v.as_i32()).unwrap_or(0);
        if seconds < 0 || nanos < 0 {
            self.problem(name, format!("must not be negative, got {seconds}s {nanos}ns"));
            return None;
        }
        if nanos >= 1_000_000_000 {
            self.problem(name, format!("nanos must be below 1000000000, got {nanos}"));
            return None;
        }
        let duration = Duration::new(seconds as u64, nanos as u32);
        (!duration.is_zero()).then_some(duration)
    }

    fn problem(&mut self, field: &str, message: String) {
        let option = if field.is_empty() { self.option.to_owned() } else { format!("{}.{field}", self.option) };
        self.reader.problems.push(Problem {
            file: self.reader.file.name().to_owned(),
            element: self.element.clone(),
            option,
            message,
        });
    }
}

impl<'a> Reader<'a> {
    fn options<'r>(
        &'r mut self,
        options: DynamicMessage,
        ext: &Option<ExtensionDescriptor>,
        element: &str,
        option: &'static str,
    ) -> Options<'r, 'a> {
        let message = ext
            .as_ref()
            .filter(|ext| options.has_extension(ext))
            .and_then(|ext| options.get_extension(ext).as_message().cloned());
        Options { reader: self, message, element: element.to_owned(), option }
    }

    fn service(&mut self, service: &ServiceDescriptor) -> Option<Service> {
        let full_name = service.full_name().to_owned();
        let mut opts = self.options(service.options(), &self.extensions.service, &full_name, "(natsmicro.service)");
        if opts.bool("skip") {
            return None;
        }
        let name = Some(opts.string("name")).filter(|n| !n.is_empty()).unwrap_or_else(|| service.name().to_owned());
        if !valid_service_name(&name) {
            opts.problem("name", format!("{name:?} must match [A-Za-z0-9_-]+"));
        }
        let version = Some(opts.string("version")).filter(|v| !v.is_empty()).unwrap_or_else(|| "1.0.0".to_owned());
        if semver::Version::parse(&version).is_err() {
            opts.problem("version", format!("{version:?} is not a SemVer version (like 1.2.3)"));
        }
        let subject_prefix =
            Some(opts.string("subject_prefix")).filter(|p| !p.is_empty()).unwrap_or_else(|| subject_token(service.name()));
        if let Some(why) = invalid_subject(&subject_prefix) {
            opts.problem("subject_prefix", format!("{subject_prefix:?} {why}"));
        }
        let description = opts.string("description");
        let description =
            if description.is_empty() { format!("{} - generated by protoc-gen-nats-micro", service.name()) } else { description };
        let metadata = opts.map("metadata");
        let timeout = opts.duration("timeout");
        let json = opts.bool("json");
        let queue_group_disabled = opts.bool("queue_group_disabled");
        let mut error_codes = Vec::new();
        let mut seen = HashSet::new();
        for code in opts.strings("error_codes") {
            if !is_upper_snake(&code) {
                opts.problem("error_codes", format!("{code:?} is not an UPPER_SNAKE name (like ORDER_EXPIRED)"));
            } else if BUILTIN_CODES.contains(&code.as_str()) {
                opts.problem("error_codes", format!("{code:?} repeats a built-in code; it is always available"));
            } else if !seen.insert(code.clone()) {
                opts.problem("error_codes", format!("{code:?} is declared twice"));
            } else if !EXTRA_CANONICAL_CODES.contains(&code.as_str()) {
                error_codes.push(code);
            }
        }

        let mut methods = Vec::new();
        let mut streaming = Vec::new();
        let mut endpoints: BTreeMap<String, String> = BTreeMap::new();
        for method in service.methods() {
            let element = format!("{full_name}.{}", method.name());
            let mut opts = self.options(method.options(), &self.extensions.endpoint, &element, "(natsmicro.endpoint)");
            if opts.bool("skip") {
                continue;
            }
            let endpoint = subject_token(method.name());
            if let Some(other) = endpoints.insert(endpoint.clone(), method.name().to_owned()) {
                opts.problem("", format!("methods {other} and {} both map to endpoint {endpoint:?}", method.name()));
            }
            if method.is_client_streaming() || method.is_server_streaming() {
                let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
                    (true, true) => "bidirectional-streaming",
                    (true, false) => "client-streaming",
                    _ => "server-streaming",
                };
                streaming.push(self.streaming_method(&method, &element, kind));
                continue;
            }
            methods.push(self.method(&method, &element, &subject_prefix));
        }
        for method in &methods {
            for (option, set) in [("kv_store", method.kv_store.is_some()), ("object_store", method.object_store.is_some())] {
                if set {
                    self.warnings.push(format!(
                        "{full_name}.{}: (natsmicro.{option}) is validated but not generated yet; the RPC works without persistence",
                        method.proto_name
                    ));
                }
            }
        }
        for method in &streaming {
            self.warnings.push(format!(
                "{full_name}.{}: {} RPC left out (streaming is not generated yet)",
                method.proto_name, method.kind
            ));
        }
        Some(Service {
            proto_name: service.name().to_owned(),
            full_name,
            package: service.package_name().to_owned(),
            comments: self.comments.get(service.path()).cloned(),
            deprecated: service.service_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
            name,
            version,
            description,
            subject_prefix,
            metadata,
            timeout,
            json,
            error_codes,
            queue_group_disabled,
            methods,
            streaming,
        })
    }

    fn method(&mut self, method: &MethodDescriptor, element: &str, prefix: &str) -> Method {
        let mut opts = self.options(method.options(), &self.extensions.endpoint, element, "(natsmicro.endpoint)");
        let timeout = opts.duration("timeout");
        let metadata = opts.map("metadata");
        let queue_group_disabled = opts.bool("queue_group_disabled");
        let pending_msg_limit = opts.count("pending_msg_limit");
        let pending_bytes_limit = opts.count("pending_bytes_limit");
        let input = method.input();
        let kv_store = self.kv_store(method, element, &input);
        let object_store = self.object_store(method, element, &input);
        let endpoint = subject_token(method.name());
        Method {
            proto_name: method.name().to_owned(),
            subject: format!("{prefix}.{endpoint}"),
            endpoint,
            input: message_ref(&input),
            output: message_ref(&method.output()),
            comments: self.comments.get(method.path()).cloned(),
            deprecated: method.method_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
            timeout,
            metadata,
            queue_group_disabled,
            pending_msg_limit,
            pending_bytes_limit,
            kv_store,
            object_store,
        }
    }

    fn kv_store(&mut self, method: &MethodDescriptor, element: &str, input: &MessageDescriptor) -> Option<KvStore> {
        let mut opts = self.options(method.options(), &self.extensions.kv_store, element, "(natsmicro.kv_store)");
        opts.message.as_ref()?;
        let bucket = opts.string("bucket");
        check_bucket(&mut opts, &bucket);
        let key_template = opts.string("key_template");
        check_template(&mut opts, &key_template, input);
        for name in ["limit_marker_ttl", "key_ttl", "purge_ttl"] {
            opts.duration(name);
        }
        let max_history = opts.count("max_history");
        if max_history.is_some_and(|h| h > 64) {
            opts.problem("max_history", "must be at most 64 (the NATS key-value limit)".into());
        }
        Some(KvStore {
            ttl: opts.duration("ttl"),
            client_only: opts.bool("client_only"),
            write_mode: opts.enum_name("write_mode"),
            persist_failure_policy: opts.enum_name("persist_failure_policy"),
            bucket,
            key_template,
            max_history,
        })
    }

    fn object_store(&mut self, method: &MethodDescriptor, element: &str, input: &MessageDescriptor) -> Option<ObjectStore> {
        let mut opts = self.options(method.options(), &self.extensions.object_store, element, "(natsmicro.object_store)");
        opts.message.as_ref()?;
        let bucket = opts.string("bucket");
        check_bucket(&mut opts, &bucket);
        let key_template = opts.string("key_template");
        check_template(&mut opts, &key_template, input);
        Some(ObjectStore { ttl: opts.duration("ttl"), client_only: opts.bool("client_only"), bucket, key_template })
    }

    fn streaming_method(&mut self, method: &MethodDescriptor, element: &str, kind: &'static str) -> StreamingMethod {
        let mut stream = self.options(method.options(), &self.extensions.stream, element, "(natsmicro.stream)");
        let max_inflight = stream.count("max_inflight");
        let ordered = stream.bool("ordered");
        let mut chunked = self.options(method.options(), &self.extensions.chunked_io, element, "(natsmicro.chunked_io)");
        let chunked_io = if chunked.message.is_some() {
            let field = chunked.string("chunk_field");
            let has_bytes_field = [method.input(), method.output()]
                .iter()
                .any(|m| m.get_field_by_name(&field).is_some_and(|f| matches!(f.kind(), prost_reflect::Kind::Bytes)));
            if !has_bytes_field {
                chunked.problem("chunk_field", format!("{field:?} is not a bytes field of the request or response"));
            }
            Some((field, chunked.count("default_chunk_size")))
        } else {
            None
        };
        StreamingMethod { proto_name: method.name().to_owned(), kind, max_inflight, ordered, chunked_io }
    }
}

fn check_bucket(opts: &mut Options<'_, '_>, bucket: &str) {
    if !valid_service_name(bucket) {
        opts.problem("bucket", format!("{bucket:?} must match [A-Za-z0-9_-]+"));
    }
}

/// `{field}` placeholders must name fields of the request.
fn check_template(opts: &mut Options<'_, '_>, template: &str, input: &MessageDescriptor) {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            opts.problem("key_template", format!("{template:?} has an unclosed `{{`"));
            return;
        };
        let field = &rest[start + 1..start + len];
        if input.get_field_by_name(field).is_none() {
            opts.problem("key_template", format!("placeholder {{{field}}} is not a field of {}", input.full_name()));
        }
        rest = &rest[start + len + 1..];
    }
}

/// `[A-Za-z0-9_-]+`
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Why a subject is invalid, if it is.
pub fn invalid_subject(subject: &str) -> Option<&'static str> {
    for token in subject.split('.') {
        if token.is_empty() {
            return Some("has an empty token");
        }
        if token.chars().any(char::is_whitespace) {
            return Some("contains whitespace");
        }
        if token.contains(['*', '>']) {
            return Some("contains a wildcard (`*` or `>`)");
        }
    }
    None
}

/// `[A-Z][A-Z0-9]*(_[A-Z0-9]+)*`
pub fn is_upper_snake(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.split('_').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
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
