//! End-to-end tests: generated Rust services and clients, independent ADR-32
//! peers, on a real nats-server started per test.

mod e2e {
    pub mod support;

    mod details;
    mod discovery;
    mod errors;
    mod faults;
    mod hardening;
    mod interceptors;
    mod json;
    mod peers;
    mod retries;
    mod streams;
}
