//! The server side of a service: the handler `Protocol` users implement and
//! the `register_*` coroutine that serves it through the runtime.

use std::fmt::Write as _;

use crate::model::Service;

use super::names::ServiceNames;
use super::text::{comment_text, docstring, string_literal};
use super::{ModuleWriter, method_doc};

impl ModuleWriter<'_> {
    /// `class OrderServiceHandler(Protocol)`: one coroutine per RPC.
    pub(super) fn handler(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line("");
        self.line(&format!("class {}(Protocol):", names.handler));
        let mut doc = format!(
            "The server side of ``{}``: implement these coroutines and pass the\nobject to ``{}``.",
            service.full_name, names.register
        );
        if let Some(comments) = comment_text(service.comments.as_deref()) {
            let _ = write!(doc, "\n\n{comments}");
        }
        if service.deprecated {
            doc.push_str("\n\n.. deprecated:: The proto marks this service deprecated.");
        }
        let left_out: Vec<String> =
            super::left_out_streams(service).map(|m| format!("``{}`` ({})", m.method.proto_name, m.kind)).collect();
        if !left_out.is_empty() {
            let _ = write!(doc, "\n\nStreaming RPCs are not generated yet and are left out: {}.", left_out.join(", "));
        }
        self.push(&docstring("    ", &doc));
        for (method, name) in service.methods.iter().zip(&names.methods) {
            self.line("");
            self.line(&format!(
                "    async def {name}(self, request: {}, ctx: nats_micro_runtime.RequestContext) -> {}:",
                self.message_type(&method.input),
                self.message_type(&method.output)
            ));
            let doc = method_doc(
                method,
                &format!(
                    "Serves endpoint ``{}`` (subject ``{}`` by default); a raised\n``{}`` replies with its code.",
                    method.endpoint, method.subject, names.error
                ),
            );
            self.push(&docstring("        ", &doc));
            self.line("        ...");
        }
        for (stream, name) in super::server_streams(service).zip(&names.server_streams) {
            let method = &stream.method;
            self.line("");
            self.line(&format!(
                "    def {name}(self, request: {}, ctx: nats_micro_runtime.RequestContext) -> AsyncIterator[{}]:",
                self.message_type(&method.input),
                self.message_type(&method.output)
            ));
            let doc = method_doc(
                method,
                &format!(
                    "Serves server-streaming endpoint ``{}`` (subject ``{}`` by default):\n\
                     typically an ``async def`` that yields the responses. A raised\n\
                     ``{}`` ends the stream with its code; response headers set on\n\
                     ``ctx`` go on the stream's end.",
                    method.endpoint, method.subject, names.error
                ),
            );
            self.push(&docstring("        ", &doc));
            self.line("        ...");
        }
    }

    /// `async def register_order_service(nc, handler, **overrides) -> Service`.
    pub(super) fn register(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line("");
        self.line(&format!("async def {}(", names.register));
        self.line("    nc: nats.aio.client.Client,");
        self.line(&format!("    handler: {},", names.handler));
        self.line("    **overrides: Unpack[nats_micro_runtime.ServiceOverrides],");
        self.line(") -> nats_micro_runtime.Service:");
        self.push(&docstring(
            "    ",
            &format!(
                "Serves ``{}`` on ``nc`` with ``handler`` until the returned service stops.\n\n\
                 The proto's options apply unless ``overrides`` say otherwise (see\n\
                 ``nats_micro_runtime.ServiceOverrides``).",
                service.full_name
            ),
        ));
        if service.deprecated {
            self.line(&format!(
                "    warnings.warn({}, DeprecationWarning, stacklevel=2)",
                string_literal(&format!("{} is deprecated", service.full_name))
            ));
        }
        self.line("    return await nats_micro_runtime.start_service(");
        self.line("        nc,");
        self.line(&format!("        {},", names.spec));
        self.line("        {");
        for (method, name) in service.methods.iter().zip(&names.methods) {
            self.line(&format!(
                "            {}: nats_micro_runtime.UnaryEndpoint(handler.{name}, {}),",
                string_literal(&method.endpoint),
                self.message_value(&method.input)
            ));
        }
        for (stream, name) in super::server_streams(service).zip(&names.server_streams) {
            self.line(&format!(
                "            {}: nats_micro_runtime.ServerStreamEndpoint(handler.{name}, {}),",
                string_literal(&stream.method.endpoint),
                self.message_value(&stream.method.input)
            ));
        }
        self.line("        },");
        self.line("        overrides,");
        self.line("    )");
    }
}
