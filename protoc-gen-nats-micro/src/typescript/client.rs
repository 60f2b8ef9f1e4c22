//! The typed client.

use super::names::method_name;
use super::{CLIENT_MEMBERS, Doc, RUNTIME_ALIAS, ServiceWriter};

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
        self.out.line("}");
    }
}
