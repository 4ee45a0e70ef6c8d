//! The `hybrid` index access method, one file per phase, in the manner of contrib/bloom and
//! pgvector: the handler fills the routine table; `build`, `insert`, `scan`, `vacuum` do the work
//! by calling the engine; `cost` and `options` talk to the planner and to `CREATE INDEX ... WITH`.

pub mod build;
pub mod cost;
pub mod handler;
pub mod insert;
pub mod log_pages;
pub mod options;
pub mod scan;
pub mod vacuum;
pub mod validate;

pub use handler::hybrid_am_oid;
