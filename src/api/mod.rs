//! SQL functions, by audience: `search` and `vector` for queries, `admin` for DBAs.

pub mod admin;
pub mod search;
pub mod snapshots;
pub mod tenancy;
pub mod vector;
