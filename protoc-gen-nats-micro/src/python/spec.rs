//! The service spec: what the proto declares (names, subjects, options),
//! handed to the runtime by the server registration and the client.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{KeyKind, KeySegment, KeyTemplate, KvStore, KvWriteMode, ObjectStore, PersistFailurePolicy, Rpc, Service};

use super::ModuleWriter;
use super::names::{ServiceNames, is_message_keyword};
use super::text::string_literal;

/// A duration as a Python float of seconds (`5.0`, `0.75`).
fn seconds(duration: Option<Duration>) -> String {
    match duration {
        Some(d) => format!("{:?}", d.as_secs_f64()),
        None => "None".to_owned(),
    }
}

fn dict_literal(map: &BTreeMap<String, String>) -> String {
    let entries: Vec<String> = map.iter().map(|(k, v)| format!("{}: {}", string_literal(k), string_literal(v))).collect();
    format!("{{{}}}", entries.join(", "))
}

fn optional_int(value: Option<u32>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| v.to_string())
}

fn bool_literal(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

impl ModuleWriter<'_> {
    /// `_ORDER_SERVICE = nats_micro_runtime.ServiceSpec(...)`.
    pub(super) fn spec(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line(&format!("{} = nats_micro_runtime.ServiceSpec(", names.spec));
        for (key, value) in [
            ("proto_name", string_literal(&service.full_name)),
            ("name", string_literal(&service.name)),
            ("version", string_literal(&service.version)),
            ("description", string_literal(&service.description)),
            ("subject_prefix", string_literal(&service.subject_prefix)),
            ("metadata", dict_literal(&service.metadata)),
            ("timeout", seconds(service.timeout)),
            ("queue_group_disabled", bool_literal(service.queue_group_disabled).to_owned()),
            ("json", bool_literal(service.json).to_owned()),
        ] {
            self.line(&format!("    {key}={value},"));
        }
        self.line("    endpoints=(");
        for rpc in service.rpcs() {
            let method = rpc.method();
            self.line("        nats_micro_runtime.EndpointSpec(");
            for (key, value) in [
                ("method", string_literal(&method.proto_name)),
                ("endpoint", string_literal(&method.endpoint)),
                ("timeout", seconds(method.timeout.or(service.timeout))),
                ("metadata", dict_literal(&method.metadata)),
                ("queue_group_disabled", bool_literal(method.queue_group_disabled).to_owned()),
                ("pending_msg_limit", optional_int(method.pending_msg_limit)),
                ("pending_bytes_limit", optional_int(method.pending_bytes_limit)),
            ] {
                self.line(&format!("            {key}={value},"));
            }
            if method.idempotent {
                self.line("            idempotent=True,");
            }
            if let Rpc::Streaming(stream) = rpc
                && let Some(window) = stream.max_inflight
            {
                self.line(&format!("            max_inflight={window},"));
            }
            if let Some(store) = &method.kv_store {
                self.line(&format!("            kv_store={},", kv_store(store)));
            }
            if let Some(store) = &method.object_store {
                self.line(&format!("            object_store={},", object_store(store)));
            }
            if let Rpc::Streaming(stream) = rpc
                && let Some(chunked) = &stream.chunked_io
            {
                self.line(&format!(
                    "            chunked=nats_micro_runtime.ChunkedSpec({}, {}),",
                    string_literal(&chunked.field),
                    chunked.chunk_size
                ));
            }
            self.line("        ),");
        }
        self.line("    ),");
        self.line(")");
    }
}

/// `nats_micro_runtime.KvStoreSpec(...)`: the bucket's settings, the key
/// template and the write, as keyword arguments where they differ from the
/// runtime's defaults.
fn kv_store(store: &KvStore) -> String {
    let bucket = &store.bucket;
    let mut settings = vec![string_literal(&bucket.name)];
    if !bucket.description.is_empty() {
        settings.push(format!("description={}", string_literal(&bucket.description)));
    }
    if bucket.history != 1 {
        settings.push(format!("history={}", bucket.history));
    }
    if bucket.ttl.is_some() {
        settings.push(format!("ttl={}", seconds(bucket.ttl)));
    }
    if bucket.compression {
        settings.push("compression=True".to_owned());
    }
    if !bucket.metadata.is_empty() {
        settings.push(format!("metadata={}", dict_literal(&bucket.metadata)));
    }
    if bucket.limit_marker_ttl.is_some() {
        settings.push(format!("limit_marker_ttl={}", seconds(bucket.limit_marker_ttl)));
    }
    let mut args = vec![format!("nats_micro_runtime.KvBucketSpec({})", settings.join(", ")), key_template(&store.key)];
    if store.key_ttl.is_some() {
        args.push(format!("key_ttl={}", seconds(store.key_ttl)));
    }
    if store.purge_ttl.is_some() {
        args.push(format!("purge_ttl={}", seconds(store.purge_ttl)));
    }
    if store.client_only {
        args.push("client_only=True".to_owned());
    }
    let mode = match store.write_mode {
        KvWriteMode::LastWriteWins => "LAST_WRITE_WINS",
        KvWriteMode::CompareAndSet => "COMPARE_AND_SET",
        KvWriteMode::CreateOnly => "CREATE_ONLY",
    };
    args.push(format!("write_mode=nats_micro_runtime.KvWriteMode.{mode}"));
    let policy = match store.failure_policy {
        PersistFailurePolicy::BestEffort => "BEST_EFFORT",
        PersistFailurePolicy::Required => "REQUIRED",
    };
    args.push(format!("failure_policy=nats_micro_runtime.PersistFailurePolicy.{policy}"));
    call("nats_micro_runtime.KvStoreSpec", &args, 12)
}

