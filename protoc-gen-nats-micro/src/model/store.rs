//! The persistence options of a method (PROTOCOL §12): `kv_store`,
//! `object_store` and `chunked_io`, validated into the typed model the
//! emitters read. Every rule of §12.1 and §12.5 that can be checked at
//! generation time is checked here, naming file, method and option.

use std::collections::BTreeMap;
use std::time::Duration;

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};

use super::{File, Problem, Reader, Site};
use crate::options::{self, ChunkedIoOptions, KvStoreOptions, ObjectStoreOptions};

/// Default chunk of a chunked transfer when the proto sets none (the Go plugin's).
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;

/// Largest chunk the proto may ask for: NATS's own ceiling on `max_payload`.
pub const MAX_CHUNK_SIZE: u32 = 64 * 1024 * 1024;

/// Validated `(natsmicro.kv_store)`.
#[derive(Clone, Debug)]
pub struct KvStore {
    /// The bucket and the settings it is created with.
    pub bucket: KvBucket,
    /// How the key is built from the request.
    pub key: KeyTemplate,
    /// TTL of each written key (`key_ttl`).
    pub key_ttl: Option<Duration>,
    /// TTL of the marker a purge leaves (`purge_ttl`).
    pub purge_ttl: Option<Duration>,
    /// Only client helpers: the server never writes.
    pub client_only: bool,
    /// How the server writes.
    pub write_mode: KvWriteMode,
    /// What a failed write does to the call.
    pub failure_policy: PersistFailurePolicy,
}

/// A key-value bucket and the settings registration creates it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvBucket {
    /// Bucket name (`[A-Za-z0-9_-]+`).
    pub name: String,
    /// Bucket description (may be empty).
    pub description: String,
    /// Revisions kept per key, 1 to 64.
    pub history: u32,
    /// Maximum age of entries.
    pub ttl: Option<Duration>,
    /// S2 compression of the bucket's stream.
    pub compression: bool,
    /// Bucket metadata, sorted by key.
    pub metadata: BTreeMap<String, String>,
    /// TTL of the markers the server leaves when a key expires or is purged.
    pub limit_marker_ttl: Option<Duration>,
}

/// How a server writes a response to its key (PROTOCOL §12.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvWriteMode {
    /// Put: the newest write wins.
    LastWriteWins,
    /// Update at the expected revision; a conflict is `ABORTED`.
    CompareAndSet,
    /// Create; a key that holds a value is `ALREADY_EXISTS`.
    CreateOnly,
}

/// What a failed write does to the call (PROTOCOL §12.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistFailurePolicy {
    /// The reply stands; the failure is logged and counted.
    BestEffort,
    /// The caller gets the error instead of the reply.
    Required,
}

/// Validated `(natsmicro.object_store)`.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    /// The bucket and the settings it is created with.
    pub bucket: ObjectBucket,
    /// How the object name is built from the request.
    pub key: KeyTemplate,
    /// Only client helpers: the server never writes.
    pub client_only: bool,
}

/// An object store bucket and the settings registration creates it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectBucket {
    /// Bucket name (`[A-Za-z0-9_-]+`).
    pub name: String,
    /// Bucket description (may be empty).
    pub description: String,
    /// Maximum age of objects.
    pub ttl: Option<Duration>,
    /// S2 compression of the bucket's stream.
    pub compression: bool,
}

/// A parsed `key_template` (PROTOCOL §12.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    /// The template as written in the proto.
    pub text: String,
    /// Literal text and placeholders, in order.
    pub segments: Vec<KeySegment>,
}

impl KeyTemplate {
    /// The placeholders, in order.
    pub fn fields(&self) -> impl Iterator<Item = &KeyField> {
        self.segments.iter().filter_map(|segment| match segment {
            KeySegment::Field(field) => Some(field),
            KeySegment::Text(_) => None,
        })
    }
}

/// One piece of a key template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySegment {
    /// Literal text, copied into the key.
    Text(String),
    /// A `{path}` placeholder, rendered from the request.
    Field(KeyField),
}

/// A `{path}` placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyField {
    /// The path as written (`tenant.id`): the name errors and field
    /// violations report.
    pub placeholder: String,
    /// Proto field names from the request down: every one but the last is a
    /// singular message field (unset: the value is missing).
    pub path: Vec<String>,
    /// The last field's type.
    pub kind: KeyKind,
    /// The last field tracks presence (proto3 `optional`, proto2
    /// `optional`): unset is missing.
    pub explicit_presence: bool,
}

