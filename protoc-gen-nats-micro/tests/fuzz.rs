//! A bounded fuzz test of the plugin entry, run with the normal suite:
//! real `CodeGeneratorRequest`s (the project's protos and, when present,
//! the shared corpus) mutated by bit flips, truncation, splicing and
//! hostile names (Unicode, U+2028/2029, bidi controls, NUL, wildcards,
//! keywords). `generate` must never panic (a caught panic shows up as an
//! "internal error" response) and every success must be Rust that parses.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};

/// Stop after this many cases or this much time, whichever comes first.
const MAX_CASES: usize = 6_000;
const TIME_BUDGET: Duration = Duration::from_secs(25);
/// Fewer cases than this means the test did not really run.
const MIN_CASES: usize = 300;

/// xorshift64*: deterministic, so a failure reproduces from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).expect("fits")).expect("fits")
    }
}

/// Names protoc would refuse or that stress every target language.
const HOSTILE_NAMES: &[&str] = &[
    "",
    "_",
    "__",
    "_1",
    "1a",
    "a.b",
    "a..b",
    ".",
    "*",
    ">",
    "a*",
    "a>b",
    "a b",
    "a\u{0}b",
    "a\nb",
    "a\rb",
    "\u{2028}",
    "x\u{2029}y",
    "\u{202E}evil",
    "a\u{2066}b",
    "é",
    "日本",
    "\u{a0}",
    "\"",
    "'",
    "\\",
    "`",
    "${x}",
    "*/",
    "/*",
    "#",
    "type",
    "self",
    "Self",
    "crate",
    "super",
    "fn",
    "match",
    "async",
    "await",
    "def",
    "class",
    "None",
    "True",
    "lambda",
    "import",
    "function",
    "delete",
    "new",
    "constructor",
    "__proto__",
    "prototype",
    "default",
    "enum",
    "interface",
    "UNRECOGNIZED",
    "GetX",
    "Get__X",
    "New_",
];

/// Every string field named `name`, `package`, `input_type` or
/// `output_type` in a descriptor message, as a path of field indices.
fn name_slots(message: &DynamicMessage, path: &mut Vec<(String, Option<usize>)>, out: &mut Vec<Vec<(String, Option<usize>)>>) {
    for (field, value) in message.fields() {
        let name = field.name().to_owned();
        match value {
            Value::String(_) if ["name", "package", "input_type", "output_type", "type_name"].contains(&name.as_str()) => {
                let mut slot = path.clone();
                slot.push((name, None));
                out.push(slot);
            }
            Value::Message(inner) => {
                path.push((name, None));
                name_slots(inner, path, out);
                path.pop();
            }
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(inner) = item {
                        path.push((name.clone(), Some(i)));
                        name_slots(inner, path, out);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
    }
}

/// Sets the string at `slot` inside `message`.
fn set_slot(message: &mut DynamicMessage, slot: &[(String, Option<usize>)], text: &str) {
    let Some(((name, index), rest)) = slot.split_first() else { return };
    let Some(field) = message.descriptor().get_field_by_name(name) else { return };
    let mut value = message.get_field(&field).into_owned();
    match (&mut value, index) {
        (Value::String(s), None) => *s = text.to_owned(),
        (Value::Message(inner), None) => set_slot(inner, rest, text),
        (Value::List(items), Some(i)) => {
            if let Some(Value::Message(inner)) = items.get_mut(*i) {
                set_slot(inner, rest, text);
            }
        }
        _ => return,
    }
    message.set_field(&field, value);
}

/// `CodeGeneratorRequest` with its files as raw bytes, so that one file
/// can be decoded, renamed and put back without touching the others.
#[derive(Clone, PartialEq, prost::Message)]
struct RawRequest {
    #[prost(string, repeated, tag = "1")]
    file_to_generate: Vec<String>,
    #[prost(string, optional, tag = "2")]
    parameter: Option<String>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    proto_file: Vec<Vec<u8>>,
}

/// The request with one name in one file replaced by a hostile one (or by
/// a long or random Unicode string), unknown fields (our options) kept.
fn rename(request: &[u8], rng: &mut Rng) -> Vec<u8> {
    let Ok(mut raw) = RawRequest::decode(request) else { return request.to_vec() };
    let Some(descriptor) = DescriptorPool::global().get_message_by_name("google.protobuf.FileDescriptorProto") else {
        return request.to_vec();
    };
    if raw.proto_file.is_empty() {
        return request.to_vec();
    }
    // Mostly the files to generate (the last ones), sometimes a dependency.
    let n = raw.proto_file.len();
    let index = if rng.below(4) == 0 { rng.below(n) } else { n - 1 - rng.below(n.min(2)) };
    let Ok(mut file) = DynamicMessage::decode(descriptor, raw.proto_file[index].as_slice()) else { return request.to_vec() };
    let mut slots = Vec::new();
    name_slots(&file, &mut Vec::new(), &mut slots);
    if slots.is_empty() {
        return request.to_vec();
    }
    let slot = &slots[rng.below(slots.len())];
    let text = match rng.below(4) {
        0 => (0..1 + rng.below(12))
            .map(|_| char::from_u32(u32::try_from(rng.below(0x3000)).expect("small")).unwrap_or('?'))
            .collect(),
        1 => "a".repeat(1 + rng.below(2_000)),
        _ => HOSTILE_NAMES[rng.below(HOSTILE_NAMES.len())].to_owned(),
    };
    // A renamed file must stay a file to generate, or nothing is generated.
    if slot.len() == 1 && slot[0].0 == "name" {
        raw.file_to_generate.retain(|f| f != &text);
        raw.file_to_generate.push(text.clone());
    }
    set_slot(&mut file, slot, &text);
    raw.proto_file[index] = file.encode_to_vec();
    raw.encode_to_vec()
}

fn mutate(seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seeds[rng.below(seeds.len())].clone();
    match rng.below(5) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
        }
        1 => bytes.truncate(rng.below(bytes.len())),
        2 => {
            let other = &seeds[rng.below(seeds.len())];
            let (start, len) = (rng.below(other.len()), rng.below(256));
            let chunk = other[start..(start + len).min(other.len())].to_vec();
            let at = rng.below(bytes.len());
            bytes.splice(at..at, chunk);
        }
        _ => bytes = rename(&bytes, rng),
    }
    bytes
}

