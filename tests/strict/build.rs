//! Generates the code `src/lib.rs` compiles under `#![deny(warnings)]`:
//! the project's protos and the shared corpus through the build.rs
//! integration, the edge shapes (`proto/edge/shapes`) through the plugin's
//! own entry (`generate_from_pool`, what protoc runs), each group in its
//! own directory, plus `modules.rs`: one module per proto package.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use prost::Message;

fn protos_under(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "proto") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The edge shapes, generated as protoc would: prost for the messages,
/// the plugin's entry for the services (one `<package>.nats_micro.rs` each).
fn shapes(proto: &Path, out: &Path) -> Result<(), Box<dyn Error>> {
    let names: Vec<String> = protos_under(&proto.join("edge/shapes"))?
        .iter()
        .filter_map(|p| p.strip_prefix(proto).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut compiler = protox::Compiler::new([proto])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&names)?;
    let descriptors = compiler.encode_file_descriptor_set();
    let pool = prost_reflect::DescriptorPool::decode(descriptors.as_slice())?;
    let params = protoc_gen_nats_micro::params::Params::parse("lang=rust")?;
    let (generated, _warnings) = protoc_gen_nats_micro::generate_from_pool(&pool, &names, &params)?;
    std::fs::create_dir_all(out)?;
    for (name, code) in generated {
        std::fs::write(out.join(name), code)?;
    }
    let fds = prost_types::FileDescriptorSet::decode(descriptors.as_slice())?;
    prost_build::Config::new().out_dir(out).compile_fds(fds)?;
    Ok(())
}

/// A module tree over the package files of `dir`: `a.b.rs` and
/// `a.b.nats_micro.rs` are included in `pub mod a { pub mod b { .. } }`.
#[derive(Default)]
struct Tree {
    files: Vec<PathBuf>,
    children: BTreeMap<String, Tree>,
}

impl Tree {
    fn of(dir: &Path) -> Result<Tree, Box<dyn Error>> {
        let mut tree = Tree::default();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(package) = name.strip_suffix(".nats_micro.rs").or_else(|| name.strip_suffix(".rs")) else { continue };
            let mut node = &mut tree;
            // prost names its files by module (`a.r#type.self_.rs`), the plugin by package (`a.type.self.nats_micro.rs`).
            for segment in package.split('.').filter(|s| *s != "_") {
                let module = protoc_gen_nats_micro::naming::rust_snake(segment.trim_start_matches("r#"));
                node = node.children.entry(module).or_default();
            }
            node.files.push(path.clone());
        }
        Ok(tree)
    }

    fn render(&self, out: &mut String) {
        let mut files = self.files.clone();
        files.sort();
        for file in files {
            out.push_str(&format!("include!({:?});\n", file.display().to_string()));
        }
        for (segment, child) in &self.children {
            if segment == "google" {
                // prost copies googleapis' comments verbatim; their Markdown is not ours to fix.
                out.push_str("#[allow(clippy::doc_lazy_continuation, clippy::doc_overindented_list_items, reason = \"googleapis comments\")]\n");
            }
            out.push_str(&format!("pub mod {segment} {{\n"));
            child.render(out);
            out.push_str("}\n");
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let proto = root.join("proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let mut groups = vec![("project", out.join("project")), ("shapes", out.join("shapes"))];
    let project: Vec<PathBuf> =
        ["order", "product", "edge/nested"].iter().map(|d| protos_under(&proto.join(d))).collect::<Result<Vec<_>, _>>()?.concat();
    std::fs::create_dir_all(&groups[0].1)?;
    protoc_gen_nats_micro::build::configure().out_dir(&groups[0].1).compile_protos(&project, &[&proto])?;
    shapes(&proto, &groups[1].1)?;

    let corpus = root.join("../shared/corpus");
    if corpus.join("anchor-examples").is_dir() {
        let (anchors, googleapis) = (corpus.join("anchor-examples"), corpus.join("googleapis"));
        let dir = out.join("corpus");
        std::fs::create_dir_all(&dir)?;
        protoc_gen_nats_micro::build::configure()
            .out_dir(&dir)
            .compile_protos(&protos_under(&anchors)?, &[&anchors, &googleapis, &proto])?;
        println!("cargo:rerun-if-changed={}", corpus.display());
        groups.push(("corpus", dir));
    } else {
        println!("cargo:warning=../shared/corpus is absent: the corpus is not compiled under deny(warnings)");
    }

    let mut modules = String::new();
    for (group, dir) in &groups {
        modules.push_str(&format!("/// Generated from the {group} protos.\npub mod {group} {{\n"));
        Tree::of(dir)?.render(&mut modules);
        modules.push_str("}\n");
    }
    std::fs::write(out.join("modules.rs"), modules)?;
    Ok(())
}
