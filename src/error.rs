//! Turns engine errors into Postgres ERRORs, each with a real SQLSTATE. This is the one place
//! where that mapping lives.

use hybrid_engine::Error;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// The SQLSTATE an engine error is reported with.
pub fn sqlstate(e: &Error) -> PgSqlErrorCode {
    match e {
        Error::QuerySyntax { .. } => PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
        Error::UnknownField { .. } => PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
        Error::InvalidParameter { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        Error::WrongType { .. } => PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
        Error::InvalidValue { .. } => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        Error::Missing { .. } => PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
        Error::Corrupt { .. } => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        Error::Io { .. } => PgSqlErrorCode::ERRCODE_IO_ERROR,
        Error::Store { .. } => PgSqlErrorCode::ERRCODE_IO_ERROR,
        Error::Tantivy(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
    }
}

/// Raises `e` as a Postgres ERROR. `query` is the search query text, if the error is about one;
/// a position in it is shown under the query in the error's DETAIL.
pub fn raise(e: &Error, query: Option<&str>) -> ! {
    let mut report = ErrorReport::new(sqlstate(e), e.to_string(), "pg_hybrid");
    if let Some(h) = e.hint() {
        report = report.set_hint(h.to_string());
    }
    let position = match e {
        Error::QuerySyntax { position, .. } => Some(*position),
        Error::UnknownField { position, .. } => *position,
        _ => None,
    };
    if let (Some(pos), Some(q)) = (position, query) {
        if !q.contains('\n') {
            report = report.set_detail(format!(
                "at character {pos} of the search query:\n{q}\n{}^",
                " ".repeat(pos.saturating_sub(1))
            ));
        } else {
            report = report.set_detail(format!("at character {pos} of the search query"));
        }
    } else if let Error::Missing { .. } = e {
        report = report.set_hint(
            "restore the index's files with SELECT hybrid.restore('<index>') (from its newest snapshot), or rebuild them with REINDEX INDEX",
        );
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// Raises an ERROR with the given SQLSTATE, message and hint.
pub fn raise_with(code: PgSqlErrorCode, message: impl Into<String>, hint: Option<String>) -> ! {
    let mut report = ErrorReport::new(code, message.into(), "pg_hybrid");
    if let Some(h) = hint {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// `.or_raise()` on engine results.
pub trait OrRaise<T> {
    /// The value, or a Postgres ERROR.
    fn or_raise(self) -> T;
    /// The value, or a Postgres ERROR whose position refers into `query`.
    fn or_raise_in(self, query: &str) -> T;
}

impl<T> OrRaise<T> for hybrid_engine::Result<T> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(&e, None))
    }

    fn or_raise_in(self, query: &str) -> T {
        self.unwrap_or_else(|e| raise(&e, Some(query)))
    }
}
