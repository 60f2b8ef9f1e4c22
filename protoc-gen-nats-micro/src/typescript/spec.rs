//! The spec of a service: its proto options, as the runtime reads them.

use super::names::{method_name, milliseconds, string_literal};
use super::{Doc, RUNTIME_ALIAS, ServiceWriter, record};
use crate::model::{Method, StreamKind};

impl ServiceWriter<'_> {
    pub(super) fn spec(&mut self) {
        let s = self.service;
        self.out.line("");
        self.out.prose("", format!(
            "What the proto declares for `{}`: ADR-32 identity, subject prefix, timeouts (milliseconds), the unary RPCs and the streaming RPCs (kind, flow-control window) in proto order.",
            s.full_name
        ));
        self.out.line(format!("export const {} = {{", self.names.spec));
        self.out.line(format!("  protoName: {},", string_literal(&s.full_name)));
        self.out.line(format!("  name: {},", string_literal(&s.name)));
        self.out.line(format!("  version: {},", string_literal(&s.version)));
        self.out.line(format!("  description: {},", string_literal(&s.description)));
        self.out.line(format!("  subjectPrefix: {},", string_literal(&s.subject_prefix)));
        self.out.line(format!("  metadata: {},", record(&s.metadata)));
        if let Some(timeout) = s.timeout {
            self.out.line(format!("  timeout: {},", milliseconds(timeout)));
        }
        self.out.line(format!("  json: {},", s.json));
        self.out.line(format!("  queueGroupDisabled: {},", s.queue_group_disabled));
        self.out.line("  methods: {");
        for m in &s.methods {
            self.method_spec(m);
            self.store_spec(m);
            self.out.line("    },");
        }
        self.out.line("  },");
        if !s.streaming.is_empty() {
            self.out.line("  streams: {");
            for stream in &s.streaming {
                self.method_spec(&stream.method);
                let kind = match stream.kind {
                    StreamKind::Server => "server",
                    StreamKind::Client => "client",
                    StreamKind::Bidirectional => "bidi",
                };
                self.out.line(format!("      kind: {},", string_literal(kind)));
                if let Some(window) = stream.max_inflight {
                    self.out.line(format!("      window: {window},"));
                }
                self.chunked_spec(stream.chunked_io.as_ref());
                self.out.line("    },");
            }
            self.out.line("  },");
        }
        self.out.line(format!("}} satisfies {RUNTIME_ALIAS}.ServiceSpec;"));
    }

    /// The fields every RPC's spec has, after its opening line (the caller closes it).
    fn method_spec(&mut self, m: &Method) {
        let s = self.service;
        self.out.line(format!("    {}: {{", method_name(&m.proto_name, &[])));
        self.out.line(format!("      method: {},", string_literal(&m.proto_name)));
        self.out.line(format!("      endpoint: {},", string_literal(&m.endpoint)));
        self.out.line(format!("      input: {},", self.message(&m.input, true)));
        self.out.line(format!("      output: {},", self.message(&m.output, true)));
        if let Some(timeout) = m.timeout.or(s.timeout) {
            self.out.line(format!("      timeout: {},", milliseconds(timeout)));
        }
        self.out.line(format!("      metadata: {},", record(&m.metadata)));
        self.out.line(format!("      queueGroupDisabled: {},", m.queue_group_disabled));
        if m.idempotent {
            self.out.line("      idempotent: true,");
        }
        // Unary RPCs and streams sit in two maps: their common proto order is told when both exist.
        if !s.streaming.is_empty() && !s.methods.is_empty() {
            self.out.line(format!("      position: {},", m.position));
        }
        if let Some(limit) = m.pending_msg_limit {
            self.out.line(format!("      pendingMsgLimit: {limit},"));
        }
        if let Some(limit) = m.pending_bytes_limit {
            self.out.line(format!("      pendingBytesLimit: {limit},"));
        }
    }

    pub(super) fn method_doc(method: &Method, last: String) -> Vec<Doc> {
        let mut doc = vec![Doc::proto(method.comments.as_deref()), Doc::Prose(last)];
        if method.deprecated {
            doc.push(Doc::Prose("@deprecated".to_owned()));
        }
        doc
    }
}
