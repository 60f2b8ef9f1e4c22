//! Persistence and chunked transfer (PROTOCOL §12) in the TypeScript
//! output: the options as data in the spec (the runtime renders keys,
//! creates buckets, writes and checks), typed handles and chunked helpers on
//! the client.

use std::fmt::Write as _;

use super::names::{method_name, milliseconds, string_literal};
use super::{Doc, Out, RUNTIME_ALIAS, ServiceWriter, record};
use crate::model::{
    ChunkedIo, KeyKind, KeySegment, KeyTemplate, KvStore, KvWriteMode, Method, ObjectStore, PersistFailurePolicy, StreamKind,
};

/// The `key: { text, segments }` entry of a spec (at 8 spaces): one line,
/// or a segment per line when that is long.
fn key_template(out: &mut Out, template: &KeyTemplate) {
    let segments: Vec<String> = template.segments.iter().map(segment).collect();
    let line = format!("        key: {{ text: {}, segments: [{}] }},", string_literal(&template.text), segments.join(", "));
    if line.len() <= 120 {
        out.line(line);
        return;
    }
    out.line("        key: {");
    out.line(format!("          text: {},", string_literal(&template.text)));
    out.line("          segments: [");
    for segment in segments {
        out.line(format!("            {segment},"));
    }
    out.line("          ],");
    out.line("        },");
}

/// `"text"`, or `{ placeholder, path, kind, presence?, names? }`.
fn segment(segment: &KeySegment) -> String {
    let field = match segment {
        KeySegment::Text(text) => return string_literal(text),
        KeySegment::Field(field) => field,
    };
    let path: Vec<String> = field.path.iter().map(|p| string_literal(p)).collect();
    let kind = match &field.kind {
        KeyKind::String => "string",
        KeyKind::Integer => "integer",
        KeyKind::Bool => "bool",
        KeyKind::Enum(_) => "enum",
    };
    let mut out = format!(
        "{{ placeholder: {}, path: [{}], kind: {}",
        string_literal(&field.placeholder),
        path.join(", "),
        string_literal(kind)
    );
    if field.explicit_presence {
        out.push_str(", presence: true");
    }
    if let KeyKind::Enum(values) = &field.kind {
        // Keys as strings: an object literal cannot have `-1` as a bare key.
        let names: Vec<String> = values
            .values
            .iter()
            .map(|(number, name)| format!("{}: {}", string_literal(&number.to_string()), string_literal(name)))
            .collect();
        let _ = write!(out, ", names: {{ {} }}", names.join(", "));
    }
    out.push_str(" }");
    out
}

/// `, name: 1500` for a duration that is set.
fn duration_field(name: &str, duration: Option<std::time::Duration>) -> String {
    duration.map(|d| format!(", {name}: {}", milliseconds(d))).unwrap_or_default()
}

