//! Generation-time validation: every rule fails with a message naming the
//! file, the service or method, and the option; bad requests and parameters
//! are errors in the response, never panics.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{
    SCRATCH_PROTO, assert_contains_all, expect_error, generate, generate_scratch, output_files, project_includes, request,
    service_with_method_options, service_with_options,
};
use protoc_gen_nats_micro::Output;

const SERVICE: &str = "bad.v1.BadService";
const METHOD: &str = "bad.v1.BadService.Get";

/// A proto that is fine: the valid counterpart of every rule below.
const GOOD: &str = r#"
service BadService {
  option (natsmicro.service) = {
    name: "good-service_1" version: "1.2.3-rc.1+build.5" subject_prefix: "api.v1"
    error_codes: ["ORDER_EXPIRED", "HTTP_2_FAIL", "DEADLINE_EXCEEDED"] timeout: {seconds: 2}
  };
  rpc Get(Req) returns (Resp) {
    option (natsmicro.endpoint) = { timeout: {nanos: 5} pending_msg_limit: 10 };
    option (natsmicro.kv_store) = { bucket: "good_bucket-1" key_template: "user.{id}" max_history: 64 };
  }
}
"#;

/// Asserts the scratch proto with `body` is rejected, with one line of the
/// error naming the file, `element`, `option` and `message`.
#[track_caller]
fn assert_rejected(body: &str, element: &str, option: &str, message: &str) {
    assert_problem(body, element, &format!("option {option}"), message);
}

/// Asserts the scratch proto with `body` is rejected, with one line of the
/// error reading `file: element: aspect: ...message...`.
#[track_caller]
fn assert_problem(body: &str, element: &str, aspect: &str, message: &str) {
    let output = generate_scratch(body);
    let error = expect_error(&output);
    let prefix = format!("{SCRATCH_PROTO}: {element}: {aspect}: ");
    let needles = [prefix.as_str(), message];
    assert!(
        error.lines().any(|line| needles.iter().all(|n| line.contains(n))),
        "no line of the error names all of {needles:?}:\n{error}"
    );
}

#[track_caller]
fn assert_service_option_rejected(options: &str, option: &str, message: &str) {
    assert_rejected(&service_with_options(options), SERVICE, option, message);
}

#[track_caller]
fn assert_method_option_rejected(method_options: &str, option: &str, message: &str) {
    assert_rejected(&service_with_method_options(method_options), METHOD, option, message);
}

/// Runs the library on arbitrary bytes, failing (rather than aborting the
/// test binary's other checks) if it panics.
fn generate_bytes(bytes: &[u8]) -> Output {
    catch_unwind(AssertUnwindSafe(|| protoc_gen_nats_micro::generate(bytes)))
        .unwrap_or_else(|_| panic!("generate panicked on a {}-byte request", bytes.len()))
}

/// The library on `order/v1/order.proto` with a plugin parameter.
fn generate_order_with(parameter: &str) -> Output {
    generate(&project_includes(), &["order/v1/order.proto"], Some(parameter))
}

#[test]
fn good_proto_generates() {
    let files = output_files(&generate_scratch(GOOD));
    let code = files.get("bad.v1.nats_micro.rs").unwrap_or_else(|| panic!("output: {:?}", files.keys()));
    assert_contains_all(code, &["\"good-service_1\"", "\"1.2.3-rc.1+build.5\"", "\"api.v1\"", "OrderExpired", "Http2Fail"]);
}

