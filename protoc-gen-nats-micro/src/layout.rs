//! Where the Rust output goes on the protoc path: beside protoc-gen-prost
//! 0.5's file of the same package, and included from it.
//!
//! protoc-gen-prost writes package `order.v1` to `order/v1/order.v1.rs`
//! (`order.v1.rs` with its `flat_output_dir`), ending with the insertion
//! point `module`. Like protoc-gen-tonic and protoc-gen-prost-serde, we
//! write `order/v1/order.v1.nats_micro.rs` and insert
//! `include!("order.v1.nats_micro.rs");` there, so users include prost's
//! file only. `no_include` leaves prost's file alone (ours must then be
//! included by hand, and prost need not run in the same protoc call).

use prost_types::compiler::code_generator_response::File as ResponseFile;

/// The `flat_output_dir` and `no_include` parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Files at the output root, as protoc-gen-prost's `flat_output_dir`.
    pub flat_output_dir: bool,
    /// No `include!` inserted into protoc-gen-prost's file.
    pub no_include: bool,
}

/// The protoc insertion point protoc-gen-prost leaves at the end of a file.
const INSERTION_POINT: &str = "module";

impl Layout {
    /// The response files for the Rust output `files` (named by
    /// [`crate::rust::file_name`]): each moved beside prost's file, and an
    /// insertion into prost's file unless `no_include`.
    ///
    /// ```
    /// use protoc_gen_nats_micro::layout::Layout;
    /// let files = Layout::default().place(vec![("order.v1.nats_micro.rs".into(), "// ours\n".into())]);
    /// assert_eq!(files[0].name.as_deref(), Some("order/v1/order.v1.nats_micro.rs"));
    /// assert_eq!(files[1].name.as_deref(), Some("order/v1/order.v1.rs"));
    /// assert_eq!(files[1].insertion_point.as_deref(), Some("module"));
    /// assert_eq!(files[1].content.as_deref(), Some("include!(\"order.v1.nats_micro.rs\");\n"));
    /// ```
    pub fn place(self, files: Vec<(String, String)>) -> Vec<ResponseFile> {
        let mut placed = Vec::with_capacity(files.len() * 2);
        for (name, content) in files {
            let stem = name.strip_suffix(".nats_micro.rs").unwrap_or(&name);
            let dir = if self.flat_output_dir || stem == "_" { String::new() } else { format!("{}/", stem.replace('.', "/")) };
            if !self.no_include {
                placed.push(ResponseFile {
                    name: Some(format!("{dir}{stem}.rs")),
                    insertion_point: Some(INSERTION_POINT.to_owned()),
                    content: Some(format!("include!(\"{name}\");\n")),
                    ..Default::default()
                });
            }
            placed.push(ResponseFile { name: Some(format!("{dir}{name}")), content: Some(content), ..Default::default() });
        }
        // protoc applies insertions after every file of the run is written;
        // ours first, then the insertions, reads best in the response.
        placed.sort_by_key(|file| file.insertion_point.is_some());
        placed
    }
}
