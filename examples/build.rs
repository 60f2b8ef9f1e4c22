//! Generates messages (prost) and services (protoc-gen-nats-micro) for the
//! example protos, into OUT_DIR.

fn main() -> std::io::Result<()> {
    protoc_gen_nats_micro::build::configure().compile_protos(&["../proto/order/v1/order.proto"], &["../proto"])
}
