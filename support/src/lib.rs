//! What the tests, the examples and the benchmarks share: a real
//! `nats-server` on a free loopback port ([`harness`]), and TypeScript or
//! Python generated for some protos ([`codegen`], [`typescript`]).
//!
//! It reads nothing outside the repository except, when they are there, the
//! corpus and schemas beside it ([`shared`]).

pub mod codegen;
pub mod harness;
pub mod shared;
pub mod typescript;
