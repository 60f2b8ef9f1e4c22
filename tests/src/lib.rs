//! Generated code for the shared corpus and the project's protos, and a
//! harness that runs a real `nats-server` per test.

pub use nats_micro_test_support::{codegen, harness, shared, typescript};

macro_rules! include_package {
    ($group:literal, $file:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $group, "/", $file));
    };
}

/// `../shared/corpus/anchor-examples`, written for the Go plugin (only when
/// the corpus is beside the repository).
#[cfg(shared_corpus)]
pub mod corpus {
    pub mod common {
        pub mod location {
            pub mod v1 {
                include_package!("corpus", "common.location.v1.rs");
            }
        }
        pub mod metadata {
            pub mod v1 {
                include_package!("corpus", "common.metadata.v1.rs");
            }
        }
        pub mod types {
            pub mod v1 {
                include_package!("corpus", "common.types.v1.rs");
            }
        }
    }
    pub mod demo {
        pub mod v1 {
            include_package!("corpus", "demo.v1.rs");
        }
    }
    pub mod example {
        pub mod v1 {
            include_package!("corpus", "example.v1.rs");
        }
    }
    pub mod kvstore_demo {
        pub mod v1 {
            include_package!("corpus", "kvstore_demo.v1.rs");
        }
    }
    pub mod order {
        pub mod v1 {
            include_package!("corpus", "order.v1.rs");
        }
        pub mod v2 {
            include_package!("corpus", "order.v2.rs");
        }
    }
    pub mod product {
        pub mod v1 {
            include_package!("corpus", "product.v1.rs");
        }
    }
    pub mod streaming {
        pub mod v1 {
            include_package!("corpus", "streaming.v1.rs");
        }
    }
    pub mod user {
        pub mod v1 {
            include_package!("corpus", "user.v1.rs");
        }
    }
}

/// The project's protos in `proto/`.
pub mod project {
    pub mod order {
        pub mod v1 {
            include_package!("project", "order.v1.rs");
        }
    }
    pub mod product {
        pub mod v1 {
            include_package!("project", "product.v1.rs");
        }
    }
    pub mod streams {
        pub mod v1 {
            include_package!("project", "streams.v1.rs");
        }
    }
    pub mod chaos {
        pub mod v1 {
            include_package!("project", "chaos.v1.rs");
        }
    }
    pub mod store {
        pub mod v1 {
            include_package!("project", "store.v1.rs");
        }
    }
    pub mod details {
        pub mod v1 {
            include_package!("project", "details.v1.rs");
        }
    }
    pub mod trace {
        pub mod v1 {
            include_package!("project", "trace.v1.rs");
        }
    }
    pub mod jsondemo {
        pub mod v1 {
            include_package!("project", "jsondemo.v1.rs");
        }
    }
    pub mod edge {
        pub mod nested {
            pub mod deep {
                pub mod v1 {
                    include_package!("project", "edge.nested.deep.v1.rs");
                }
            }
        }
    }
}

/// The Rust StreamService of `proto/streams/v1`, served by the stream tests
/// and by `cargo run -p nats-micro-tests --bin streams_server`.
pub mod streams;

/// The Rust ChaosService of `proto/chaos/v1`, served by the resilience tests
/// and by `cargo run -p nats-micro-tests --bin chaos_server`.
pub mod chaos;

/// The Rust ExplainService and ExplainOpenService of `proto/details/v1`
/// (typed error details), served by the details tests and by `cargo run -p
/// nats-micro-tests --bin details_server`.
pub mod details;

/// The Rust ProfileService of `proto/store/v1` (persistence and chunked
/// transfer, PROTOCOL §12), served by the store tests and by `cargo run -p
/// nats-micro-tests --bin store_server`.
pub mod store;

/// The programs of every language the cross-language tests run.
pub mod peers;

/// The Rust TraceService of `proto/trace/v1` and the in-memory span
/// recording the observability tests and `trace_server` share.
pub mod trace;
