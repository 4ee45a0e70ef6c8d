//! One error type for the engine. The Postgres layer maps each kind to a SQLSTATE in one place
//! (`src/error.rs` of the extension), so the kinds here are chosen by what the user must do about
//! them, not by where they happen.

use std::path::PathBuf;

/// Where in the user's query text an error is (byte offsets).
pub use crate::query::ast::Span;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The search query text is malformed (SQLSTATE 42601, with a cursor position).
    #[error("{message}")]
    QuerySyntax {
        message: String,
        hint: Option<String>,
        /// 1-based character position in the query text.
        position: usize,
    },
    /// The query or an option names a field the index does not have (42703).
    #[error("{message}")]
    UnknownField {
        message: String,
        hint: Option<String>,
        /// 1-based character position in the query text, when the field is named in a query.
        position: Option<usize>,
    },
    /// An index option or a query parameter has a bad value (22023).
    #[error("{message}")]
    InvalidParameter { message: String, hint: Option<String> },
    /// A column's type cannot be indexed the way it was asked (42804, datatype_mismatch).
    #[error("{message}")]
    WrongType { message: String, hint: Option<String> },
    /// An indexed value cannot be indexed as given (22000 class).
    #[error("{message}")]
    InvalidValue { message: String, hint: Option<String> },
    /// The sidecar directory is missing or does not match what the catalog says (58P01 / XX001).
    #[error("index files at {path} are missing: {detail}")]
    Missing { path: PathBuf, detail: String },
    /// The sidecar files are damaged (XX001, data_corrupted).
    #[error("index files at {path} are damaged: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// An operating-system level failure (58030, io_error).
    #[error("could not {action} \"{path}\": {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A failure inside tantivy that is not one of the above (XX000).
    #[error("search engine error: {0}")]
    Tantivy(String),
    /// The object store holding snapshots failed or could not be reached, after retries
    /// (unreachable, timed out, refused the credentials, misconfigured URL). Nothing local was
    /// changed; the operation can be retried later. Suggested SQLSTATE 58030 (io_error). (A
    /// malformed store URL or option is `InvalidParameter`.)
    #[error("{message}")]
    Store { message: String, hint: Option<String> },
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O failure while doing `action` on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { action, path: path.into(), source }
    }

    /// A bad option or parameter value, with a hint saying what would be accepted.
    pub fn invalid_parameter(message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::InvalidParameter { message: message.into(), hint: Some(hint.into()) }
    }

    /// The hint attached to the error, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::QuerySyntax { hint, .. }
            | Error::UnknownField { hint, .. }
            | Error::InvalidParameter { hint, .. }
            | Error::InvalidValue { hint, .. }
            | Error::WrongType { hint, .. }
            | Error::Store { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Error {
        match e {
            tantivy::TantivyError::DataCorruption(c) => {
                Error::Corrupt { path: PathBuf::new(), detail: format!("{c:?}") }
            }
            other => Error::Tantivy(other.to_string()),
        }
    }
}
