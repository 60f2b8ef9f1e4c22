//! The service spec: what the proto declares (names, subjects, options),
//! handed to the runtime by the server registration and the client.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{Rpc, Service};

use super::ModuleWriter;
use super::names::ServiceNames;
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
            self.line("        ),");
        }
        self.line("    ),");
        self.line(")");
    }
}
