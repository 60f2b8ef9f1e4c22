//! Golden snapshots of the generated Rust, for the corpus written for the Go
//! plugin and for the project's own protos.
//!
//! Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p protoc-gen-nats-micro --test golden`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{
    CRATE_DIR, PROJECT_FILES, corpus_files_if_present, corpus_includes, generate, output_files, project_includes, read_dir_files,
};

const HINT: &str = "UPDATE_GOLDEN=1 cargo test -p protoc-gen-nats-micro --test golden";

/// Lines of context shown around the first difference.
const CONTEXT: usize = 3;

fn golden_dir(set: &str) -> PathBuf {
    Path::new(CRATE_DIR).join("tests/golden").join(set)
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// The golden files present in `dir`, by name (none if it is missing).
fn read_golden(dir: &Path) -> BTreeMap<String, String> {
    if dir.is_dir() { read_dir_files(dir) } else { BTreeMap::new() }
}

/// Rewrites `dir` to hold exactly `actual`.
fn write_golden(dir: &Path, actual: &BTreeMap<String, String>) {
    std::fs::create_dir_all(dir).unwrap_or_else(|err| panic!("creating {}: {err}", dir.display()));
    for stale in read_golden(dir).keys().filter(|name| !actual.contains_key(*name)) {
        std::fs::remove_file(dir.join(stale)).expect("remove a stale golden file");
    }
    for (name, content) in actual {
        std::fs::write(dir.join(name), content).expect("write a golden file");
    }
}

/// A short diff: the first differing line, with a few lines either side.
fn first_difference(expected: &str, actual: &str) -> String {
    let (expected, actual): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let Some(first) = (0..expected.len().max(actual.len())).find(|&i| expected.get(i) != actual.get(i)) else {
        return "  (the files differ only in their final newline)".to_owned();
    };
    let start = first.saturating_sub(CONTEXT);
    let mut out =
        format!("  first difference at line {} (golden {} lines, generated {} lines)\n", first + 1, expected.len(), actual.len());
    for (marker, lines) in [("-", &expected), ("+", &actual)] {
        for (i, line) in lines.iter().enumerate().skip(start).take(2 * CONTEXT + 1) {
            let marker = if i == first { marker } else { " " };
            out.push_str(&format!("  {marker}{:>5} | {line}\n", i + 1));
        }
        out.push_str("  ------\n");
    }
    out
}

/// Compares generated files with the golden files of `set` (or rewrites them).
fn check(set: &str, actual: BTreeMap<String, String>) {
    let dir = golden_dir(set);
    if updating() {
        write_golden(&dir, &actual);
        return;
    }
    let golden = read_golden(&dir);
    let (golden_names, actual_names): (BTreeSet<&String>, BTreeSet<&String>) = (golden.keys().collect(), actual.keys().collect());
    assert_eq!(
        golden_names,
        actual_names,
        "{set}: generated file names differ from the golden files in {}\nrun: {HINT}",
        dir.display()
    );
    let mismatches: Vec<String> = actual
        .iter()
        .filter(|(name, content)| golden[*name] != **content)
        .map(|(name, content)| format!("{set}/{name}:\n{}", first_difference(&golden[name], content)))
        .collect();
    assert!(mismatches.is_empty(), "generated code differs from the golden files:\n{}\nrun: {HINT}", mismatches.join("\n"));
}

#[test]
fn corpus_matches_golden() {
    let Some(corpus) = corpus_files_if_present() else { return };
    let actual = output_files(&generate(&corpus_includes(), &corpus, None));
    assert!(actual.contains_key("order.v1.nats_micro.rs"), "corpus output: {:?}", actual.keys());
    check("corpus", actual);
}

#[test]
fn project_matches_golden() {
    let actual = output_files(&generate(&project_includes(), &PROJECT_FILES, None));
    assert_eq!(actual.len(), PROJECT_FILES.len(), "one file per package: {:?}", actual.keys());
    check("project", actual);
}

/// The edge shapes (`proto/edge/shapes`): keywords, clashing module names,
/// `_`-only service names, streaming-only, proto2, hostile text.
#[test]
fn shapes_match_golden() {
    let dir = Path::new(CRATE_DIR).join("../proto/edge/shapes");
    let mut files: Vec<String> = read_dir_files(&dir).into_keys().map(|name| format!("edge/shapes/{name}")).collect();
    files.sort();
    let actual = output_files(&generate(&project_includes(), &files, None));
    assert!(actual.contains_key("edge.shapes.clash.nats_micro.rs"), "shapes output: {:?}", actual.keys());
    check("shapes", actual);
}

#[test]
fn difference_report_names_the_first_differing_line() {
    let report = first_difference("a\nb\nc\n", "a\nB\nc\n");
    assert!(report.contains("line 2"), "{report}");
    assert!(report.contains("-    2 | b") && report.contains("+    2 | B"), "{report}");
}

/// What does not vary per service lives in the runtime: the order service
/// (2 methods, 3 custom codes) generates at most a third of the 903 lines
/// it took when the code and error block was written out per service.
#[test]
fn order_service_stays_within_a_third_of_the_old_size() {
    const OLD_LINES: usize = 903;
    let golden = golden_dir("project").join("order.v1.nats_micro.rs");
    let text = std::fs::read_to_string(&golden).unwrap_or_else(|err| panic!("reading {}: {err}", golden.display()));
    let lines = text.lines().count();
    assert!(lines <= OLD_LINES / 3, "{} has {lines} lines, over the bound of {}", golden.display(), OLD_LINES / 3);
}
