//! The errors: the code enum, the error class, a constructor and a checker per code.

use super::names::string_literal;
use super::{RUNTIME_ALIAS, ServiceWriter};

impl ServiceWriter<'_> {
    pub(super) fn errors(&mut self) {
        let (s, n) = (self.service, self.names);
        self.out.line("");
        self.out.prose("", format!(
            "The codes `{}` declares: the canonical codes in the Go plugin's order (the seven built-ins travel as ADR-32 numbers by default, the rest by name), then the custom codes from `error_codes`. A code outside this list is kept verbatim as a string.",
            s.full_name
        ));
        self.out.line(format!("export enum {} {{", n.code));
        for code in &n.codes {
            self.out.line(format!("  {} = {},", code.wire, string_literal(&code.wire)));
        }
        self.out.line("}");
        self.out.line("");
        self.out.prose("", format!(
            "An error of `{}`: a code ({{@link {}}}, or an unrecognised one verbatim), the method, a message and optional error data. Thrown by a handler, the caller gets exactly that code, message and data.",
            s.full_name, n.code
        ));
        self.out.line(format!("export class {} extends {RUNTIME_ALIAS}.NatsMicroError {{", n.error));
        self.out.line("  constructor(");
        self.out.line(format!("    code: {} | string,", n.code));
        self.out.line("    method: string,");
        self.out.line("    message: string,");
        self.out.line("    data?: Uint8Array,");
        self.out.line(format!("    options?: {RUNTIME_ALIAS}.NatsMicroErrorOptions,"));
        self.out.line("  ) {");
        self.out.line("    super(code, method, message, data, options);");
        self.out.line(format!("    this.name = {};", string_literal(&n.error)));
        self.out.line("  }");
        self.out.line("}");
        self.out.line("");
        self.out.prose("", format!("Whether `error` is a {{@link {}}}.", n.error));
        self.out.line(format!("export function {}(error: unknown): error is {} {{", n.is_error, n.error));
        self.out.line(format!("  return error instanceof {};", n.error));
        self.out.line("}");
        self.out.line("");
        self.out.prose(
            "",
            "The code of an error of this runtime (from any installed copy of it, e.g. a downstream client's); `\"\"` for anything else."
                .to_owned(),
        );
        self.out.line(format!("export function {}(error: unknown): {} | string {{", n.get_code, n.code));
        self.out.line(format!("  return {RUNTIME_ALIAS}.errorCode(error);"));
        self.out.line("}");
        self.out.line("");
        self.out.prose("", format!(
            "Per code, as the Go plugin names them: `new…Error(method, message, data?)` makes a {{@link {}}} with that code (`method` is the proto method name, e.g. `\"{}\"`); `is…(error)` tells whether `error` carries that code, whichever copy of the runtime made it.",
            n.error,
            s.methods.first().map(|m| m.proto_name.as_str()).unwrap_or("Method")
        ));
        for code in &n.codes {
            let member = format!("{}.{}", n.code, code.wire);
            self.out.line(format!("export const {} = {RUNTIME_ALIAS}.errorFactory({}, {member});", code.constructor, n.error));
            self.out.line(format!("export const {} = {RUNTIME_ALIAS}.codeChecker({member});", code.checker));
        }
    }
}
