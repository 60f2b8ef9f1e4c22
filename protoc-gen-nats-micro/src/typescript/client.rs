//! The typed client.

use super::names::method_name;
use super::{CLIENT_MEMBERS, Doc, RUNTIME_ALIAS, ServiceWriter};
use crate::model::StreamKind;

impl ServiceWriter<'_> {
    pub(super) fn client(&mut self) {
        let (s, n) = (self.service, self.names);
        self.out.line("");
        let mut doc = vec![Doc::Prose(format!(
            "Typed client for `{}`. Each call rejects with a {{@link {}}}: the service's reply, or a transport failure (`isTimeout()`, `isNoResponders()`).",
            s.full_name, n.error
        ))];
        doc.extend(self.service_notes());
        self.out.doc("", &doc);
        self.out.line(format!("export class {} {{", n.client));
        self.out.line(format!("  readonly #client: {RUNTIME_ALIAS}.Client<{}>;", n.error));
        self.out.line("");
        self.out.prose(
            "  ",
            "A client with the proto's subject prefix and timeouts; `options` override them and add headers and interceptors."
                .to_owned(),
        );
        self.out.line(format!("  constructor(nc: {RUNTIME_ALIAS}.NatsConnection, options?: {RUNTIME_ALIAS}.ClientOptions) {{"));
        self.out.line(format!("    this.#client = new {RUNTIME_ALIAS}.Client(nc, {}, {}, options);", n.spec, n.error));
        self.out.line("  }");
        self.out.line("");
        self.out.prose("  ", "Endpoint names and the subjects this client sends to, in proto order.".to_owned());
        self.out.line(format!("  endpoints(): {RUNTIME_ALIAS}.EndpointInfo[] {{"));
        self.out.line("    return this.#client.endpoints();");
        self.out.line("  }");
        for m in &s.methods {
            self.out.line("");
            let call = format!("Calls `{}` on `{{subjectPrefix}}.{}`.", m.proto_name, m.endpoint);
            self.out.doc("  ", &Self::method_doc(m, call));
            self.out.line(format!("  {}(", method_name(&m.proto_name, &CLIENT_MEMBERS)));
            self.out.line(format!("    request: {RUNTIME_ALIAS}.MessageInitShape<typeof {}>,", self.message(&m.input, true)));
            self.out.line(format!("    options?: {RUNTIME_ALIAS}.CallOptions,"));
            self.out.line(format!("  ): Promise<{}> {{", self.message(&m.output, false)));
            self.out.line(format!(
                "    return this.#client.unary({}.methods.{}, request, options);",
                n.spec,
                method_name(&m.proto_name, &[])
            ));
            self.out.line("  }");
        }
        for stream in &s.streaming {
            let m = &stream.method;
            self.out.line("");
            let call = match stream.kind {
                StreamKind::Server => "Opens the server stream: iterate the responses; breaking out of `for await` cancels it.",
                StreamKind::Client => {
                    "Opens the client stream: `send` the requests (each waits for the server's credit), then `closeAndReceive()`."
                }
                StreamKind::Bidirectional => {
                    "Opens the bidirectional stream: `send` requests and iterate responses; `closeSend()` ends the requests, `cancel()` abandons the call."
                }
            };
            let call = format!("{call} `{}` on `{{subjectPrefix}}.{}`.", m.proto_name, m.endpoint);
            self.out.doc("  ", &Self::method_doc(m, call));
            let (input, output) = (self.message(&m.input, true), self.message(&m.output, true));
            let spec = format!("{}.streams.{}", n.spec, method_name(&m.proto_name, &[]));
            self.out.line(format!("  {}(", method_name(&m.proto_name, &CLIENT_MEMBERS)));
            let (result, call) = match stream.kind {
                StreamKind::Server => {
                    self.out.line(format!("    request: {RUNTIME_ALIAS}.MessageInitShape<typeof {input}>,"));
                    (format!("ResponseStream<typeof {output}>"), format!("serverStream({spec}, request, options)"))
                }
                StreamKind::Client => {
                    (format!("RequestStream<typeof {input}, typeof {output}>"), format!("clientStream({spec}, options)"))
                }
                StreamKind::Bidirectional => {
                    (format!("BidiStream<typeof {input}, typeof {output}>"), format!("bidiStream({spec}, options)"))
                }
            };
            self.out.line(format!("    options?: {RUNTIME_ALIAS}.StreamCallOptions,"));
            self.out.line(format!("  ): {RUNTIME_ALIAS}.{result} {{"));
            self.out.line(format!("    return this.#client.{call};"));
            self.out.line("  }");
        }
        self.client_chunked();
        self.client_store_handles();
        self.out.line("}");
    }
}