/// `name(` with one argument per line at `indent` + 4 spaces, then `)` at `indent`.
fn call(name: &str, args: &[String], indent: usize) -> String {
    let inner = " ".repeat(indent + 4);
    let lines: Vec<String> = args.iter().map(|arg| format!("{inner}{arg},\n")).collect();
    format!("{name}(\n{}{})", lines.concat(), " ".repeat(indent))
}

/// `nats_micro_runtime.ObjectStoreSpec(...)`.
fn object_store(store: &ObjectStore) -> String {
    let bucket = &store.bucket;
    let mut settings = vec![string_literal(&bucket.name)];
    if !bucket.description.is_empty() {
        settings.push(format!("description={}", string_literal(&bucket.description)));
    }
    if bucket.ttl.is_some() {
        settings.push(format!("ttl={}", seconds(bucket.ttl)));
    }
    if bucket.compression {
        settings.push("compression=True".to_owned());
    }
    let mut args = vec![format!("nats_micro_runtime.ObjectBucketSpec({})", settings.join(", ")), key_template(&store.key)];
    if store.client_only {
        args.push("client_only=True".to_owned());
    }
    call("nats_micro_runtime.ObjectStoreSpec", &args, 12)
}

/// `nats_micro_runtime.KeyTemplate(text, segments, values)`: the template's
/// literal text and placeholders (enums with their value names), and a
/// lambda extracting one value per placeholder from the request, `None`
/// where a message on its path or a field with presence is unset. The
/// rendering itself is the runtime's.
fn key_template(key: &KeyTemplate) -> String {
    let mut segments = Vec::new();
    let mut values = Vec::new();
    for segment in &key.segments {
        match segment {
            KeySegment::Text(text) => segments.push(string_literal(text)),
            KeySegment::Field(field) => {
                let names = match &field.kind {
                    KeyKind::Enum(e) => {
                        let entries: Vec<String> =
                            e.values.iter().map(|(number, name)| format!("{number}: {}", string_literal(name))).collect();
                        format!(", {{{}}}", entries.join(", "))
                    }
                    KeyKind::String | KeyKind::Integer | KeyKind::Bool => String::new(),
                };
                segments.push(format!("nats_micro_runtime.KeyField({}{names})", string_literal(&field.placeholder)));
                let mut access = "request".to_owned();
                let mut conditions = Vec::new();
                for (i, name) in field.path.iter().enumerate() {
                    let last = i + 1 == field.path.len();
                    if !last || field.explicit_presence {
                        conditions.push(format!("{access}.HasField({})", string_literal(name)));
                    }
                    access = attribute(&access, name);
                }
                values.push(if conditions.is_empty() {
                    access
                } else {
                    format!("({access} if {} else None)", conditions.join(" and "))
                });
            }
        }
    }
    let tuple = |items: &[String]| if items.len() == 1 { format!("({},)", items[0]) } else { format!("({})", items.join(", ")) };
    let args = [string_literal(&key.text), tuple(&segments), format!("lambda request: {}", tuple(&values))];
    call("nats_micro_runtime.KeyTemplate", &args, 16)
}

/// `value.name`, or `getattr(value, "name")` for a field whose name is a keyword.
fn attribute(value: &str, name: &str) -> String {
    if is_message_keyword(name) { format!("getattr({value}, {})", string_literal(name)) } else { format!("{value}.{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyEnum, KeyField};

    fn field(placeholder: &str, kind: KeyKind, explicit_presence: bool) -> KeySegment {
        let path = placeholder.split('.').map(str::to_owned).collect();
        KeySegment::Field(KeyField { placeholder: placeholder.to_owned(), path, kind, explicit_presence })
    }

    #[test]
    fn key_extractors_guard_every_message_on_the_path_and_presence() {
        let kind = KeyKind::Enum(KeyEnum { full_name: "x.Kind".into(), values: vec![(0, "A".into()), (1, "B\"".into())] });
        let key = KeyTemplate {
            text: "{a.from}.{n}.{k}".into(),
            segments: vec![
                field("a.from", KeyKind::String, false),
                KeySegment::Text(".".into()),
                field("n", KeyKind::Integer, true),
                KeySegment::Text(".".into()),
                field("k", kind, false),
            ],
        };
        let rendered = key_template(&key);
        assert!(rendered.contains(r#"(getattr(request.a, "from") if request.HasField("a") else None)"#), "{rendered}");
        assert!(rendered.contains(r#"(request.n if request.HasField("n") else None)"#), "{rendered}");
        assert!(rendered.contains(r#"nats_micro_runtime.KeyField("k", {0: "A", 1: "B\""})"#), "{rendered}");
        assert!(rendered.contains(", request.k)"), "{rendered}");
    }

    #[test]
    fn a_single_placeholder_is_a_one_tuple() {
        let key = KeyTemplate { text: "{id}".into(), segments: vec![field("id", KeyKind::String, false)] };
        assert!(key_template(&key).contains("lambda request: (request.id,)"));
    }
}