/// Requests for the project protos (and the corpus when present) in every
/// language.
fn seeds() -> Vec<Vec<u8>> {
    // One file per request: small requests make many cases per second.
    let mut seeds = Vec::new();
    for parameter in [None, Some("lang=ts"), Some("lang=python")] {
        for file in common::PROJECT_FILES {
            seeds.push(common::request(&common::project_includes(), &[file], parameter));
        }
    }
    for file in common::corpus_files_if_present().unwrap_or_default() {
        seeds.push(common::request(&common::corpus_includes(), &[file], None));
    }
    seeds
}

#[test]
fn mutated_requests_never_panic_and_rust_output_parses() {
    let seeds = seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let (mut cases, mut successes) = (0, 0);
    let mut failures = Vec::new();
    let (mut mutate_time, mut generate_time) = (Duration::ZERO, Duration::ZERO);
    while cases < MAX_CASES && started.elapsed() < TIME_BUDGET {
        let t0 = Instant::now();
        let request = mutate(&seeds, &mut rng);
        mutate_time += t0.elapsed();
        cases += 1;
        let t1 = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| protoc_gen_nats_micro::generate(&request)));
        generate_time += t1.elapsed();
        let output = match result {
            Ok(output) => output,
            Err(_) => {
                failures.push(format!("case {cases}: generate panicked through its guard"));
                continue;
            }
        };
        if let Some(error) = &output.response.error {
            if error.contains("internal error") {
                if let Some(dir) = std::env::var_os("FUZZ_DUMP") {
                    let _ = std::fs::write(std::path::Path::new(&dir).join(format!("case-{cases}.bin")), &request);
                }
                failures.push(format!("case {cases}: {}", error.chars().take(300).collect::<String>()));
            }
            continue;
        }
        successes += 1;
        for file in output.response.file.iter().filter(|f| f.name().ends_with(".rs")) {
            if let Err(err) = syn::parse_file(file.content()) {
                failures.push(format!("case {cases}: {} does not parse: {err}", file.name()));
            }
        }
    }
    eprintln!(
        "fuzz: {cases} cases, {successes} generated, {} failures; mutate {mutate_time:?} generate {generate_time:?}",
        failures.len()
    );
    assert!(cases >= MIN_CASES, "only {cases} cases ran");
    assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
}
