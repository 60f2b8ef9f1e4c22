//! Plugin parameters (`--nats-micro_opt=...`).

use crate::error::Error;
use crate::rust::RustOptions;

/// Every parameter, with its meaning: for `--help` and for the error that
/// names an unknown one.
pub const PARAMETERS: [(&str, &str); 6] = [
    ("lang=rust|typescript|python", "language to emit (also ts, py, rs); default rust"),
    ("language=...", "same as lang"),
    ("extern_path=.proto.pkg=::rust::path", "Rust: messages of a proto package live at a Rust path (repeatable)"),
    ("runtime_path=::path", "Rust: path of the runtime's codegen module (default ::nats_micro_runtime::codegen)"),
    ("flat_output_dir", "Rust: write pkg.nats_micro.rs at the output root (as protoc-gen-prost's flat_output_dir)"),
    ("no_include", "Rust: do not include our file from protoc-gen-prost's (run prost in the same protoc call otherwise)"),
];

/// The language to emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    /// Rust, for prost messages (default).
    #[default]
    Rust,
    /// TypeScript, for protobuf-es messages.
    TypeScript,
    /// Python, for protoc's `_pb2` messages.
    Python,
}

/// Parsed parameters.
#[derive(Clone, Debug, Default)]
pub struct Params {
    /// Rust on the protoc path: `flat_output_dir` and `no_include`.
    pub layout: crate::layout::Layout,
    /// `lang` / `language`.
    pub lang: Lang,
    /// Rust settings: `runtime_path`, `extern_path`.
    pub rust: RustOptions,
}

impl Params {
    /// Parses `key=value` pairs separated by commas. An unknown key or value
    /// is an error naming it.
    ///
    /// ```
    /// use protoc_gen_nats_micro::params::{Lang, Params};
    /// assert_eq!(Params::parse("lang=ts").unwrap().lang, Lang::TypeScript);
    /// assert!(Params::parse("lang=cobol").unwrap_err().to_string().contains("cobol"));
    /// assert!(Params::parse("colour=blue").unwrap_err().to_string().contains("colour"));
    /// ```
    pub fn parse(parameter: &str) -> Result<Params, Error> {
        let mut params = Params::default();
        for pair in parameter.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key.trim() {
                "lang" | "language" => {
                    params.lang = match value.trim().to_ascii_lowercase().as_str() {
                        "rust" | "rs" => Lang::Rust,
                        "typescript" | "ts" => Lang::TypeScript,
                        "python" | "py" => Lang::Python,
                        other => {
                            return Err(Error::InvalidParameter(format!(
                                "`{key}`: unknown value {other:?} (expected rust, typescript/ts or python/py)"
                            )));
                        }
                    }
                }
                "flat_output_dir" | "no_include" if !value.is_empty() => {
                    return Err(Error::InvalidParameter(format!("`{key}` takes no value (got {value:?})")));
                }
                "flat_output_dir" => params.layout.flat_output_dir = true,
                "no_include" => params.layout.no_include = true,
                "runtime_path" => {
                    params.rust.runtime_path(value).map_err(Error::InvalidParameter)?;
                }
                "extern_path" => {
                    let (proto, rust) = value.split_once('=').ok_or_else(|| {
                        Error::InvalidParameter(format!("extern_path={value:?}: expected extern_path=.proto.pkg=::rust::path"))
                    })?;
                    params.rust.extern_path(proto, rust).map_err(Error::InvalidParameter)?;
                }
                other => {
                    return Err(Error::InvalidParameter(format!(
                        "`{other}` is unknown (known: lang, language, runtime_path, extern_path, flat_output_dir, no_include; see protoc-gen-nats-micro --help)"
                    )));
                }
            }
        }
        Ok(params)
    }
}
