//! Errors of a generated module: the `ERROR_CODE_*` constants (once per
//! module) and, per service, its base exception with one subclass per code,
//! a `new_<service>_<code>_error` constructor and an `is_<service>_<code>`
//! checker per code — the Go plugin's Python API. The canonical codes'
//! classes, numbers and wire form live in the runtime; a service adds only
//! its names and its custom codes.

use std::collections::HashSet;

use crate::model::{File, Service};

use super::ModuleWriter;
use super::names::{ServiceNames, code_pascal};
use super::text::{docstring, string_literal};

/// The canonical codes in the Go plugin's order (the model's table);
/// `tests/python/test_codegen.py` pins it to the runtime's `CANONICAL_CODES`.
pub use crate::model::CANONICAL_CODE_NAMES as CANONICAL_CODES;

/// The codes of a service: the canonical ones, then its custom codes.
pub fn service_codes(service: &Service) -> impl Iterator<Item = &str> {
    CANONICAL_CODES.iter().copied().chain(service.error_codes.iter().map(String::as_str))
}

fn is_canonical(code: &str) -> bool {
    CANONICAL_CODES.contains(&code)
}

impl ModuleWriter<'_> {
    /// `ERROR_CODE_*` for every code of every service in the file, canonical
    /// ones bound to the runtime's constants.
    pub(super) fn code_constants(&mut self, file: &File) {
        let mut seen = HashSet::new();
        let codes: Vec<&str> = file.services.iter().flat_map(service_codes).filter(|code| seen.insert(*code)).collect();
        self.line("");
        for code in codes {
            let value = if is_canonical(code) { format!("nats_micro_runtime.{code}") } else { string_literal(code) };
            self.line(&format!("ERROR_CODE_{code} = {value}"));
        }
    }

    /// The service's exception hierarchy, constructors and checkers.
    pub(super) fn errors(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line("");
        self.line(&format!("class {}(nats_micro_runtime.ServiceError):", names.error));
        self.push(&docstring(
            "    ",
            &format!(
                "An error reply of ``{}``; one subclass per code (``{}``, ...).\n\n\
                 ``{}`` raises the subclass of the reply's code, or this class for a\n\
                 code the service does not declare. Handlers raise them to reply with a code.",
                service.full_name,
                names.codes.iter().find(|c| c.wire == "NOT_FOUND").map_or("", |c| c.class.as_str()),
                names.client,
            ),
        ));
        self.line("");
        self.line("");
        for code in &names.codes {
            if is_canonical(&code.wire) {
                let base = format!("nats_micro_runtime.{}Error", code_pascal(&code.wire));
                self.line(&format!("class {}({}, {base}): ...", code.class, names.error));
            } else {
                self.line(&format!(
                    "class {}({}, nats_micro_runtime.CodedServiceError): CODE = ERROR_CODE_{}",
                    code.class, names.error, code.wire
                ));
            }
        }
        self.line("");
        // Constructors are the classes themselves: `(method, message, data=b"")`.
        for code in &names.codes {
            self.line(&format!("{} = {}", code.constructor, code.class));
        }
        self.line("");
        for code in &names.codes {
            self.line(&format!("{} = {}.checker(ERROR_CODE_{})", code.checker, names.error, code.wire));
        }
    }
}
