//! The typed client of a service: one coroutine per RPC over the runtime's
//! `Client`.

use std::fmt::Write as _;

use crate::model::{Method, Service};

use super::names::ServiceNames;
use super::text::{comment_text, docstring, string_literal};
use super::{ModuleWriter, method_doc};

impl ModuleWriter<'_> {
    /// `class OrderServiceClient`.
    pub(super) fn client(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line("");
        self.line(&format!("class {}:", names.client));
        let mut doc = format!(
            "Typed client for ``{}``: each call returns ``(message, headers)``,\n\
             raises ``{}`` subclasses for error replies and\n\
             ``nats_micro_runtime.TransportError`` subclasses when no reply came back.",
            service.full_name, names.error
        );
        if let Some(comments) = comment_text(service.comments.as_deref()) {
            let _ = write!(doc, "\n\n{comments}");
        }
        if service.deprecated {
            doc.push_str("\n\n.. deprecated:: The proto marks this service deprecated.");
        }
        self.push(&docstring("    ", &doc));
        self.client_init(service, names);
        for (method, name) in service.methods.iter().zip(&names.methods) {
            let what = format!("Calls ``{}`` (endpoint ``{}``).", method.proto_name, method.endpoint);
            let call = format!(
                "self._client.unary({}, request, {}, timeout=timeout, headers=headers)",
                string_literal(&method.endpoint),
                self.message_value(&method.output)
            );
            let returns = format!("nats_micro_runtime.Response[{}]", self.message_type(&method.output));
            self.client_method(service, method, name, &[], &returns, &what, &call);
        }
        for (stream, name) in super::server_streams(service).zip(&names.server_streams) {
            let method = &stream.method;
            let what = format!(
                "Opens ``{}`` (server-streaming endpoint ``{}``): ``async for`` over the\n\
                 result; leaving it early (``aclose`` or ``async with``) cancels the stream.\n\
                 ``timeout`` covers the whole stream; ``window`` is the flow-control window.",
                method.proto_name, method.endpoint
            );
            let call = format!(
                "self._client.server_stream({}, request, {}, timeout=timeout, headers=headers, window=window)",
                string_literal(&method.endpoint),
                self.message_value(&method.output)
            );
            let returns = format!("nats_micro_runtime.ServerStream[{}]", self.message_type(&method.output));
            let window = format!("window: int = {}", stream.max_inflight.unwrap_or(64));
            self.client_method(service, method, name, &[window], &returns, &what, &call);
        }
    }

    /// One client coroutine: `request`, keyword-only `timeout`, `headers` and
    /// `extra` parameters, the docstring, the deprecation warning, `return await call`.
    #[allow(clippy::too_many_arguments)]
    fn client_method(
        &mut self,
        service: &Service,
        method: &Method,
        name: &str,
        extra: &[String],
        returns: &str,
        what: &str,
        call: &str,
    ) {
        self.line("");
        self.line(&format!("    async def {name}("));
        self.line("        self,");
        self.line(&format!("        request: {},", self.message_type(&method.input)));
        self.line("        *,");
        self.line("        timeout: float | None = None,");
        self.line("        headers: Mapping[str, str] | None = None,");
        for parameter in extra {
            self.line(&format!("        {parameter},"));
        }
        self.line(&format!("    ) -> {returns}:"));
        self.push(&docstring("        ", &method_doc(method, what)));
        if method.deprecated {
            self.line(&format!(
                "        warnings.warn({}, DeprecationWarning, stacklevel=2)",
                string_literal(&format!("{}.{} is deprecated", service.full_name, method.proto_name))
            ));
        }
        self.line(&format!("        return await {call}"));
    }

    fn client_init(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line("    def __init__(");
        self.line("        self,");
        self.line("        nc: nats.aio.client.Client,");
        self.line("        **options: Unpack[nats_micro_runtime.ClientOptions],");
        self.line("    ) -> None:");
        self.push(&docstring("        ", "A client on ``nc``; ``options``: see ``nats_micro_runtime.ClientOptions``."));
        if service.deprecated {
            self.line(&format!(
                "        warnings.warn({}, DeprecationWarning, stacklevel=2)",
                string_literal(&format!("{} is deprecated", service.full_name))
            ));
        }
        self.line(&format!("        self._client = nats_micro_runtime.Client(nc, {}, {}, **options)", names.spec, names.error));
    }
}
