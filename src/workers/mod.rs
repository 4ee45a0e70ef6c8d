//! Background workers, registered from `shared_preload_libraries` in the autovacuum pattern: a
//! launcher for the cluster (`launcher`) starts a round of a database worker (`database`) for
//! each database every `hybrid.worker_naptime`. A round reconciles the index folders with the
//! catalog (restoring what is missing or untrusted), merges segments, takes the snapshots that
//! are due and sweeps orphaned folders (`sweep`). `status` is their shared memory: the
//! `hybrid.workers` view and the launcher's memory between rounds.

pub mod database;
pub mod launcher;
pub mod status;
pub mod sweep;

/// Registers the launcher and the shared memory. Only possible while the postmaster loads
/// preloaded libraries.
pub fn register() {
    status::init();
    launcher::register();
}
