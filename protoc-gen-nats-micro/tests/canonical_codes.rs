//! The plugin's one canonical-code table (`model::CANONICAL_CODES`, in the
//! Go plugin's order) is pinned to the runtime's `Code` table: same names,
//! same numbers, nothing missing or extra.

use nats_micro_runtime::Code;
use protoc_gen_nats_micro::model::{BUILTIN_CODES, CANONICAL_CODES, EXTRA_CANONICAL_CODES};

#[test]
fn plugin_table_matches_the_runtime() {
    for entry in CANONICAL_CODES {
        let code = Code::from_wire(entry.name);
        assert!(code.is_canonical(), "{} is not canonical in the runtime", entry.name);
        assert_eq!(code.as_str(), entry.name);
        assert_eq!(code.number(), entry.number, "{}: number", entry.name);
        if let Some(number) = entry.number {
            assert_eq!(Code::from_wire(&number.to_string()), code, "{number} names {}", entry.name);
        }
    }
    let mut plugin: Vec<&str> = CANONICAL_CODES.iter().map(|c| c.name).collect();
    let mut runtime: Vec<&str> = Code::CANONICAL_NAMES.to_vec();
    plugin.sort_unstable();
    runtime.sort_unstable();
    assert_eq!(plugin, runtime, "the same sixteen canonical codes");
}

/// The Go plugin's order: its seven built-ins in its order first, then the
/// further canonical codes; the derived lists follow the table.
#[test]
fn table_is_in_the_go_plugins_order() {
    assert_eq!(
        BUILTIN_CODES,
        ["INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "UNAUTHENTICATED", "INTERNAL", "UNAVAILABLE"]
    );
    let names: Vec<&str> = CANONICAL_CODES.iter().map(|c| c.name).collect();
    assert_eq!(names, [&BUILTIN_CODES[..], &EXTRA_CANONICAL_CODES[..]].concat());
    assert!(CANONICAL_CODES[..7].iter().all(|c| c.number.is_some()) && CANONICAL_CODES[7..].iter().all(|c| c.number.is_none()));
}
