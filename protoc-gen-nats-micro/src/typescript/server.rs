//! The server side: the handler interface and its registration.

use super::names::{method_name, string_literal};
use super::{Doc, RUNTIME_ALIAS, ServiceWriter};
use crate::model::StreamKind;

impl ServiceWriter<'_> {
    pub(super) fn server(&mut self) {
        let (s, n) = (self.service, self.names);
        self.out.line("");
        let mut doc = vec![
            Doc::proto(s.comments.as_deref()),
            Doc::Prose(format!(
                "The server side of `{}`: implement it and pass it to {{@link {}}}. A handler returns the response (or a promise of it) and throws a {{@link {}}} to fail with a code; anything else it throws becomes INTERNAL, its text logged and not sent.",
                s.full_name, n.register, n.error
            )),
        ];
        doc.extend(self.service_notes());
        self.out.doc("", &doc);
        self.out.line(format!("export interface {} {{", n.interface));
        for m in &s.methods {
            let mut subject = format!("Endpoint `{}` on subject `{}` (by default).", m.endpoint, m.subject);
            if let Some(note) = self.store_note(m, None) {
                subject = format!("{note} {subject}");
            }
            self.out.doc("  ", &Self::method_doc(m, subject));
            // In an interface a bare `new(...)` would declare a constructor.
            let name = method_name(&m.proto_name, &[]);
            let name = if name == "new" { string_literal(&name) } else { name };
            self.out.line(format!(
                "  {name}(request: {}, ctx: {RUNTIME_ALIAS}.RequestContext): {RUNTIME_ALIAS}.HandlerResult<typeof {}>;",
                self.message(&m.input, false),
                self.message(&m.output, true),
            ));
        }
        for stream in &s.streaming {
            let m = &stream.method;
            let shape = match stream.kind {
                StreamKind::Server => "Produces the responses (typically an `async function*`)",
                StreamKind::Client => "Reads the requests and returns the response",
                StreamKind::Bidirectional => "Reads the requests and produces the responses (typically an `async function*`)",
            };
            let mut subject = format!(
                "{shape}; `ctx.signal` aborts on the deadline, a caller cancel, a gone caller or the service's stop, and `ctx.setResponseHeader` sets trailing headers. Endpoint `{}` on subject `{}` (by default).",
                m.endpoint, m.subject
            );
            if let Some(note) = self.store_note(m, stream.chunked_io.as_ref().map(|c| (c, stream.kind))) {
                subject = format!("{note} {subject}");
            }
            self.out.doc("  ", &Self::method_doc(m, subject));
            let name = method_name(&m.proto_name, &[]);
            let name = if name == "new" { string_literal(&name) } else { name };
            let (input, output) = (
                self.message(&m.input, false),
                format!("{RUNTIME_ALIAS}.MessageInitShape<typeof {}>", self.message(&m.output, true)),
            );
            let (argument, result) = match stream.kind {
                StreamKind::Server => (format!("request: {input}"), format!("AsyncIterable<{output}>")),
                StreamKind::Client => (format!("requests: AsyncIterable<{input}>"), format!("Promise<{output}>")),
                StreamKind::Bidirectional => (format!("requests: AsyncIterable<{input}>"), format!("AsyncIterable<{output}>")),
            };
            self.out.line(format!("  {name}({argument}, ctx: {RUNTIME_ALIAS}.RequestContext): {result};"));
        }
        self.out.line("}");
        self.out.line("");
        let mut doc = vec![Doc::Prose(format!(
            "Starts `{}` on `nc` with the proto's options; `options` override any of them (name, version, metadata, subject prefix, queue group, timeouts) and add interceptors. The service answers ADR-32 discovery (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) until stopped.",
            s.full_name
        ))];
        doc.extend(s.deprecated.then(|| Doc::Prose("@deprecated".to_owned())));
        self.out.doc("", &doc);
        self.out.line(format!("export function {}(", n.register));
        self.out.line(format!("  nc: {RUNTIME_ALIAS}.NatsConnection,"));
        self.out.line(format!("  impl: {},", n.interface));
        self.out.line(format!("  options?: {RUNTIME_ALIAS}.ServiceOptions,"));
        self.out.line(format!("): Promise<{RUNTIME_ALIAS}.Service> {{"));
        self.out.line(format!("  return {RUNTIME_ALIAS}.Service.start(nc, {}, impl, options);", n.spec));
        self.out.line("}");
    }
}
