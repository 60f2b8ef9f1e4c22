//! `protoc-gen-nats-micro`: reads a `CodeGeneratorRequest` on stdin, writes
//! the `CodeGeneratorResponse` on stdout.

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        if arg == "--version" || arg == "-V" {
            println!("protoc-gen-nats-micro {}", protoc_gen_nats_micro::VERSION);
            return ExitCode::SUCCESS;
        }
        eprintln!("protoc-gen-nats-micro: unexpected argument {arg:?}; run it through protoc (--nats-micro_out=DIR)");
        return ExitCode::from(2);
    }
    let mut request = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut request) {
        eprintln!("protoc-gen-nats-micro: reading stdin: {err}");
        return ExitCode::FAILURE;
    }
    let (response, warnings) = protoc_gen_nats_micro::generate_bytes(&request);
    for warning in warnings {
        eprintln!("protoc-gen-nats-micro: {warning}");
    }
    if let Err(err) = std::io::stdout().write_all(&response) {
        eprintln!("protoc-gen-nats-micro: writing stdout: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