/// The type of a placeholder's field, as far as rendering cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `string`: as it is; empty is missing.
    String,
    /// Any 32- or 64-bit integer: decimal.
    Integer,
    /// `true` / `false`.
    Bool,
    /// The value's name; an undeclared number in decimal.
    Enum(KeyEnum),
}

/// An enum a placeholder renders by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEnum {
    /// Full proto name (`store.v1.SessionKind`).
    pub full_name: String,
    /// Declared values: number and name, in declaration order (aliases
    /// after the first name of a number are left out).
    pub values: Vec<(i32, String)>,
}

/// Validated `(natsmicro.chunked_io)` of a client- or server-streaming RPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedIo {
    /// Proto name of the streamed message's only field, a singular `bytes`.
    pub field: String,
    /// Chunk size when the caller sets none, 1 B to 64 MiB.
    pub chunk_size: u32,
}

/// Characters of a NATS key-value key besides `.` (PROTOCOL §12.1).
pub fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '=')
}

impl Reader<'_> {
    pub(super) fn kv_store(&mut self, method: &MethodDescriptor, element: &str) -> Option<KvStore> {
        let site = Site { element, option: "(natsmicro.kv_store)" };
        let opts: KvStoreOptions = self.extension(&method.options(), self.extensions.kv_store.as_ref(), site)?;
        self.check_bucket(site, &opts.bucket);
        let key = self.key_template(site, &opts.key_template, &method.input(), true);
        let history = match self.count(site, "max_history", opts.max_history) {
            Some(h) if h > 64 => {
                self.problem(site, "max_history", "must be at most 64 (the NATS key-value limit)".into());
                1
            }
            Some(h) => h,
            None => 1,
        };
        let limit_marker_ttl = self.duration(site, "limit_marker_ttl", opts.limit_marker_ttl.as_ref());
        let key_ttl = self.duration(site, "key_ttl", opts.key_ttl.as_ref());
        let purge_ttl = self.duration(site, "purge_ttl", opts.purge_ttl.as_ref());
        for (name, set) in [("key_ttl", key_ttl.is_some()), ("purge_ttl", purge_ttl.is_some())] {
            if set && limit_marker_ttl.is_none() {
                self.problem(
                    site,
                    name,
                    "needs limit_marker_ttl: nats-server accepts per-key TTLs only in buckets with limit markers (server 2.11+)"
                        .into(),
                );
            }
        }
        let write_mode = match options::KvWriteMode::try_from(opts.write_mode) {
            Ok(options::KvWriteMode::Unspecified | options::KvWriteMode::LastWriteWins) => KvWriteMode::LastWriteWins,
            Ok(options::KvWriteMode::CompareAndSet) => KvWriteMode::CompareAndSet,
            Ok(options::KvWriteMode::CreateOnly) => KvWriteMode::CreateOnly,
            Err(other) => {
                self.problem(site, "write_mode", format!("{other} is not a KVWriteMode value"));
                KvWriteMode::LastWriteWins
            }
        };
        let failure_policy = match options::KvPersistFailurePolicy::try_from(opts.persist_failure_policy) {
            Ok(options::KvPersistFailurePolicy::Unspecified | options::KvPersistFailurePolicy::BestEffort) => {
                PersistFailurePolicy::BestEffort
            }
            Ok(options::KvPersistFailurePolicy::Required) => PersistFailurePolicy::Required,
            Err(other) => {
                self.problem(site, "persist_failure_policy", format!("{other} is not a KVPersistFailurePolicy value"));
                PersistFailurePolicy::BestEffort
            }
        };
        let bucket = KvBucket {
            ttl: self.duration(site, "ttl", opts.ttl.as_ref()),
            name: opts.bucket,
            description: opts.description,
            history,
            compression: opts.compression,
            metadata: opts.metadata.into_iter().collect(),
            limit_marker_ttl,
        };
        Some(KvStore { bucket, key: key?, key_ttl, purge_ttl, client_only: opts.client_only, write_mode, failure_policy })
    }

    pub(super) fn object_store(&mut self, method: &MethodDescriptor, element: &str) -> Option<ObjectStore> {
        let site = Site { element, option: "(natsmicro.object_store)" };
        let opts: ObjectStoreOptions = self.extension(&method.options(), self.extensions.object_store.as_ref(), site)?;
        self.check_bucket(site, &opts.bucket);
        let key = self.key_template(site, &opts.key_template, &method.input(), false);
        let bucket = ObjectBucket {
            ttl: self.duration(site, "ttl", opts.ttl.as_ref()),
            name: opts.bucket,
            description: opts.description,
            compression: opts.compression,
        };
        Some(ObjectStore { bucket, key: key?, client_only: opts.client_only })
    }

    /// `(natsmicro.chunked_io)` of any method: valid only on a client- or
    /// server-streaming RPC whose streamed message is one singular `bytes`
    /// field named `chunk_field` (the Go plugin's rule).
    pub(super) fn chunked_io(&mut self, method: &MethodDescriptor, element: &str) -> Option<ChunkedIo> {
        let site = Site { element, option: "(natsmicro.chunked_io)" };
        let opts: ChunkedIoOptions = self.extension(&method.options(), self.extensions.chunked_io.as_ref(), site)?;
        let streamed = match (method.is_client_streaming(), method.is_server_streaming()) {
            (true, false) => method.input(),
            (false, true) => method.output(),
            (false, false) => {
                self.problem(site, "", "is only valid on a client-streaming (upload) or server-streaming (download) RPC".into());
                return None;
            }
            (true, true) => {
                self.problem(site, "", "is not supported on a bidirectional RPC: it carries one payload in one direction".into());
                return None;
            }
        };
        let field = opts.chunk_field;
        let fields: Vec<FieldDescriptor> = streamed.fields().collect();
        let only_bytes =
            matches!(fields.as_slice(), [only] if only.name() == field && !only.is_list() && matches!(only.kind(), Kind::Bytes));
        if !only_bytes {
            let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
            self.problem(
                site,
                "chunk_field",
                format!(
                    "{field:?}: the streamed message {} must have exactly one field, the singular bytes field {field:?} (it has: {})",
                    streamed.full_name(),
                    names.join(", ")
                ),
            );
        }
        let chunk_size = if opts.default_chunk_size < 0 {
            self.problem(site, "default_chunk_size", format!("must not be negative, got {}", opts.default_chunk_size));
            DEFAULT_CHUNK_SIZE
        } else if opts.default_chunk_size == 0 {
            DEFAULT_CHUNK_SIZE
        } else if opts.default_chunk_size.unsigned_abs() > MAX_CHUNK_SIZE {
            self.problem(
                site,
                "default_chunk_size",
                format!("{} is above 64 MiB, the largest NATS max_payload", opts.default_chunk_size),
            );
            DEFAULT_CHUNK_SIZE
        } else {
            opts.default_chunk_size.unsigned_abs()
        };
        only_bytes.then_some(ChunkedIo { field, chunk_size })
    }

    fn check_bucket(&mut self, site: Site<'_>, bucket: &str) {
        if !super::valid_service_name(bucket) {
            self.problem(site, "bucket", format!("{bucket:?} must match [A-Za-z0-9_-]+"));
        }
    }

    /// Parses and checks a key template against the request (§12.1).
    /// `kv`: the literal text must be key characters.
    fn key_template(&mut self, site: Site<'_>, template: &str, input: &MessageDescriptor, kv: bool) -> Option<KeyTemplate> {
        if template.is_empty() {
            self.problem(site, "key_template", "must not be empty".into());
            return None;
        }
        let mut segments = Vec::new();
        let mut ok = true;
        let mut rest = template;
        while !rest.is_empty() {
            let (text, after) = match rest.find(['{', '}']) {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            if !text.is_empty() {
                segments.push(KeySegment::Text(text.to_owned()));
            }
            rest = after;
            if rest.starts_with('}') {
                self.problem(site, "key_template", format!("{template:?} has a `}}` without `{{`"));
                return None;
            }
            if rest.is_empty() {
                break;
            }
            let Some(close) = rest.find('}') else {
                self.problem(site, "key_template", format!("{template:?} has an unclosed `{{`"));
                return None;
            };
            let placeholder = &rest[1..close];
            rest = &rest[close + 1..];
            match self.key_field(placeholder, input) {
                Ok(field) => segments.push(KeySegment::Field(field)),
                Err(why) => {
                    self.problem(site, "key_template", format!("placeholder {{{placeholder}}}: {why}"));
                    ok = false;
                }
            }
        }
        if kv {
            let literal: String = segments
                .iter()
                .map(|s| match s {
                    KeySegment::Text(text) => text.as_str(),
                    KeySegment::Field(_) => "x",
                })
                .collect();
            if let Some(bad) = literal.chars().find(|c| !is_key_char(*c) && *c != '.') {
                self.problem(site, "key_template", format!("{template:?}: {bad:?} cannot be in a key (A-Z a-z 0-9 - _ / = .)"));
                ok = false;
            } else if literal.split('.').any(str::is_empty) {
                self.problem(
                    site,
                    "key_template",
                    format!("{template:?} would give a key with an empty token (a leading, trailing or double `.`)"),
                );
                ok = false;
            }
        }
        ok.then(|| KeyTemplate { text: template.to_owned(), segments })
    }

    fn key_field(&self, placeholder: &str, input: &MessageDescriptor) -> Result<KeyField, String> {
        if placeholder.is_empty() {
            return Err("is empty".into());
        }
        let names: Vec<&str> = placeholder.split('.').collect();
        let mut message = input.clone();
        let mut path = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let Some(field) = message.get_field_by_name(name) else {
                let available: Vec<String> = message.fields().map(|f| f.name().to_owned()).collect();
                return Err(format!("{name:?} is not a field of {} (fields: {})", message.full_name(), available.join(", ")));
            };
            path.push(field.name().to_owned());
            if field.is_list() || field.is_map() {
                return Err(format!("{name:?} is repeated or a map; a key needs one value"));
            }
            if field.containing_oneof().is_some_and(|oneof| !oneof.is_synthetic()) {
                return Err(format!("{name:?} is a member of a oneof; use a plain or `optional` field"));
            }
            let last = i + 1 == names.len();
            let kind = field.kind();
            if !last {
                match kind {
                    Kind::Message(inner) => message = inner,
                    _ => return Err(format!("{name:?} is not a message, so `.` cannot follow it")),
                }
                continue;
            }
            let kind = match kind {
                Kind::String => KeyKind::String,
                Kind::Bool => KeyKind::Bool,
                Kind::Int32
                | Kind::Sint32
                | Kind::Sfixed32
                | Kind::Int64
                | Kind::Sint64
                | Kind::Sfixed64
                | Kind::Uint32
                | Kind::Fixed32
                | Kind::Uint64
                | Kind::Fixed64 => KeyKind::Integer,
                Kind::Enum(e) => {
                    let mut values: Vec<(i32, String)> = Vec::new();
                    for value in e.values() {
                        if !values.iter().any(|(number, _)| *number == value.number()) {
                            values.push((value.number(), value.name().to_owned()));
                        }
                    }
                    KeyKind::Enum(KeyEnum { full_name: e.full_name().to_owned(), values })
                }
                Kind::Bytes => return Err(format!("{name:?} is bytes; keys are text (use a string field)")),
                Kind::Float | Kind::Double => {
                    return Err(format!(
                        "{name:?} is a float; floats print differently in Go, JavaScript and Python and add a key token at their `.` (use a string or integer field)"
                    ));
                }
                Kind::Message(_) => return Err(format!("{name:?} is a message; name one of its fields ({name}.field)")),
            };
            let explicit_presence = field.supports_presence() && field.cardinality() != Cardinality::Required;
            return Ok(KeyField { placeholder: placeholder.to_owned(), path, kind, explicit_presence });
        }
        Err("is empty".into())
    }
}