impl ServiceWriter<'_> {
    /// The `kvStore` / `objectStore` entries of a unary RPC's spec.
    pub(super) fn store_spec(&mut self, m: &Method) {
        if let Some(kv) = &m.kv_store {
            kv_spec(self.out, kv);
        }
        if let Some(object) = &m.object_store {
            object_spec(self.out, object);
        }
    }

    /// The `chunked` entry of a streaming RPC's spec.
    pub(super) fn chunked_spec(&mut self, chunked: Option<&ChunkedIo>) {
        if let Some(chunked) = chunked {
            self.out.line(format!(
                "      chunked: {{ field: {}, chunkSize: {} }},",
                string_literal(&chunked.field),
                chunked.chunk_size
            ));
        }
    }

    /// Whether a client member name is free (not an RPC's method name).
    fn free_member(&self, name: String) -> String {
        let taken = self
            .service
            .methods
            .iter()
            .chain(self.service.streaming.iter().map(|s| &s.method))
            .any(|m| method_name(&m.proto_name, &super::CLIENT_MEMBERS) == name);
        if taken { format!("{name}$") } else { name }
    }

    /// The client's typed handles on the buckets of its `kv_store` and `object_store` RPCs.
    pub(super) fn client_store_handles(&mut self) {
        let n = self.names;
        for m in &self.service.methods {
            let key = method_name(&m.proto_name, &[]);
            let (input, output) = (self.message(&m.input, true), self.message(&m.output, true));
            if let Some(kv) = &m.kv_store {
                let name = self.free_member(format!("{key}Kv"));
                self.out.line("");
                let serves = if kv.client_only {
                    "No service writes it (`client_only`): opening the handle creates the bucket with the proto's settings when it is missing."
                } else {
                    "The service writes each successful response there before replying."
                };
                self.out.doc(
                    "  ",
                    &[Doc::Prose(format!(
                        "The typed handle on key-value bucket `{}` of `{}`: values are `{}`, keys `{}` rendered from a request by `key(request)` or from its parts by `keyOf(parts)`. {serves} Bound once per client; rejects with NOT_FOUND when the bucket does not exist.",
                        kv.bucket.name, m.proto_name, m.output.full_name, kv.key.text
                    ))],
                );
                self.out.line(format!("  {name}(): Promise<{RUNTIME_ALIAS}.KvHandle<typeof {input}, typeof {output}>> {{"));
                self.out.line(format!("    return this.#client.kv({}.methods.{key});", n.spec));
                self.out.line("  }");
            }
            if let Some(object) = &m.object_store {
                let name = self.free_member(format!("{key}Objects"));
                self.out.line("");
                self.out.doc(
                    "  ",
                    &[Doc::Prose(format!(
                        "The typed handle on object store `{}` of `{}`: objects are `{}`, named `{}` (`key(request)`); reads check the SHA-256 (DATA_LOSS when it does not match). Bound once per client.",
                        object.bucket.name, m.proto_name, m.output.full_name, object.key.text
                    ))],
                );
                self.out.line(format!("  {name}(): Promise<{RUNTIME_ALIAS}.ObjectHandle<typeof {input}, typeof {output}>> {{"));
                self.out.line(format!("    return this.#client.objects({}.methods.{key});", n.spec));
                self.out.line("  }");
            }
        }
    }

    /// The client's helpers of its chunked transfers: bytes or a source up, bytes or a sink down.
    pub(super) fn client_chunked(&mut self) {
        let n = self.names;
        for stream in &self.service.streaming {
            let Some(chunked) = &stream.chunked_io else { continue };
            let m = &stream.method;
            let key = method_name(&m.proto_name, &[]);
            let spec = format!("{}.streams.{key}", n.spec);
            let input = self.message(&m.input, true);
            let field = &chunked.field;
            match stream.kind {
                StreamKind::Client => {
                    let bytes = self.free_member(format!("{key}Bytes"));
                    let from = self.free_member(format!("{key}From"));
                    self.out.line("");
                    self.out.doc("  ", &[Doc::Prose(format!(
                        "Uploads `data` through `{}` in chunks of `{field}` (default {} bytes, `options.chunkSize` to change), with its size and SHA-256 for the server to check; resolves with the response.",
                        m.proto_name, chunked.chunk_size
                    ))]);
                    self.out.line(format!(
                        "  {bytes}(data: Uint8Array, options?: {RUNTIME_ALIAS}.ChunkedCallOptions): Promise<{}> {{",
                        self.message(&m.output, false)
                    ));
                    self.out.line(format!("    return this.#client.upload({spec}, data, options);"));
                    self.out.line("  }");
                    self.out.line("");
                    self.out.doc("  ", &[Doc::Prose(format!(
                        "Uploads what `source` yields (an async iterable of bytes or a `ReadableStream`; `fileSource(path)` of `nats-micro-runtime/node` for a file) through `{}`, read as it is sent: memory holds about a window of chunks whatever the size.",
                        m.proto_name
                    ))]);
                    self.out.line(format!(
                        "  {from}(source: {RUNTIME_ALIAS}.ByteSource, options?: {RUNTIME_ALIAS}.ChunkedCallOptions): Promise<{}> {{",
                        self.message(&m.output, false)
                    ));
                    self.out.line(format!("    return this.#client.upload({spec}, source, options);"));
                    self.out.line("  }");
                }
                StreamKind::Server => {
                    let bytes = self.free_member(format!("{key}Bytes"));
                    let to = self.free_member(format!("{key}To"));
                    self.out.line("");
                    self.out.doc("  ", &[Doc::Prose(format!(
                        "Downloads the payload `{}` streams in chunks of `{field}` into memory, its size and SHA-256 checked (DATA_LOSS on a mismatch; `digestVerified` is false for a server that sends neither).",
                        m.proto_name
                    ))]);
                    self.out.line(format!("  {bytes}("));
                    self.out.line(format!("    request: {RUNTIME_ALIAS}.MessageInitShape<typeof {input}>,"));
                    self.out.line(format!("    options?: {RUNTIME_ALIAS}.StreamCallOptions,"));
                    self.out.line(format!("  ): Promise<{RUNTIME_ALIAS}.ChunkedResult & {{ data: Uint8Array }}> {{"));
                    self.out.line(format!("    return this.#client.downloadBytes({spec}, request, options);"));
                    self.out.line("  }");
                    self.out.line("");
                    self.out.doc("  ", &[Doc::Prose(format!(
                        "Downloads the payload `{}` streams into `sink` chunk by chunk, then checks its size and SHA-256: `sink.close()` on success, `sink.abort(error)` on any failure (`receiveToFile` of `nats-micro-runtime/node` writes a file that appears only when the checks passed).",
                        m.proto_name
                    ))]);
                    self.out.line(format!("  {to}("));
                    self.out.line(format!("    request: {RUNTIME_ALIAS}.MessageInitShape<typeof {input}>,"));
                    self.out.line(format!("    sink: {RUNTIME_ALIAS}.ByteSink,"));
                    self.out.line(format!("    options?: {RUNTIME_ALIAS}.StreamCallOptions,"));
                    self.out.line(format!("  ): Promise<{RUNTIME_ALIAS}.ChunkedResult> {{"));
                    self.out.line(format!("    return this.#client.download({spec}, request, sink, options);"));
                    self.out.line("  }");
                }
                StreamKind::Bidirectional => {}
            }
        }
    }

    /// A sentence for a handler's doc: how its RPC persists, or how its chunked stream is read or written.
    pub(super) fn store_note(&self, m: &Method, chunked: Option<(&ChunkedIo, StreamKind)>) -> Option<String> {
        let spec = self.names.spec.as_str();
        let key = method_name(&m.proto_name, &[]);
        if let Some(kv) = m.kv_store.as_ref().filter(|kv| !kv.client_only) {
            let mode = match kv.write_mode {
                KvWriteMode::LastWriteWins => "put (last write wins)",
                KvWriteMode::CompareAndSet => "compare-and-set (ABORTED on a conflict)",
                KvWriteMode::CreateOnly => "create (ALREADY_EXISTS when the key holds a value)",
            };
            let policy = match kv.failure_policy {
                PersistFailurePolicy::Required => "a failed write fails the call",
                PersistFailurePolicy::BestEffort => "a failed write is logged and counted, the reply stands",
            };
            return Some(format!(
                "The response is kept in key-value bucket `{}` under `{}` once this returns, before the reply: {mode}; {policy}.",
                kv.bucket.name, kv.key.text
            ));
        }
        if let Some(object) = m.object_store.as_ref().filter(|o| !o.client_only) {
            return Some(format!(
                "The response is kept in object store `{}` under `{}` once this returns, before the reply (best effort).",
                object.bucket.name, object.key.text
            ));
        }
        match chunked {
            Some((_, StreamKind::Client)) => Some(format!(
                "A chunked upload: read the payload with `chunkedUploadReader({spec}.streams.{key}, requests)`, which checks its size and SHA-256."
            )),
            Some((_, StreamKind::Server)) => Some(format!(
                "A chunked download: return `chunkedDownload({spec}.streams.{key}, source, ctx)` to stream bytes with their size and SHA-256."
            )),
            _ => None,
        }
    }
}