#[test]
fn service_name_charset() {
    assert_service_option_rejected(r#"name: "bad name!""#, "(natsmicro.service).name", "\"bad name!\" must match [A-Za-z0-9_-]+");
}

#[test]
fn version_must_be_semver() {
    assert_service_option_rejected(r#"version: "1.0""#, "(natsmicro.service).version", "\"1.0\" is not a SemVer version");
}

#[test]
fn subject_prefix_empty_token() {
    assert_service_option_rejected(r#"subject_prefix: "api..v1""#, "(natsmicro.service).subject_prefix", "empty token");
}

#[test]
fn subject_prefix_trailing_dot() {
    assert_service_option_rejected(r#"subject_prefix: "api.v1.""#, "(natsmicro.service).subject_prefix", "empty token");
}

#[test]
fn subject_prefix_space() {
    assert_service_option_rejected(r#"subject_prefix: "api v1""#, "(natsmicro.service).subject_prefix", "whitespace");
}

#[test]
fn subject_prefix_star_wildcard() {
    assert_service_option_rejected(r#"subject_prefix: "api.*.v1""#, "(natsmicro.service).subject_prefix", "wildcard");
}

#[test]
fn subject_prefix_tail_wildcard() {
    assert_service_option_rejected(r#"subject_prefix: "api.>""#, "(natsmicro.service).subject_prefix", "wildcard");
}

#[test]
fn error_code_not_upper_snake() {
    assert_service_option_rejected(
        r#"error_codes: ["orderExpired"]"#,
        "(natsmicro.service).error_codes",
        "\"orderExpired\" is not an UPPER_SNAKE",
    );
}

#[test]
fn error_code_declared_twice() {
    assert_service_option_rejected(
        r#"error_codes: ["X_Y", "X_Y"]"#,
        "(natsmicro.service).error_codes",
        "\"X_Y\" is declared twice",
    );
}

#[test]
fn error_code_repeats_builtin() {
    assert_service_option_rejected(
        r#"error_codes: ["NOT_FOUND"]"#,
        "(natsmicro.service).error_codes",
        "\"NOT_FOUND\" repeats a built-in",
    );
}

#[test]
fn negative_service_timeout() {
    assert_service_option_rejected("timeout: {seconds: -1}", "(natsmicro.service).timeout", "must not be negative");
}

#[test]
fn negative_endpoint_timeout() {
    assert_method_option_rejected(
        "option (natsmicro.endpoint) = { timeout: {seconds: -3} };",
        "(natsmicro.endpoint).timeout",
        "must not be negative",
    );
}

#[test]
fn negative_pending_msg_limit() {
    assert_method_option_rejected(
        "option (natsmicro.endpoint) = { pending_msg_limit: -1 };",
        "(natsmicro.endpoint).pending_msg_limit",
        "must not be negative",
    );
}

#[test]
fn kv_store_placeholder_not_a_request_field() {
    assert_method_option_rejected(
        r#"option (natsmicro.kv_store) = { bucket: "users" key_template: "user.{nope}" };"#,
        "(natsmicro.kv_store).key_template",
        "placeholder {nope}: \"nope\" is not a field of bad.v1.Req (fields: id)",
    );
}

#[test]
fn kv_store_bad_bucket() {
    assert_method_option_rejected(
        r#"option (natsmicro.kv_store) = { bucket: "user profiles" key_template: "user.{id}" };"#,
        "(natsmicro.kv_store).bucket",
        "\"user profiles\" must match",
    );
}

/// A service with `body` around messages for the persistence rules:
/// `Deep { Inner inner; repeated string tags; bytes raw; double ratio; Kind kind; optional string label; oneof pick { string a; } }`.
fn store_service(rpcs: &str) -> String {
    format!(
        "message Inner {{ string id = 1; Inner next = 2; }}\n\
         enum Kind {{ KIND_UNSPECIFIED = 0; KIND_A = 1; }}\n\
         message Deep {{ Inner inner = 1; repeated string tags = 2; bytes raw = 3; double ratio = 4; Kind kind = 5;\n\
           optional string label = 6; oneof pick {{ string a = 7; }} map<string, string> attrs = 8; }}\n\
         message Chunk {{ bytes data = 1; }}\n\
         message ChunkAndName {{ bytes data = 1; string name = 2; }}\n\
         message Text {{ string data = 1; }}\n\
         service BadService {{\n{rpcs}\n}}"
    )
}

#[track_caller]
fn assert_generates(body: &str, why: &str) {
    let output = generate_scratch(body);
    assert!(output.response.error.is_none(), "{why}: {:?}", output.response.error);
}

#[track_caller]
fn assert_store_rejected(rpc: &str, option: &str, message: &str) {
    assert_rejected(&store_service(rpc), METHOD, option, message);
}

#[test]
fn key_template_rules() {
    let kv = |template: &str| {
        format!(
            r#"rpc Get(Deep) returns (Resp) {{ option (natsmicro.kv_store) = {{ bucket: "b" key_template: "{template}" }}; }}"#
        )
    };
    let option = "(natsmicro.kv_store).key_template";
    assert_store_rejected(&kv("k.{tags}"), option, "placeholder {tags}: \"tags\" is repeated or a map");
    assert_store_rejected(&kv("k.{attrs}"), option, "placeholder {attrs}: \"attrs\" is repeated or a map");
    assert_store_rejected(&kv("k.{raw}"), option, "\"raw\" is bytes");
    assert_store_rejected(&kv("k.{ratio}"), option, "\"ratio\" is a float");
    assert_store_rejected(&kv("k.{inner}"), option, "\"inner\" is a message; name one of its fields");
    assert_store_rejected(&kv("k.{a}"), option, "\"a\" is a member of a oneof");
    assert_store_rejected(&kv("k.{kind.x}"), option, "\"kind\" is not a message");
    assert_store_rejected(&kv("k.{inner.nope}"), option, "\"nope\" is not a field of bad.v1.Inner");
    assert_store_rejected(&kv("k.{}"), option, "placeholder {}: is empty");
    assert_store_rejected(&kv("k.{inner.id"), option, "has an unclosed `{`");
    assert_store_rejected(&kv("k}.{label}"), option, "has a `}` without `{`");
    assert_store_rejected(&kv("user {label}"), option, "' ' cannot be in a key");
    assert_store_rejected(&kv("user..{label}"), option, "empty token");
    assert_store_rejected(&kv(".{label}"), option, "empty token");
    assert_store_rejected(&kv(""), "(natsmicro.kv_store).key_template", "must not be empty");
    // Nested paths, enums and optional fields are fine; an object name may hold spaces.
    let good = store_service(
        r#"rpc Get(Deep) returns (Resp) {
             option (natsmicro.kv_store) = { bucket: "b" key_template: "k.{inner.next.id}.{kind}.{label}" };
             option (natsmicro.object_store) = { bucket: "o" key_template: "report {inner.id} (final).pdf" };
           }"#,
    );
    assert_generates(&good, "nested, enum and optional placeholders are valid");
}

#[test]
fn kv_store_settings_rules() {
    let kv = |settings: &str| {
        format!(
            r#"rpc Get(Req) returns (Resp) {{ option (natsmicro.kv_store) = {{ bucket: "b" key_template: "k.{{id}}" {settings} }}; }}"#
        )
    };
    assert_store_rejected(&kv("max_history: 65"), "(natsmicro.kv_store).max_history", "must be at most 64");
    assert_store_rejected(&kv("key_ttl: {seconds: 1}"), "(natsmicro.kv_store).key_ttl", "needs limit_marker_ttl");
    assert_store_rejected(&kv("purge_ttl: {seconds: 1}"), "(natsmicro.kv_store).purge_ttl", "needs limit_marker_ttl");
    let ok = store_service(&kv("key_ttl: {seconds: 1} purge_ttl: {seconds: 1} limit_marker_ttl: {seconds: 1}"));
    assert_generates(&ok, "per-key TTLs with limit markers are valid");
}

#[test]
fn shared_bucket_with_other_settings() {
    let body = store_service(
        r#"rpc Get(Req) returns (Resp) { option (natsmicro.kv_store) = { bucket: "b" key_template: "a.{id}" max_history: 2 }; }
           rpc Put(Req) returns (Resp) { option (natsmicro.kv_store) = { bucket: "b" key_template: "b.{id}" max_history: 3 }; }
           rpc Same(Req) returns (Resp) { option (natsmicro.kv_store) = { bucket: "b" key_template: "c.{id}" max_history: 2 }; }"#,
    );
    assert_rejected(
        &body,
        "bad.v1.BadService.Put",
        "(natsmicro.kv_store).bucket",
        "\"b\" is also declared by bad.v1.BadService.Get",
    );
    let output = generate_scratch(&body);
    assert!(!expect_error(&output).contains("BadService.Same"), "same settings are fine");
}

#[test]
fn chunked_io_rules() {
    let option = |size: &str| format!(r#"option (natsmicro.chunked_io) = {{ chunk_field: "data" {size} }};"#);
    let rpc = |shape: &str, size: &str| format!("rpc Get{shape} {{ {} }}", option(size));
    let opt = "(natsmicro.chunked_io)";
    assert_store_rejected(
        &rpc("(Chunk) returns (Resp)", ""),
        opt,
        "only valid on a client-streaming (upload) or server-streaming",
    );
    assert_store_rejected(&rpc("(stream Chunk) returns (stream Chunk)", ""), opt, "not supported on a bidirectional RPC");
    let field = "(natsmicro.chunked_io).chunk_field";
    assert_store_rejected(&rpc("(stream ChunkAndName) returns (Resp)", ""), field, "must have exactly one field");
    assert_store_rejected(&rpc("(stream Text) returns (Resp)", ""), field, "the singular bytes field \"data\"");
    assert_store_rejected(&rpc("(Req) returns (stream Text)", ""), field, "bad.v1.Text must have exactly one field");
    let size = "(natsmicro.chunked_io).default_chunk_size";
    assert_store_rejected(&rpc("(stream Chunk) returns (Resp)", "default_chunk_size: -1"), size, "must not be negative");
    assert_store_rejected(&rpc("(Req) returns (stream Chunk)", "default_chunk_size: 67108865"), size, "above 64 MiB");
    let good = store_service(&format!(
        "{}\n{}",
        rpc("(stream Chunk) returns (Resp)", "default_chunk_size: 67108864"),
        rpc("Down(Req) returns (stream Chunk)", "").replacen("rpc GetDown", "rpc Down", 1)
    ));
    assert_generates(&good, "upload and download shapes are valid");
}

#[test]
fn two_methods_on_one_endpoint() {
    let body = "service BadService {\n  rpc GetFoo(Req) returns (Resp);\n  rpc get_foo(Req) returns (Resp);\n}";
    assert_problem(body, "bad.v1.BadService.get_foo", "name", "methods GetFoo and get_foo both map to endpoint \"get_foo\"");
}

#[test]
fn every_problem_is_reported_together() {
    let output = generate_scratch(&service_with_options(r#"name: "bad name!" version: "1.0""#));
    let error = expect_error(&output);
    assert_contains_all(error, &["(natsmicro.service).name", "(natsmicro.service).version"]);
    assert_eq!(error.lines().count(), 2, "one line per problem:\n{error}");
}

#[test]
fn garbage_request_is_an_error() {
    let output = generate_bytes(b"\xff\xff\xff");
    assert_contains_all(expect_error(&output), &["CodeGeneratorRequest"]);
}

#[test]
fn truncated_requests_never_panic() {
    let full = request(&project_includes(), &["order/v1/order.proto"], None);
    for len in (0..full.len()).step_by(61) {
        generate_bytes(&full[..len]);
    }
}

#[test]
fn empty_request_generates_nothing() {
    let output = generate_bytes(&[]);
    assert_eq!(output.response.error, None);
    assert!(output.response.file.is_empty(), "{:?}", output.response.file);
}

#[test]
fn file_to_generate_missing_from_request() {
    // A request naming a file it does not carry (hand-built: a single field 1 string).
    let output = generate_bytes(b"\x0a\x0bmissing.pro");
    assert_contains_all(expect_error(&output), &["missing.pro", "not among the request's files"]);
}

#[test]
fn unknown_parameter_is_named() {
    assert_contains_all(expect_error(&generate_order_with("colour=blue")), &["colour"]);
}

#[test]
fn unknown_lang_is_named() {
    assert_contains_all(expect_error(&generate_order_with("lang=cobol")), &["cobol", "lang"]);
}

#[test]
fn language_alias_selects_rust() {
    let files = output_files(&generate_order_with("language=rust"));
    assert_eq!(files.keys().collect::<Vec<_>>(), ["order.v1.nats_micro.rs"]);
    assert_eq!(files, output_files(&generate_order_with(" lang = rs ,")), "aliases and spacing give the same output");
}

#[test]
fn supports_proto3_optional_on_success_and_failure() {
    for output in [generate_order_with(""), generate_order_with("colour=blue"), generate_bytes(b"\xff")] {
        assert_eq!(output.response.supported_features.unwrap_or(0) & 1, 1, "FEATURE_PROTO3_OPTIONAL missing");
    }
}

/// Methods whose names collide after case conversion or keyword escaping in
/// some language (Rust snake_case, Python `_` suffix, TS camelCase) are
/// rejected naming both.
#[test]
fn methods_colliding_after_conversion() {
    for (a, b) in [("GetX", "Get__X"), ("New", "New_"), ("Match", "Match_"), ("ListItems", "listItems")] {
        let body = format!("service BadService {{\n  rpc {a}(Req) returns (Resp);\n  rpc {b}(Req) returns (Resp);\n}}");
        let element = format!("bad.v1.BadService.{b}");
        let output = generate_scratch(&body);
        let error = expect_error(&output);
        assert!(
            error
                .lines()
                .any(|l| l.starts_with(&format!("{SCRATCH_PROTO}: {element}: name: ")) && l.contains(a) && l.contains(b)),
            "{a} + {b}:\n{error}"
        );
    }
}

/// Custom codes that collide with each other, with a canonical code or with
/// a name the generators reserve, after case conversion.
#[test]
fn codes_colliding_after_conversion() {
    let cases = [
        (r#"error_codes: ["A_1", "A1"]"#, "\"A1\" and \"A_1\" collide"),
        (r#"error_codes: ["UNRECOGNIZED"]"#, "\"UNRECOGNIZED\" is reserved"),
        (r#"error_codes: ["UNRECOGNIZED_CODE"]"#, "\"UNRECOGNIZED_CODE\" is reserved"),
        (r#"error_codes: ["NOTFOUND"]"#, "collides with the canonical code \"NOT_FOUND\""),
        (r#"error_codes: ["DEADLINEEXCEEDED"]"#, "collides with the canonical code \"DEADLINE_EXCEEDED\""),
    ];
    for (options, message) in cases {
        assert_service_option_rejected(options, "(natsmicro.service).error_codes", message);
    }
}

/// Two services of one file whose generated names (modules, classes)
/// would collide.
#[test]
fn services_colliding_in_one_file() {
    let body = "service FooBar { rpc Get(Req) returns (Resp); }\nservice Foo_Bar { rpc Get(Req) returns (Resp); }";
    assert_problem(body, "bad.v1.Foo_Bar", "name", "services FooBar and Foo_Bar of one file collide");
}

/// Service and method names without a letter become empty or invalid
/// identifiers after case conversion: rejected, not a panic.
#[test]
fn names_without_a_letter() {
    for name in ["_", "__", "_1"] {
        let body = format!("service {name} {{ rpc Get(Req) returns (Resp); }}");
        assert_problem(&body, &format!("bad.v1.{name}"), "name", "has no letter");
        let body = format!("service S {{ rpc {name}(Req) returns (Resp); }}");
        assert_problem(&body, &format!("bad.v1.S.{name}"), "name", "has no letter");
    }
}

/// A 300 KB package name is refused at once (it used to take 19.5 s),
/// naming the package by its start and length only.
#[test]
fn over_long_package_name_is_refused() {
    let package = vec!["a"; 150_000].join(".");
    let request = common::request_from_protos(vec![common::simple_proto("p.proto", &package, "S", &["Get"])], &["p.proto"], None);
    let output = generate_bytes(&request);
    let error = expect_error(&output);
    assert_contains_all(error, &["p.proto: a.a.a", "package: is 299999 bytes long; at most 1024 are allowed"]);
    assert!(error.len() < 500, "the error does not repeat the name: {} bytes", error.len());
}

/// Crafted names that protoc would refuse: validated once in the model, so
/// no language gets an empty or wildcard subject token or broken code.
#[test]
fn crafted_names_are_refused() {
    let cases: [(&str, &str, &str, &str); 6] = [
        ("p.v1", "S", "Get*", "p.v1.S.Get*: name: \"Get*\" is not an identifier"),
        ("p.v1", "S>", "Get", "p.v1.S>: name: \"S>\" is not an identifier"),
        ("p..v1", "S", "Get", "p..v1: package: token \"\" of \"p..v1\" is not an identifier"),
        ("p.v1", "Sé", "Get", "p.v1.Sé: name: \"Sé\" is not an identifier"),
        ("p.v1", "S", "Get\u{2028}", "name: \"Get\\u{2028}\" is not an identifier"),
        ("p v1", "S", "Get", "package: token \"p v1\""),
    ];
    for (package, service, method, message) in cases {
        let request =
            common::request_from_protos(vec![common::simple_proto("p.proto", package, service, &[method])], &["p.proto"], None);
        let output = generate_bytes(&request);
        assert_contains_all(expect_error(&output), &["p.proto: ", message]);
    }
}
