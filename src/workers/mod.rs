//! Background workers, registered from `shared_preload_libraries` in the autovacuum pattern: a
//! launcher that watches the whole cluster and starts short-lived per-database workers.
//!
//! Today they reconcile the data plane with the catalog: folders of dropped databases,
//! orphaned index folders (a crash between commit and removal, a failed build, a DROP done
//! while the library was not loaded) and stale staging folders are removed.

pub mod launcher;
pub mod sweep;

/// Registers the launcher. Only possible while the postmaster loads preloaded libraries.
pub fn register() {
    launcher::register();
}
