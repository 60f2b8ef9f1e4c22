//! The typed option structs (`protoc_gen_nats_micro::options`) are pinned to
//! the shipped `natsmicro/options.proto`: every field name, number and type.
//! A field the struct lacks, misnumbers or mistypes would otherwise read as
//! a silent default.

mod common;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor, Value};
use protoc_gen_nats_micro::options::{
    ChunkedIoOptions, EndpointOptions, KvPersistFailurePolicy, KvStoreOptions, KvWriteMode, ObjectStoreOptions, ServiceOptions,
    StreamOptions,
};

fn pool() -> DescriptorPool {
    let set = common::try_descriptor_set(&common::project_includes(), &["natsmicro/options.proto"])
        .unwrap_or_else(|err| panic!("compiling options.proto: {err}"));
    DescriptorPool::decode(set.as_slice()).expect("protox output decodes")
}

/// A distinct, non-default value for every field of `descriptor`.
fn filled(descriptor: &MessageDescriptor) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    for field in descriptor.fields() {
        let n = field.number();
        let single = match field.kind() {
            Kind::String => Value::String(format!("s{n}")),
            Kind::Bool => Value::Bool(true),
            Kind::Int32 => Value::I32(i32::try_from(n).expect("small") + 100),
            Kind::Enum(e) => Value::EnumNumber(e.values().map(|v| v.number()).max().expect("values")),
            Kind::Message(m) if m.full_name() == "google.protobuf.Duration" => {
                let mut d = DynamicMessage::new(m);
                d.set_field_by_name("seconds", Value::I64(i64::from(n)));
                d.set_field_by_name("nanos", Value::I32(7));
                Value::Message(d)
            }
            Kind::Message(m) if m.is_map_entry() => {
                let entry = [(MapKey::String(format!("k{n}")), Value::String(format!("v{n}")))];
                message.set_field(&field, Value::Map(entry.into_iter().collect()));
                continue;
            }
            other => panic!("{}: no test value for kind {other:?}", field.full_name()),
        };
        let value = if field.is_list() { Value::List(vec![single.clone(), single]) } else { single };
        message.set_field(&field, value);
    }
    message
}

/// Field names as `Debug` prints them, in declaration order.
fn debug_field_names(debug: &str) -> Vec<String> {
    let body = debug.split_once('{').map(|(_, rest)| rest).unwrap_or_default();
    let mut names = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in body.chars() {
        match c {
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            ':' if depth == 0 && !current.trim().is_empty() => {
                names.push(current.trim().trim_start_matches(',').trim().to_owned());
                current.clear();
                continue;
            }
            ',' if depth == 0 => current.clear(),
            _ => {}
        }
        if depth == 0 && c != ',' {
            current.push(c);
        }
    }
    names
}

fn check<T: Message + Default + PartialEq + std::fmt::Debug>(pool: &DescriptorPool, name: &str) {
    let descriptor = pool.get_message_by_name(name).unwrap_or_else(|| panic!("{name} in options.proto"));
    let expected: Vec<String> = descriptor.fields().map(|f| f.name().to_owned()).collect();
    assert_eq!(debug_field_names(&format!("{:?}", T::default())), expected, "{name}: field names and order");
    let original = filled(&descriptor);
    let typed: T = original.transcode_to().unwrap_or_else(|err| panic!("{name}: transcode: {err}"));
    let back = DynamicMessage::decode(descriptor.clone(), typed.encode_to_vec().as_slice())
        .unwrap_or_else(|err| panic!("{name}: re-decoding the struct's encoding: {err}"));
    assert_eq!(back, original, "{name}: a field is missing, misnumbered or mistyped in the struct");
    assert!(back.unknown_fields().next().is_none(), "{name}: the struct has fields options.proto lacks");
}

#[test]
fn option_structs_match_options_proto() {
    let pool = pool();
    check::<ServiceOptions>(&pool, "natsmicro.ServiceOptions");
    check::<EndpointOptions>(&pool, "natsmicro.EndpointOptions");
    check::<KvStoreOptions>(&pool, "natsmicro.KVStoreOptions");
    check::<ObjectStoreOptions>(&pool, "natsmicro.ObjectStoreOptions");
    check::<StreamOptions>(&pool, "natsmicro.StreamOptions");
    check::<ChunkedIoOptions>(&pool, "natsmicro.ChunkedIOOptions");
}

#[test]
fn enum_names_match_options_proto() {
    let pool = pool();
    // Each proto value maps to the Rust variant of the same name (prefix
    // dropped, CamelCase), and every variant is in the proto.
    let camel = |name: &str, prefix: &str| -> String {
        let rest = name.strip_prefix(prefix).unwrap_or_else(|| panic!("{name} starts with {prefix}"));
        rest.split('_').map(|w| w[..1].to_owned() + &w[1..].to_lowercase()).collect()
    };
    let write_modes = pool.get_enum_by_name("natsmicro.KVWriteMode").expect("KVWriteMode");
    for value in write_modes.values() {
        let variant = KvWriteMode::try_from(value.number()).unwrap_or_else(|_| panic!("{} has no variant", value.name()));
        assert_eq!(format!("{variant:?}"), camel(value.name(), "KV_WRITE_MODE_"));
    }
    assert_eq!(write_modes.values().count(), 4);
    let policies = pool.get_enum_by_name("natsmicro.KVPersistFailurePolicy").expect("KVPersistFailurePolicy");
    for value in policies.values() {
        let variant =
            KvPersistFailurePolicy::try_from(value.number()).unwrap_or_else(|_| panic!("{} has no variant", value.name()));
        assert_eq!(format!("{variant:?}"), camel(value.name(), "KV_PERSIST_FAILURE_POLICY_"));
    }
    assert_eq!(policies.values().count(), 3);
}

#[test]
fn extension_numbers_match_options_proto() {
    let pool = pool();
    let numbers: Vec<(String, u32)> = ["service", "endpoint", "kv_store", "object_store", "stream", "chunked_io"]
        .iter()
        .map(|n| {
            let ext = pool.get_extension_by_name(&format!("natsmicro.{n}")).unwrap_or_else(|| panic!("natsmicro.{n}"));
            (ext.name().to_owned(), ext.number())
        })
        .collect();
    let expected = [
        ("service", 50001),
        ("endpoint", 50002),
        ("kv_store", 50003),
        ("object_store", 50004),
        ("stream", 50005),
        ("chunked_io", 50006),
    ];
    assert_eq!(numbers, expected.map(|(n, v)| (n.to_owned(), v)).to_vec());
}

#[test]
fn embedded_options_proto_is_the_shipped_file() {
    let shipped = std::fs::read_to_string(common::project_root().join("natsmicro/options.proto")).expect("read options.proto");
    assert_eq!(shipped, protoc_gen_nats_micro::OPTIONS_PROTO);
    assert!(shipped.contains("option go_package = \"github.com/franchb/protoc-gen-nats-micro/gen/nats/micro\";"));
}
