//! pg_hybrid's search engine: everything that does not need Postgres.
//!
//! The extension crate calls in here with plain values (tuple ids, keys, text) and gets plain
//! values back; nothing here calls Postgres, so all of it is tested with `cargo test` in seconds.
#![warn(missing_docs)]
#![allow(missing_docs)] // TODO: document every public item, then drop this line

pub mod analyzer;
pub mod config;
pub mod directory;
pub mod error;
pub mod fsutil;
pub mod manifest;
pub mod query;
pub mod schema;
pub mod snapshot;
pub mod text;
pub mod vector;

pub use error::{Error, Result};
pub use tantivy;
