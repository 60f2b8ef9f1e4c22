//! The typed client of a service: one coroutine per RPC over the runtime's
//! `Client`.

use std::fmt::Write as _;

use crate::model::{Method, Service, StreamKind, StreamingMethod};

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
            let what = format!(
                "Calls ``{}`` (endpoint ``{}``), retrying transient failures as ``retry``\n\
                 (else the client's policy) says; ``idempotent`` overrides whether it is safe to repeat.",
                method.proto_name, method.endpoint
            );
            let call = format!(
                "self._client.unary({}, request, {}, timeout=timeout, headers=headers, retry=retry, idempotent=idempotent)",
                string_literal(&method.endpoint),
                self.message_value(&method.output)
            );
            let returns = format!("nats_micro_runtime.Response[{}]", self.message_type(&method.output));
            let request = format!("request: {}", self.message_type(&method.input));
            let retry =
                ["retry: nats_micro_runtime.RetryPolicy | None = None".to_owned(), "idempotent: bool | None = None".to_owned()];
            self.client_method(service, method, name, &request, &retry, &returns, &what, &call);
        }
        for (stream, name) in service.streaming.iter().zip(&names.streams) {
            let method = &stream.method;
            let output = self.message_type(&method.output);
            let (argument, runtime_call, returns, what) = match stream.kind {
                StreamKind::Server => (
                    "request",
                    "server_stream",
                    format!("nats_micro_runtime.ResponseStream[{output}]"),
                    "``async for`` over the result; leaving it early (``aclose`` or\n\
                     ``async with``) cancels the stream.",
                ),
                StreamKind::Client => (
                    "requests",
                    "client_stream",
                    format!("nats_micro_runtime.Response[{output}]"),
                    "sends ``requests`` (any iterable or async iterable)\n\
                     as the server grants credit and returns its one response;\n\
                     cancelling the awaiting task cancels the stream.",
                ),
                StreamKind::Bidirectional => (
                    "requests",
                    "bidi_stream",
                    format!("nats_micro_runtime.ResponseStream[{output}]"),
                    "sends ``requests`` (any iterable or async iterable)\n\
                     in the background as the server grants credit; ``async for`` over\n\
                     the responses, and leaving early (``aclose`` or ``async with``)\n\
                     cancels the stream.",
                ),
            };
            let what = format!(
                "Calls ``{}`` ({} endpoint ``{}``):\n\
                 {what}\n\
                 ``timeout`` covers the whole stream; ``window`` is the flow-control window.",
                method.proto_name,
                stream.kind.label(),
                method.endpoint
            );
            let call = format!(
                "self._client.{runtime_call}({}, {argument}, {}, timeout=timeout, headers=headers, window=window)",
                string_literal(&method.endpoint),
                self.message_value(&method.output)
            );
            let input = self.message_type(&method.input);
            let parameter = if stream.kind.client_streams() {
                format!("requests: nats_micro_runtime.RequestSource[{input}]")
            } else {
                format!("request: {input}")
            };
            let window = format!("window: int = {}", stream.max_inflight.unwrap_or(64));
            self.client_method(service, method, name, &parameter, std::slice::from_ref(&window), &returns, &what, &call);
        }
        for (method, handle) in service.methods.iter().zip(&names.store_handles) {
            if let Some(handle) = handle {
                self.store_handle(service, method, handle);
            }
        }
        for (stream, helpers) in service.streaming.iter().zip(&names.chunked) {
            if let Some(helpers) = helpers {
                self.chunked_helpers(service, stream, helpers);
            }
        }
    }

    /// `async def save_profile_kv(self) -> KvHandle[...]` (or `..._objects` for an object store).
    fn store_handle(&mut self, service: &Service, method: &Method, name: &str) {
        let (input, output) = (self.message_type(&method.input), self.message_type(&method.output));
        let (class, opener, what) = if let Some(store) = &method.kv_store {
            let created = if store.client_only { " (created with the proto's settings when missing)" } else { "" };
            let what = format!(
                "Opens a typed handle on the key-value bucket ``{}``{created}\n\
                 where ``{}`` keeps its responses under ``{}``\n\
                 (``nats_micro_runtime.KvHandle``: get, put, create, update, delete, purge, watch, keys).",
                store.bucket.name, method.proto_name, store.key.text
            );
            ("KvHandle", "kv_store", what)
        } else if let Some(store) = &method.object_store {
            let created = if store.client_only { " (created with the proto's settings when missing)" } else { "" };
            let what = format!(
                "Opens a typed handle on the object store ``{}``{created}\n\
                 where ``{}`` keeps its responses under ``{}``\n\
                 (``nats_micro_runtime.ObjectHandle``: get with the digest verified, put, delete, info).",
                store.bucket.name, method.proto_name, store.key.text
            );
            ("ObjectHandle", "object_store", what)
        } else {
            return;
        };
        self.line("");
        self.line(&format!("    async def {name}(self) -> nats_micro_runtime.{class}[{input}, {output}]:"));
        self.push(&docstring("        ", &method_doc(method, &what)));
        if method.deprecated {
            self.line(&format!(
                "        warnings.warn({}, DeprecationWarning, stacklevel=2)",
                string_literal(&format!("{}.{} is deprecated", service.full_name, method.proto_name))
            ));
        }
        self.line(&format!(
            "        return await self._client.{opener}({}, {}, {})",
            string_literal(&method.endpoint),
            self.message_value(&method.input),
            self.message_value(&method.output)
        ));
    }

    /// The three chunked-transfer helpers of a `chunked_io` stream (PROTOCOL §12.5).
    fn chunked_helpers(&mut self, service: &Service, stream: &StreamingMethod, helpers: &[String; 3]) {
        let method = &stream.method;
        let endpoint = string_literal(&method.endpoint);
        let window = format!("window: int = {}", stream.max_inflight.unwrap_or(64));
        let common = "timeout=timeout, headers=headers, window=window";
        if stream.kind.client_streams() {
            let (chunk, output) = (self.message_value(&method.input), self.message_value(&method.output));
            let returns = format!("nats_micro_runtime.Response[{}]", self.message_type(&method.output));
            let sources = [
                ("data: bytes", "data", "send_chunks", "``data``"),
                (
                    "source: nats_micro_runtime.ByteSource",
                    "source",
                    "send_chunks",
                    "``source`` (an async reader such as ``asyncio.StreamReader``, a file, or an (async) iterable of bytes)",
                ),
                ("path: str | os.PathLike[str]", "path", "send_file", "the file at ``path``"),
            ];
            for ((parameter, argument, runtime, what), name) in sources.iter().zip(helpers) {
                let what = format!(
                    "Uploads {what} through ``{}`` in chunks (PROTOCOL §12.5),\n\
                     read as they are sent, with the size and SHA-256 on the end; returns the response.\n\
                     ``chunk_size`` overrides the proto's chunk size.",
                    method.proto_name
                );
                let call =
                    format!("self._client.{runtime}({endpoint}, {argument}, {chunk}, {output}, chunk_size=chunk_size, {common})");
                let extra = ["chunk_size: int | None = None".to_owned(), window.clone()];
                self.client_method(service, method, name, parameter, &extra, &returns, &what, &call);
            }
        } else {
            let (input, chunk) = (self.message_type(&method.input), self.message_value(&method.output));
            let sinks = [
                (format!("request: {input}"), String::new(), "receive_bytes", "nats_micro_runtime.ChunkedBytes", "into memory"),
                (
                    format!("request: {input},\n        writer: nats_micro_runtime.ByteWriter"),
                    ", writer".to_owned(),
                    "receive_chunks",
                    "nats_micro_runtime.ChunkedTransfer",
                    "into ``writer`` (``write(data)``, awaited if a coroutine; ``drain()`` if it has one)",
                ),
                (
                    format!("request: {input},\n        path: str | os.PathLike[str]"),
                    ", path".to_owned(),
                    "receive_file",
                    "nats_micro_runtime.ChunkedTransfer",
                    "into the file at ``path`` (a temporary file beside it, renamed once the\n\
                     transfer is complete and checked, removed when it fails)",
                ),
            ];
            for ((parameter, argument, runtime, returns, what), name) in sinks.iter().zip(helpers) {
                let what = format!(
                    "Downloads through ``{}`` in chunks (PROTOCOL §12.5)\n\
                     {what};\n\
                     the server's size and SHA-256 are checked at the end (``DATA_LOSS`` on a mismatch).",
                    method.proto_name
                );
                let call = format!("self._client.{runtime}({endpoint}, request, {chunk}{argument}, {common})");
                self.client_method(service, method, name, parameter, std::slice::from_ref(&window), returns, &what, &call);
            }
        }
    }

    /// One client coroutine: `parameter` (the request or the requests), keyword-only `timeout`, `headers` and
    /// `extra` parameters, the docstring, the deprecation warning, `return await call`.
    #[allow(clippy::too_many_arguments)]
    fn client_method(
        &mut self,
        service: &Service,
        method: &Method,
        name: &str,
        parameter: &str,
        extra: &[String],
        returns: &str,
        what: &str,
        call: &str,
    ) {
        self.line("");
        self.line(&format!("    async def {name}("));
        self.line("        self,");
        self.line(&format!("        {parameter},"));
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
