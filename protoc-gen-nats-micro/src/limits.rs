//! Size bounds on names, checked on the raw descriptors before they are
//! linked: a crafted request with a 300 KB package name must fail at once
//! rather than make the descriptor pool and every emitter chew on it.

use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto};

use crate::error::{Error, Problem, Problems};

/// Longest identifier (one package token, a message, field, service or
/// method name) in bytes. Generous for any real proto; every target
/// language copes with it.
pub const MAX_NAME_LEN: usize = 256;
/// Longest package name in bytes.
pub const MAX_PACKAGE_LEN: usize = 1024;
/// Longest file name in bytes.
pub const MAX_FILE_NAME_LEN: usize = 4096;

/// `name` cut to a readable length for an error message.
pub fn shorten(name: &str) -> String {
    const KEEP: usize = 48;
    if name.len() <= KEEP {
        return name.to_owned();
    }
    let end = (0..=KEEP).rev().find(|i| name.is_char_boundary(*i)).unwrap_or(0);
    format!("{}… ({} bytes)", &name[..end], name.len())
}

/// Checks every name of every file of a request against the bounds.
pub fn check_raw_files(files: &[Vec<u8>]) -> Result<(), Error> {
    let mut problems = Vec::new();
    for bytes in files {
        let file = FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|err| Error::Decode { what: "a FileDescriptorProto", message: err.to_string() })?;
        check_file(&file, &mut problems);
    }
    if problems.is_empty() { Ok(()) } else { Err(Problems(problems).into()) }
}

fn check_file(file: &FileDescriptorProto, problems: &mut Vec<Problem>) {
    let file_name = shorten(file.name());
    let mut too_long = |element: &str, what: &str, len: usize, max: usize| {
        problems.push(Problem {
            file: file_name.clone(),
            element: shorten(element),
            option: what.to_owned(),
            message: format!("is {len} bytes long; at most {max} are allowed"),
        });
    };
    if file.name().len() > MAX_FILE_NAME_LEN {
        too_long("(file)", "file name", file.name().len(), MAX_FILE_NAME_LEN);
    }
    let package = file.package();
    if package.len() > MAX_PACKAGE_LEN {
        too_long(package, "package", package.len(), MAX_PACKAGE_LEN);
        // Every full name below would repeat the package: stop here.
        return;
    }
    let mut names: Vec<&str> = package.split('.').collect();
    for message in &file.message_type {
        collect_message(message, &mut names);
    }
    file.enum_type.iter().for_each(|e| collect_enum(e, &mut names));
    for service in &file.service {
        names.push(service.name());
        names.extend(service.method.iter().map(|m| m.name()));
    }
    for name in names.into_iter().filter(|n| n.len() > MAX_NAME_LEN) {
        too_long(name, "name", name.len(), MAX_NAME_LEN);
    }
}

fn collect_message<'a>(message: &'a DescriptorProto, names: &mut Vec<&'a str>) {
    names.push(message.name());
    names.extend(message.field.iter().map(|f| f.name()));
    names.extend(message.oneof_decl.iter().map(|o| o.name()));
    message.enum_type.iter().for_each(|e| collect_enum(e, names));
    for nested in &message.nested_type {
        collect_message(nested, names);
    }
}

fn collect_enum<'a>(e: &'a EnumDescriptorProto, names: &mut Vec<&'a str>) {
    names.push(e.name());
    names.extend(e.value.iter().map(|v| v.name()));
}
