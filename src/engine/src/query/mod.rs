//! The search query language: parsing (`parser`, into the `ast`) and compiling an AST into a
//! tantivy query against one index's fields and analyzers (`compile`).

pub mod ast;
pub mod compile;
pub mod eval;
pub mod parser;
pub mod prefix;

pub use ast::DefaultOperator;

use crate::error::{Error, Result};

/// Parses `text`, turning a syntax error into [`Error::QuerySyntax`] with its position.
pub fn parse(text: &str, default_op: DefaultOperator) -> Result<ast::Query> {
    parser::parse(text, default_op).map_err(|e| Error::QuerySyntax {
        position: e.position(text),
        message: e.message,
        hint: e.hint,
    })
}
