//! Where the server's write-ahead log is: the position every manifest is stamped with, and
//! that every snapshot covers (see `hybrid_engine::manifest::Position`).

use hybrid_engine::manifest::Position;
use once_cell::sync::OnceCell;
use pgrx::pg_sys;

/// The thread Postgres runs this process on; only it may read the server's state.
static MAIN_THREAD: OnceCell<std::thread::ThreadId> = OnceCell::new();

/// Registers [`current`] as the engine's position source. Called from `_PG_init`.
pub fn init() {
    let _ = MAIN_THREAD.set(std::thread::current().id());
    hybrid_engine::manifest::set_position_source(from_engine);
}

fn from_engine() -> Option<Position> {
    (MAIN_THREAD.get() == Some(&std::thread::current().id())).then(current)
}

/// The server's position now: its WAL flush position (on a standby, the replay position), with
/// timeline and system identifier. Everything committed before it is durable.
pub fn current() -> Position {
    let mut timeline: pg_sys::TimeLineID = 0;
    // SAFETY: reads shared state under Postgres' own spinlocks; main thread only.
    let lsn = unsafe {
        if pg_sys::RecoveryInProgress() {
            pg_sys::GetXLogReplayRecPtr(&mut timeline)
        } else {
            pg_sys::GetFlushRecPtr(&mut timeline)
        }
    };
    // SAFETY: reads pg_control's copy in shared memory.
    let system_identifier = unsafe { pg_sys::GetSystemIdentifier() };
    Position { lsn, timeline, system_identifier }
}

/// Why a folder stamped with `stamped` cannot be trusted to match this server's heap, if it
/// cannot: it comes from another cluster, or from a future this server has not reached (a data
/// directory restored to an earlier point in time). Tuple ids in it may name other rows.
pub fn untrusted(stamped: Option<Position>) -> Option<String> {
    let stamped = stamped?;
    let now = current();
    if stamped.system_identifier != now.system_identifier {
        return Some(format!(
            "its files were written by another database cluster (system identifier {}, this one is {})",
            stamped.system_identifier, now.system_identifier
        ));
    }
    if stamped.lsn > now.lsn {
        return Some(format!(
            "its files are newer than the table (written at WAL position {}, the server is at {})",
            lsn_text(stamped.lsn),
            lsn_text(now.lsn)
        ));
    }
    None
}

/// A WAL position as Postgres prints it (`16/B374D848`).
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}