/// Methods of one file that name the same bucket must declare the same
/// settings: registration would otherwise flip the bucket between them.
pub(super) fn check_shared_buckets(file: &File, problems: &mut Vec<Problem>) {
    let mut kv: BTreeMap<&str, (&KvBucket, String)> = BTreeMap::new();
    let mut objects: BTreeMap<&str, (&ObjectBucket, String)> = BTreeMap::new();
    let mut conflict = |element: String, option: &str, bucket: &str, first: &str| {
        problems.push(Problem {
            file: file.name.clone(),
            element,
            option: format!("option {option}.bucket"),
            message: format!(
                "{bucket:?} is also declared by {first} with other settings; declare the same settings or use another bucket"
            ),
        });
    };
    for service in &file.services {
        for method in &service.methods {
            let element = format!("{}.{}", service.full_name, method.proto_name);
            if let Some(store) = &method.kv_store {
                match kv.get(store.bucket.name.as_str()) {
                    Some((first, at)) if **first != store.bucket => {
                        conflict(element.clone(), "(natsmicro.kv_store)", &store.bucket.name, at)
                    }
                    Some(_) => {}
                    None => {
                        kv.insert(&store.bucket.name, (&store.bucket, element.clone()));
                    }
                }
            }
            if let Some(store) = &method.object_store {
                match objects.get(store.bucket.name.as_str()) {
                    Some((first, at)) if **first != store.bucket => {
                        conflict(element, "(natsmicro.object_store)", &store.bucket.name, at)
                    }
                    Some(_) => {}
                    None => {
                        objects.insert(&store.bucket.name, (&store.bucket, element));
                    }
                }
            }
        }
    }
}
