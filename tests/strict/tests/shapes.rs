//! The edge shapes compiled (the crate builds under `deny(warnings)`), and
//! what they generate is what the protos declare: distinct modules for
//! clashing service names of one package, keyword names escaped, and
//! hostile text carried through literals unchanged.

use nats_micro_strict::shapes::edge::shapes as s;

#[test]
fn clashing_service_names_of_one_package_get_distinct_modules() {
    let protos = [s::clash::foo_bar_nats::SERVICE.proto_name, s::clash::foo_bar_nats2::SERVICE.proto_name];
    assert_eq!(protos, ["edge.shapes.clash.FooBar", "edge.shapes.clash.foo_bar"]);
}

#[test]
fn keyword_names_are_escaped_and_keep_their_wire_names() {
    use s::r#type::self_::r#async as kw;
    let methods: Vec<&str> = kw::self_nats::ENDPOINTS.iter().map(|e| e.method.method).collect();
    assert_eq!(methods, ["type", "self", "async", "crate", "match"]);
    let err = kw::type_nats::TypeError::r#type("x");
    assert!(err.is_type() && !err.is_self());
    assert_eq!(err.code(), kw::type_nats::TypeErrorCode::Type);
    assert_eq!(kw::type_nats::TypeError::self_("y").code().as_str(), "SELF");
    assert_eq!(kw::type_nats::TypeErrorCode::ASYNC, "ASYNC");
}

#[test]
fn hostile_text_reaches_literals_unchanged() {
    let spec = s::text::text_nats::SERVICE;
    assert_eq!(spec.description, "says \"hi\" \\ with \u{2028} and \u{202e} and */");
    assert_eq!(spec.metadata, &[("k\u{2029}", "v\"\u{2066}")]);
}

#[test]
fn streaming_only_and_skipped_services() {
    let endpoints: Vec<&str> = s::streaming::ticker_nats::ENDPOINTS.iter().map(|e| e.method.endpoint).collect();
    assert_eq!(endpoints, ["watch", "upload", "chat"]);
    assert_eq!(s::skipped::shown_nats::SERVICE.proto_name, "edge.shapes.skipped.Shown");
}
