//! The echo proto generated twice (the stream proto once, for NATS): once by protoc-gen-nats-micro (with
//! prost messages) and once by tonic, for the gRPC contender. Both map
//! `bytes` fields to `bytes::Bytes`, as the raw contenders send them.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let proto = "../proto/bench/v1/echo.proto";
    let stream_proto = "../proto/bench/v1/stream.proto";
    // `bench --chunked`: the persistence scenario's chunked Upload and Download.
    let store_proto = "../proto/store/v1/store.proto";
    let includes = ["../proto"];
    for dir in ["nats", "tonic"] {
        std::fs::create_dir_all(out.join(dir))?;
    }
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    protoc_gen_nats_micro::build::configure().out_dir(out.join("nats")).compile_with_config(
        config,
        &[proto, stream_proto, store_proto],
        &includes,
    )?;
    let fds = protox::compile([proto], includes).map_err(|err| std::io::Error::other(format!("{err:?}")))?;
    tonic_prost_build::configure().bytes(".").out_dir(out.join("tonic")).compile_fds(fds)?;
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-changed={stream_proto}");
    println!("cargo:rerun-if-changed={store_proto}");
    Ok(())
}
