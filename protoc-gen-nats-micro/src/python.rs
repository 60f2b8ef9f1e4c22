//! Python output (in progress).

use crate::model::File;

/// Generates Python files for the model.
pub fn generate(_files: &[File]) -> Result<Vec<(String, String)>, String> {
    Err("lang=python output is not available yet; use lang=rust".to_owned())
}
