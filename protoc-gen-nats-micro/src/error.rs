//! The plugin's errors: every way a run can fail, each readable as one line
//! per problem (`file: element: option: message`).

use std::fmt;

/// A problem found in the descriptors: names the file, the element (a
/// package, service, method or message) and the option or aspect at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Proto file.
    pub file: String,
    /// Full name of the element (`order.v1.OrderService.Get`), or `(file)`.
    pub element: String,
    /// What is at fault: `option (natsmicro.service).version`, `name`, ...
    pub option: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}: {}", self.file, self.element, self.option, self.message)
    }
}

/// All problems of one run, one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Why a run of the plugin (or of the build.rs integration) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plugin parameter is unknown or has a bad value.
    #[error("parameter {0}")]
    InvalidParameter(String),
    /// The request or a descriptor in it could not be read.
    #[error("reading {what}: {message}")]
    Decode {
        /// What was being read (`the CodeGeneratorRequest`, ...).
        what: &'static str,
        /// Why it failed.
        message: String,
    },
    /// The protos break rules of this plugin; one line per problem.
    #[error("{0}")]
    Problems(#[from] Problems),
    /// An emitter refused the model.
    #[error("{0}")]
    Emit(String),
    /// A bug in the plugin, caught instead of crashing.
    #[error("internal error in protoc-gen-nats-micro (please report it with the proto): {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Internal`] from a caught panic's payload.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Error {
        Error::Internal(panic_message(payload))
    }
}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> std::io::Error {
        std::io::Error::other(error.to_string())
    }
}

/// The message of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}
