//! `term*`: every indexed term that starts with a prefix.
//!
//! tantivy's `PhrasePrefixQuery` caps how many terms a prefix expands to (50 by default); a cap
//! would silently drop matches, so prefixes walk the term dictionary with an automaton instead
//! and find every term.

use tantivy::query::{AutomatonWeight, EnableScoring, Query, Weight};
use tantivy::schema::Field;
use tantivy_fst::Automaton;

/// Matches documents holding any term of `field` that starts with `prefix`.
#[derive(Debug, Clone)]
pub struct PrefixQuery {
    field: Field,
    prefix: Vec<u8>,
}

impl PrefixQuery {
    pub fn new(field: Field, prefix: &str) -> PrefixQuery {
        PrefixQuery { field, prefix: prefix.as_bytes().to_vec() }
    }
}

impl Query for PrefixQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::new(self.field, PrefixAutomaton(self.prefix.clone()))))
    }
}

/// State: how many prefix bytes matched so far, or `None` once a byte differed.
#[derive(Debug)]
struct PrefixAutomaton(Vec<u8>);

impl Automaton for PrefixAutomaton {
    type State = Option<usize>;

    fn start(&self) -> Option<usize> {
        Some(0)
    }

    fn is_match(&self, state: &Option<usize>) -> bool {
        matches!(state, Some(n) if *n >= self.0.len())
    }

    fn can_match(&self, state: &Option<usize>) -> bool {
        state.is_some()
    }

    fn will_always_match(&self, state: &Option<usize>) -> bool {
        self.is_match(state)
    }

    fn accept(&self, state: &Option<usize>, byte: u8) -> Option<usize> {
        match *state {
            Some(n) if n >= self.0.len() => Some(n),
            Some(n) if self.0[n] == byte => Some(n + 1),
            _ => None,
        }
    }
}
