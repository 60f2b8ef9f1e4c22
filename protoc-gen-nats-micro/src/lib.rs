//! `protoc-gen-nats-micro`: typed NATS microservices (ADR-32) from `.proto`
//! services, for Rust, TypeScript and Python.
//!
//! The plugin entry is a pure function, [`generate`]: request bytes in,
//! response out. Descriptors are read once into a [`model`] of services,
//! methods and validated options; each output language is its own module
//! that only reads that model. [`build`] runs the same code from `build.rs`.

pub mod build;
pub mod error;
pub mod layout;
mod limits;
pub mod model;
pub mod naming;
pub mod options;
pub mod params;
pub mod python;
pub mod rust;
pub mod typescript;

use prost::Message;
use prost_reflect::DescriptorPool;
use prost_types::compiler::CodeGeneratorResponse;
use prost_types::compiler::code_generator_response::{Feature, File as ResponseFile};

pub use crate::error::Error;
pub use crate::options::{OPTIONS_PROTO, OPTIONS_PROTO_PATH};
use crate::params::{Lang, Params};

/// The plugin's version, printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `CodeGeneratorRequest`, read with its files kept as raw bytes so that
/// `prost-reflect` can decode them with every option (ours are extensions,
/// which `prost-types` would drop).
#[derive(Clone, PartialEq, prost::Message)]
struct RawRequest {
    #[prost(string, repeated, tag = "1")]
    file_to_generate: Vec<String>,
    #[prost(string, optional, tag = "2")]
    parameter: Option<String>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    proto_file: Vec<Vec<u8>>,
}

/// A `FileDescriptorSet` over raw file bytes (same wire form).
#[derive(Clone, PartialEq, prost::Message)]
struct RawFileSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// An encoded `CodeGeneratorRequest` for `files_to_generate`, from an
/// encoded `FileDescriptorSet` (dependencies first, as protoc sends them),
/// keeping every option: for tests, benchmarks and tools that drive the
/// plugin without protoc.
pub fn request_from_descriptor_set(
    descriptor_set: &[u8],
    files_to_generate: &[String],
    parameter: Option<&str>,
) -> Result<Vec<u8>, prost::DecodeError> {
    let set = RawFileSet::decode(descriptor_set)?;
    let request = RawRequest {
        file_to_generate: files_to_generate.to_vec(),
        parameter: parameter.map(str::to_owned),
        proto_file: set.file,
    };
    Ok(request.encode_to_vec())
}

/// What one run produced: the response for protoc, and warnings for stderr.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// The response; its `error` is set when generation failed.
    pub response: CodeGeneratorResponse,
    /// Notes for the user (e.g. streaming RPCs left out).
    pub warnings: Vec<String>,
}

/// Generated files (name, content) and warnings.
pub type Generated = (Vec<(String, String)>, Vec<String>);

/// Runs the plugin on an encoded `CodeGeneratorRequest`. Never panics on
/// any input: every problem becomes the response's `error`.
pub fn generate(request: &[u8]) -> Output {
    let mut output = Output::default();
    output.response.supported_features = Some(Feature::Proto3Optional as u64);
    // A bug of ours must still reach protoc as an error, not as a crash.
    let result = std::panic::catch_unwind(|| generate_files(request)).unwrap_or_else(|panic| Err(Error::from_panic(&*panic)));
    match result {
        Ok((files, warnings)) => {
            output.response.file = files;
            output.warnings = warnings;
        }
        Err(error) => output.response.error = Some(error.to_string()),
    }
    output
}

/// [`generate`], returning the encoded response.
pub fn generate_bytes(request: &[u8]) -> (Vec<u8>, Vec<String>) {
    let output = generate(request);
    (output.response.encode_to_vec(), output.warnings)
}

/// Writes `response` encoded, byte for byte as [`Message::encode`] would,
/// without first copying the generated files into one buffer: each file's
/// content (most of the response) goes to `out` from where it is.
pub fn write_response(response: &CodeGeneratorResponse, out: &mut impl std::io::Write) -> std::io::Result<()> {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
    const FILE_TAG: u32 = 15;
    const CONTENT_TAG: u32 = 15;
    let head = CodeGeneratorResponse {
        error: response.error.clone(),
        supported_features: response.supported_features,
        file: Vec::new(),
    };
    let mut buf = head.encode_to_vec();
    for file in &response.file {
        // The fields before the content, the content by hand, the field after it (prost's order).
        let before =
            ResponseFile { name: file.name.clone(), insertion_point: file.insertion_point.clone(), ..Default::default() };
        let after = ResponseFile { generated_code_info: file.generated_code_info.clone(), ..Default::default() };
        let content_len =
            file.content.as_ref().map_or(0, |c| key_len(CONTENT_TAG) + encoded_len_varint(c.len() as u64) + c.len());
        encode_key(FILE_TAG, WireType::LengthDelimited, &mut buf);
        encode_varint((before.encoded_len() + content_len + after.encoded_len()) as u64, &mut buf);
        before.encode_raw(&mut buf);
        if let Some(content) = &file.content {
            encode_key(CONTENT_TAG, WireType::LengthDelimited, &mut buf);
            encode_varint(content.len() as u64, &mut buf);
            out.write_all(&buf)?;
            buf.clear();
            out.write_all(content.as_bytes())?;
        }
        after.encode_raw(&mut buf);
    }
    out.write_all(&buf)
}

