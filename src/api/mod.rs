//! SQL functions, by audience: `search` for queries, `admin` for DBAs.

pub mod admin;
pub mod search;
