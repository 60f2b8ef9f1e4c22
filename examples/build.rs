//! Generates messages (prost) and services (protoc-gen-nats-micro) for the
//! example protos, into OUT_DIR.

// snippet: build
// build.rs
fn main() -> std::io::Result<()> {
    protoc_gen_nats_micro::build::configure().compile_protos(&["../proto/order/v1/order.proto"], &["../proto"])
}
// end snippet
