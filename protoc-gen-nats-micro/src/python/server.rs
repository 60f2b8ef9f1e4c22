//! The server side of a service: the handler `Protocol` users implement and
//! the `register_*` coroutine that serves it through the runtime.

use std::fmt::Write as _;

use crate::model::{Service, StreamKind};

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
        for (stream, name) in service.streaming.iter().zip(&names.streams) {
            let method = &stream.method;
            let (input, output) = (self.message_type(&method.input), self.message_type(&method.output));
            let (signature, what) = match stream.kind {
                StreamKind::Server => (
                    format!(
                        "def {name}(self, request: {input}, ctx: nats_micro_runtime.RequestContext) -> AsyncIterator[{output}]"
                    ),
                    "typically an ``async def`` that yields the responses.",
                ),
                StreamKind::Client => (
                    format!(
                        "async def {name}(self, requests: AsyncIterator[{input}], ctx: nats_micro_runtime.RequestContext) -> {output}"
                    ),
                    "reads the caller's messages (``async for request in requests``)\nand returns one response.",
                ),
                StreamKind::Bidirectional => (
                    format!(
                        "def {name}(self, requests: AsyncIterator[{input}], ctx: nats_micro_runtime.RequestContext) -> AsyncIterator[{output}]"
                    ),
                    "reads the caller's messages (``async for request in requests``),\n\
                     typically in an ``async def`` that yields the responses.",
                ),
            };
            self.line("");
            self.line(&format!("    {signature}:"));
            let doc = method_doc(
                method,
                &format!(
                    "Serves {} endpoint ``{}`` (subject ``{}`` by default):\n\
                     {what}\n\
                     A raised ``{}`` ends the stream with its code;\n\
                     response headers set on ``ctx`` go on the stream's end.",
                    stream.kind.label(),
                    method.endpoint,
                    method.subject,
                    names.error
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
        for (stream, name) in service.streaming.iter().zip(&names.streams) {
            let class = match stream.kind {
                StreamKind::Server => "ServerStreamEndpoint",
                StreamKind::Client => "ClientStreamEndpoint",
                StreamKind::Bidirectional => "BidiStreamEndpoint",
            };
            self.line(&format!(
                "            {}: nats_micro_runtime.{class}(handler.{name}, {}),",
                string_literal(&stream.method.endpoint),
                self.message_value(&stream.method.input)
            ));
        }
        self.line("        },");
        self.line("        overrides,");
        self.line("    )");
    }
}
