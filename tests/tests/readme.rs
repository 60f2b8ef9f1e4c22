//! The READMEs cannot drift from what the test suite runs.
//!
//! Every fenced code block in `README.md` is marked with an HTML comment on
//! the line before it:
//!
//! - `<!-- snippet: PATH#NAME -->`: the block is the region of PATH between a
//!   comment line containing `snippet: NAME` and one containing
//!   `end snippet` (common indentation removed); `<!-- snippet: PATH -->` is
//!   the whole file. PATH is compiled or run by the test suite.
//! - `<!-- run-by: PATH -->`: every command of the (shell) block appears,
//!   whitespace-normalised, in PATH, a script the test suite runs.
//! - `<!-- scripts -->`: every command is `bash PATH [ARGS]` with PATH a
//!   script of the repository.
//! - `<!-- illustration -->`: prose in code form (a layout, install lines for
//!   registries we do not publish to yet); checked by nothing, so kept rare.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fenced block and the marker comment above it.
struct Block {
    marker: Option<String>,
    body: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// Lines `line..end` (0-based, exclusive) are the body.
    end: usize,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(fence) = fence_of(lines[i]) else {
            i += 1;
            continue;
        };
        let marker = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.trim().strip_prefix("<!--"))
            .and_then(|l| l.strip_suffix("-->"))
            .map(|l| l.trim().to_owned());
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && lines[end].trim() != fence {
            end += 1;
        }
        found.push(Block { marker, body: lines[start..end.min(lines.len())].join("\n"), line: i + 1, end });
        i = end + 1;
    }
    found
}

/// The fence that opens a block on this line (```` ``` ```` or longer).
fn fence_of(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    let ticks = trimmed.len() - trimmed.trim_start_matches('`').len();
    (ticks >= 3).then(|| &trimmed[..ticks])
}

/// The named region of `text`, dedented.
fn region(text: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let open = format!("snippet: {name}");
    let start = lines.iter().position(|l| l.contains(&open) && !l.contains("end snippet"))? + 1;
    let end = start + lines[start..].iter().position(|l| l.contains("end snippet"))?;
    let body = &lines[start..end];
    let indent = body.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    let text = body.iter().map(|l| l.get(indent..).unwrap_or("").trim_end()).collect::<Vec<_>>().join("\n");
    Some(text.trim_matches('\n').to_owned())
}

/// Shell text as logical commands: continuations joined, comments and
/// blank lines dropped, whitespace folded.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = match line.find(" #") {
            Some(at) if !line[..at].contains('\'') && !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let folded = current.split_whitespace().collect::<Vec<_>>().join(" ");
                if !folded.is_empty() {
                    out.push(folded);
                }
                current.clear();
            }
        }
    }
    out
}

/// The text a `snippet:` marker names.
fn snippet(target: &str) -> Result<String, String> {
    let (path, name) = match target.trim().split_once('#') {
        Some((path, name)) => (path, Some(name)),
        None => (target.trim(), None),
    };
    let text = std::fs::read_to_string(repo().join(path)).map_err(|err| format!("{path}: {err}"))?;
    match name {
        Some(name) => region(&text, name).ok_or_else(|| format!("no snippet `{name}` in {path}")),
        None => Ok(text.trim_end().to_owned()),
    }
}

/// `UPDATE_README=1`: rewrites every snippet block of `readme` from its
/// source (review the diff, as with the golden files).
fn update_snippets(readme: &str) {
    let path = repo().join(readme);
    let text = std::fs::read_to_string(&path).expect("README");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for block in blocks(&text).iter().rev() {
        let Some(target) = block.marker.as_deref().and_then(|m| m.strip_prefix("snippet:")) else { continue };
        // A missing source is reported by the check that follows.
        let Ok(body) = snippet(target) else { continue };
        lines.splice(block.line..block.end, body.lines().map(str::to_owned));
    }
    std::fs::write(&path, lines.join("\n") + "\n").expect("writing README");
}

fn check_block(readme: &str, block: &Block) -> Result<(), String> {
    let at = format!("{readme}:{}", block.line);
    let marker = block.marker.as_deref().ok_or_else(|| format!("{at}: code block without a snippet/run-by marker"))?;
    if marker == "illustration" {
        return Ok(());
    }
    if marker == "scripts" {
        let bad: Vec<String> = commands(&block.body)
            .into_iter()
            .filter(|c| {
                !c.strip_prefix("bash ").and_then(|rest| rest.split(' ').next()).is_some_and(|p| repo().join(p).is_file())
            })
            .collect();
        return if bad.is_empty() { Ok(()) } else { Err(format!("{at}: not `bash SCRIPT` of the repository: {bad:?}")) };
    }
    if let Some(target) = marker.strip_prefix("snippet:") {
        let expected = snippet(target).map_err(|err| format!("{at}: {err}"))?;
        let actual = block.body.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
        return if actual.trim_end() == expected.trim_end() {
            Ok(())
        } else {
            Err(format!("{at}: differs from {target}:\n--- README\n{actual}\n--- {target}\n{expected}"))
        };
    }
    if let Some(path) = marker.strip_prefix("run-by:") {
        let path = path.trim();
        let script = std::fs::read_to_string(repo().join(path)).map_err(|err| format!("{at}: {path}: {err}"))?;
        let script = commands(&script).join("\n");
        let missing: Vec<String> = commands(&block.body).into_iter().filter(|c| !script.contains(c.as_str())).collect();
        return if missing.is_empty() { Ok(()) } else { Err(format!("{at}: not run by {path}: {missing:#?}")) };
    }
    Err(format!("{at}: unknown marker `{marker}`"))
}

#[test]
fn every_readme_code_block_is_checked_against_what_the_tests_run() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for readme in ["README.md"] {
        if std::env::var_os("UPDATE_README").is_some() {
            update_snippets(readme);
        }
        let text = std::fs::read_to_string(repo().join(readme)).expect("README");
        for block in blocks(&text) {
            checked += 1;
            if let Err(problem) = check_block(readme, &block) {
                problems.push(problem);
            }
        }
    }
    assert!(checked >= 10, "only {checked} code blocks found");
    assert!(problems.is_empty(), "{} README problems:\n\n{}", problems.len(), problems.join("\n\n"));
}

#[test]
fn markers_are_parsed_as_documented() {
    let text = "intro\n<!-- run-by: scripts/demo -->\n```sh\nbash scripts/demo   # note\n```\n\n```rust\nx\n```\n";
    let found = blocks(text);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].marker.as_deref(), Some("run-by: scripts/demo"));
    assert_eq!(commands(&found[0].body), ["bash scripts/demo"]);
    assert_eq!(found[1].marker, None);
    let source = "fn main() {\n    // snippet: demo\n    let a = 1;\n        a\n    // end snippet\n}\n";
    assert_eq!(region(source, "demo").as_deref(), Some("let a = 1;\n    a"));
    assert_eq!(commands("protoc -I proto \\\n  --x=1 \\\n  a.proto\n# c\n"), ["protoc -I proto --x=1 a.proto"]);
}
