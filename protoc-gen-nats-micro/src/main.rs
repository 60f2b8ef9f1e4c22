//! `protoc-gen-nats-micro`: reads a `CodeGeneratorRequest` on stdin, writes
//! the `CodeGeneratorResponse` on stdout. `--help`, `--version` and
//! `--options-proto [DIR]` are for people, not for protoc.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use protoc_gen_nats_micro::params::PARAMETERS;
use protoc_gen_nats_micro::{OPTIONS_PROTO, OPTIONS_PROTO_PATH, VERSION};

/// Code generation allocates for every token it parses and prints; mimalloc
/// does that in about a quarter fewer instructions than the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A panic is caught by `generate` and reaches protoc as the response's
    // error; the default hook would also print `thread 'main' panicked` on
    // protoc's stderr, which reads like a crash.
    std::panic::set_hook(Box::new(|_| {}));
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return run_plugin();
    }
    match args[0].as_str() {
        "--help" | "-h" if args.len() == 1 => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        "--version" | "-V" if args.len() == 1 => {
            println!("protoc-gen-nats-micro {VERSION}");
            ExitCode::SUCCESS
        }
        "--options-proto" if args.len() <= 2 => write_options_proto(args.get(1).map_or(".", String::as_str)),
        _ => {
            eprintln!(
                "protoc-gen-nats-micro: unexpected argument {:?}; run it through protoc (--nats-micro_out=DIR), \
                 or see protoc-gen-nats-micro --help",
                args.join(" ")
            );
            ExitCode::from(2)
        }
    }
}

fn usage() -> String {
    let mut text = format!(
        "protoc-gen-nats-micro {VERSION}: typed NATS microservices (ADR-32) from .proto services\n\n\
         Usage (run by protoc, request on stdin, response on stdout):\n  \
         protoc --plugin=protoc-gen-nats-micro --nats-micro_out=DIR [--nats-micro_opt=KEY=VALUE,...] FILE.proto\n\n\
         Parameters (--nats-micro_opt, comma-separated):\n"
    );
    for (parameter, meaning) in PARAMETERS {
        text.push_str(&format!("  {parameter:<40} {meaning}\n"));
    }
    text.push_str(&format!(
        "\nFlags:\n  \
         --options-proto [DIR]  write DIR/{OPTIONS_PROTO_PATH} (default DIR: .), to put on protoc's -I path\n  \
         --version, -V          print the version\n  \
         --help, -h             print this help\n"
    ));
    text
}

fn write_options_proto(dir: &str) -> ExitCode {
    let path = Path::new(dir).join(OPTIONS_PROTO_PATH);
    let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, OPTIONS_PROTO));
    match written {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("protoc-gen-nats-micro: writing {}: {err}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn run_plugin() -> ExitCode {
    let mut request = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut request) {
        eprintln!("protoc-gen-nats-micro: reading stdin: {err}");
        return ExitCode::FAILURE;
    }
    let output = protoc_gen_nats_micro::generate(&request);
    drop(request);
    for warning in &output.warnings {
        eprintln!("protoc-gen-nats-micro: {warning}");
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = protoc_gen_nats_micro::write_response(&output.response, &mut stdout).and_then(|()| stdout.flush()) {
        eprintln!("protoc-gen-nats-micro: writing stdout: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