fn kv_spec(out: &mut Out, kv: &KvStore) {
    let b = &kv.bucket;
    out.line("      kvStore: {");
    out.line(format!(
        "        bucket: {{ name: {}, description: {}, history: {}{}, compression: {}, metadata: {}{} }},",
        string_literal(&b.name),
        string_literal(&b.description),
        b.history,
        duration_field("ttl", b.ttl),
        b.compression,
        record(&b.metadata),
        duration_field("limitMarkerTtl", b.limit_marker_ttl),
    ));
    key_template(out, &kv.key);
    if let Some(ttl) = kv.key_ttl {
        out.line(format!("        keyTtl: {},", milliseconds(ttl)));
    }
    if let Some(ttl) = kv.purge_ttl {
        out.line(format!("        purgeTtl: {},", milliseconds(ttl)));
    }
    out.line(format!("        clientOnly: {},", kv.client_only));
    let mode = match kv.write_mode {
        KvWriteMode::LastWriteWins => "lastWriteWins",
        KvWriteMode::CompareAndSet => "compareAndSet",
        KvWriteMode::CreateOnly => "createOnly",
    };
    let policy = match kv.failure_policy {
        PersistFailurePolicy::BestEffort => "bestEffort",
        PersistFailurePolicy::Required => "required",
    };
    out.line(format!("        writeMode: {},", string_literal(mode)));
    out.line(format!("        failurePolicy: {},", string_literal(policy)));
    out.line("      },");
}

fn object_spec(out: &mut Out, object: &ObjectStore) {
    let b = &object.bucket;
    out.line("      objectStore: {");
    out.line(format!(
        "        bucket: {{ name: {}, description: {}{}, compression: {} }},",
        string_literal(&b.name),
        string_literal(&b.description),
        duration_field("ttl", b.ttl),
        b.compression,
    ));
    key_template(out, &object.key);
    out.line(format!("        clientOnly: {},", object.client_only));
    out.line("      },");
}
