//! Scores and snippets of the rows search scans produce, for `hybrid.score()` and
//! `hybrid.snippet()`.
//!
//! A running search scan registers here. When it returns a row it records the row's score, as
//! "the current row" and by key. `hybrid.score(key)` evaluated in the scan's own projection
//! (the usual case) gets the current row's score; evaluated above a join or a sort it finds the
//! score by key. Entries live as long as the scan's executor memory (also on error).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use hybrid_engine::tantivy::query::Query;
use hybrid_engine::text::reader::Snapshot;
use hybrid_engine::text::snippet::Snippets;
use hybrid_engine::text::KeyValue;

/// What a running search scan shares with score() and snippet().
pub struct ActiveScan {
    /// Range-table index of the scanned relation in its query.
    pub scanrelid: u32,
    /// Heap attribute number of the key column (0 if the key is an expression).
    pub key_attno: i16,
    /// Heap attribute number -> text field position.
    pub field_of_attno: HashMap<i16, usize>,
    /// The field of the first `@@@` condition (snippets of other expressions use it).
    pub default_field: usize,
    /// The row being returned (its conditions are evaluated with it current): key and score.
    pub current: Option<(KeyValue, f32)>,
    /// Score of every row returned so far, by key (rows that passed the conditions only).
    pub scores: HashMap<KeyValue, f32>,
    pub snapshot: Option<Snapshot>,
    pub query: Option<Arc<dyn Query>>,
    snippets: HashMap<(usize, i32), Rc<Snippets>>,
}

impl ActiveScan {
    pub fn new(
        scanrelid: u32,
        key_attno: i16,
        field_of_attno: HashMap<i16, usize>,
        default_field: usize,
    ) -> ActiveScan {
        ActiveScan {
            scanrelid,
            key_attno,
            field_of_attno,
            default_field,
            current: None,
            scores: HashMap::new(),
            snapshot: None,
            query: None,
            snippets: HashMap::new(),
        }
    }

    /// The current row was returned (it passed the scan's conditions): its score may now be
    /// found by key.
    pub fn confirm_current(&mut self) {
        if let Some((k, s)) = &self.current {
            self.scores.insert(k.clone(), *s);
        }
    }

    /// Forgets results (the scan is restarting).
    pub fn reset(&mut self) {
        self.current = None;
        self.scores.clear();
        self.snapshot = None;
        self.query = None;
        self.snippets.clear();
    }
}

thread_local! {
    static ACTIVE: RefCell<Vec<Weak<RefCell<ActiveScan>>>> = const { RefCell::new(Vec::new()) };
}

/// Registers a scan; it stays registered while the returned handle lives.
pub fn register(scan: ActiveScan) -> Rc<RefCell<ActiveScan>> {
    let rc = Rc::new(RefCell::new(scan));
    ACTIVE.with(|a| {
        let mut a = a.borrow_mut();
        a.retain(|w| w.strong_count() > 0);
        a.push(Rc::downgrade(&rc));
    });
    rc
}

fn active_scans() -> Vec<Rc<RefCell<ActiveScan>>> {
    ACTIVE.with(|a| a.borrow().iter().rev().filter_map(|w| w.upgrade()).collect())
}

/// Where the argument of a score()/snippet() call comes from: the range-table index of the
/// scanned relation and the column, when the argument is a plain column.
pub type ArgColumn = Option<(u32, i16)>;

/// The score of the row with key `key`. The scan of the argument's relation answers: with its
/// current row (the call is in its projection) or by key (the call is above a join or a sort).
/// An argument that is not a plain column is looked up by key in every running scan.
pub fn score_of(arg: ArgColumn, key: &KeyValue) -> Option<f32> {
    let scans = active_scans();
    if let Some((varno, attno)) = arg {
        if let Some(s) = scans.iter().find(|s| s.borrow().scanrelid == varno) {
            let s = s.borrow();
            if let Some((k, score)) = &s.current {
                if (k == key && s.key_attno == attno) || s.key_attno == 0 {
                    return Some(*score);
                }
            }
            return s.scores.get(key).copied();
        }
    }
    scans.iter().find_map(|s| s.borrow().scores.get(key).copied())
}

/// Whether any search scan is running.
pub fn any_active() -> bool {
    !active_scans().is_empty()
}

/// A highlighted excerpt of `text` for the query of the scan that produced it.
pub fn snippet_of(
    arg: ArgColumn,
    text: &str,
    start: &str,
    end: &str,
    max_chars: i32,
) -> Option<hybrid_engine::Result<String>> {
    let scans = active_scans();
    let by_column = arg.and_then(|(varno, attno)| {
        scans.iter().find(|s| s.borrow().scanrelid == varno).map(|s| {
            let field = s.borrow().field_of_attno.get(&attno).copied();
            (s.clone(), field)
        })
    });
    let (scan, field) = match by_column {
        Some((s, f)) => (s, f),
        None => (scans.first()?.clone(), None),
    };
    let mut s = scan.borrow_mut();
    let field = field.unwrap_or(s.default_field);
    let (Some(snap), Some(query)) = (s.snapshot.clone(), s.query.clone()) else {
        return Some(Ok(text.to_string()));
    };
    let key = (field, max_chars);
    let generator = match s.snippets.get(&key) {
        Some(g) => g.clone(),
        None => match Snippets::new(&snap, &*query, field, max_chars.max(1) as usize) {
            Ok(g) => {
                let g = Rc::new(g);
                s.snippets.insert(key, g.clone());
                g
            }
            Err(e) => return Some(Err(e)),
        },
    };
    Some(Ok(generator.render(text, start, end)))
}