fn generate_files(request: &[u8]) -> Result<(Vec<ResponseFile>, Vec<String>), Error> {
    let request = RawRequest::decode(request)
        .map_err(|err| Error::Decode { what: "the CodeGeneratorRequest", message: err.to_string() })?;
    let params = Params::parse(request.parameter.as_deref().unwrap_or_default())?;
    limits::check_raw_files(&request.proto_file)?;
    let pool = decode_pool(&RawFileSet { file: request.proto_file }.encode_to_vec())?;
    let (model, warnings) = model::build(&pool, &request.file_to_generate)?;
    // The model holds all the emitters read: the descriptors go before the output is written.
    drop(pool);
    let files = emit(&model, &params)?;
    let files = match params.lang {
        // On the protoc path, Rust goes where protoc-gen-prost puts its files.
        Lang::Rust => params.layout.place(files),
        Lang::TypeScript | Lang::Python => files
            .into_iter()
            .map(|(name, content)| ResponseFile { name: Some(name), content: Some(content), ..Default::default() })
            .collect(),
    };
    Ok((files, warnings))
}

/// Decodes an encoded `FileDescriptorSet` into a pool, with every option.
/// prost-reflect can panic on some crafted descriptors: that becomes a
/// [`Error::Decode`] rather than a crash.
pub fn decode_pool(descriptor_set: &[u8]) -> Result<DescriptorPool, Error> {
    let what = "the proto files";
    match std::panic::catch_unwind(|| DescriptorPool::decode(descriptor_set)) {
        Ok(Ok(pool)) => Ok(pool),
        Ok(Err(err)) => Err(Error::Decode { what, message: err.to_string() }),
        Err(panic) => Err(Error::Decode {
            what,
            message: format!("malformed descriptors (the descriptor reader failed: {})", error::panic_message(&*panic)),
        }),
    }
}

/// Generates from a descriptor pool (decoded with options intact) for the
/// given files: the shared path of the plugin and of [`build`].
pub fn generate_from_pool(pool: &DescriptorPool, files_to_generate: &[String], params: &Params) -> Result<Generated, Error> {
    let (model, warnings) = model::build(pool, files_to_generate)?;
    Ok((emit(&model, params)?, warnings))
}

/// The files of the language `params` asks for.
fn emit(model: &model::Model, params: &Params) -> Result<Vec<(String, String)>, Error> {
    Ok(match params.lang {
        Lang::Rust => rust::generate(&model.files, &params.rust),
        Lang::TypeScript => typescript::generate(&model.files).map_err(Error::Emit)?,
        Lang::Python => python::generate(&model.files).map_err(Error::Emit)?,
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::GeneratedCodeInfo;
    use prost_types::compiler::CodeGeneratorResponse;
    use prost_types::compiler::code_generator_response::File;

    #[test]
    fn write_response_writes_what_prost_encodes() {
        let file = |name: &str, content: Option<&str>| File {
            name: Some(name.into()),
            content: content.map(Into::into),
            ..Default::default()
        };
        let with_everything = File {
            insertion_point: Some("here".into()),
            generated_code_info: Some(GeneratedCodeInfo::default()),
            ..file("c.rs", Some(&"x".repeat(300)))
        };
        for response in [
            CodeGeneratorResponse::default(),
            CodeGeneratorResponse { error: Some("bad".into()), supported_features: Some(1), file: Vec::new() },
            CodeGeneratorResponse {
                error: None,
                supported_features: Some(1),
                file: vec![file("a.rs", Some("fn a() {}\n")), file("b.rs", None), with_everything],
            },
        ] {
            let mut written = Vec::new();
            super::write_response(&response, &mut written).expect("writing to a Vec");
            assert_eq!(written, response.encode_to_vec(), "{response:?}");
        }
    }
}
