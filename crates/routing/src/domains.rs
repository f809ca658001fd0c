//! Domain lists: `mydestination`, `virtual_alias_domains`,
//! `virtual_mailbox_domains` and `relay_domains`, all read alike (Postfix's
//! `match_hostname`).
//!
//! An entry is a name, a `.parent` name (matches the parent's subdomains),
//! a `type:table` (any value means "yes") or a `/file/name` holding more
//! entries, each optionally negated with `!`; the first entry that matches
//! decides. When `parent_domain_matches_subdomains` names the parameter
//! (the default for `relay_domains`), a bare `domain` matches subdomains
//! too. Tables are asked for the domain, then for each parent as `.parent`
//! (or `parent` in the parent-matches style); pattern tables (regexp,
//! cidr) see the whole domain only. A file is re-read when it changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use postern_config::table::{Word, WordFile};
use postern_config::{Params, Table, TableError};

use crate::RoutingError;

/// How deeply files may name files.
const MAX_FILE_DEPTH: usize = 8;

#[derive(Clone, Debug)]
pub(crate) struct DomainList {
    /// The parameter, named in errors.
    param: &'static str,
    entries: Vec<Entry>,
    /// `parent_domain_matches_subdomains` names this parameter.
    parent_matches: bool,
}

#[derive(Clone, Debug)]
struct Entry {
    negate: bool,
    pattern: Pattern,
}

#[derive(Clone, Debug)]
enum Pattern {
    /// Lower case, without a trailing dot.
    Name(String),
    Table(Table),
    File(Arc<ListFile>),
}

/// A `/file/name` entry: the file and the entries compiled from its
/// current words (compiled again when the file changes).
#[derive(Debug)]
struct ListFile {
    file: WordFile,
    /// Relative names in the file resolve here.
    base_dir: PathBuf,
    depth: usize,
    compiled: Mutex<Compiled>,
}

/// The words a file had when it was last compiled, and their entries.
type Compiled = (Arc<Vec<Word>>, Arc<Vec<Entry>>);

impl DomainList {
    /// Compiles the list; a table or file that cannot be opened, or an
    /// entry that is not one, is an error here, at start.
    pub fn open(params: &Params, param: &'static str) -> Result<Self, RoutingError> {
        let parent_matches = params
            .list("parent_domain_matches_subdomains")
            .iter()
            .any(|p| p == param);
        Ok(DomainList {
            param,
            entries: compile(params.base_dir(), param, &params.list(param))?,
            parent_matches,
        })
    }

    /// Whether `domain` is in the list; a failing table or file is an
    /// error (the caller defers rather than guess).
    pub fn matches(&self, domain: &str) -> Result<bool, RoutingError> {
        let mut d = domain.to_ascii_lowercase();
        crate::address::strip_trailing_dot(&mut d);
        Ok(self.first_match(&self.entries, &d)?.unwrap_or(false))
    }

    /// The verdict of the first matching entry, if any.
    fn first_match(&self, entries: &[Entry], d: &str) -> Result<Option<bool>, RoutingError> {
        for e in entries {
            let hit = match &e.pattern {
                Pattern::Name(n) => self.name_matches(n, d),
                Pattern::Table(t) => self.table_matches(t, d)?,
                Pattern::File(f) => match self.first_match(&f.entries(self.param)?, d)? {
                    // A negation inside the file is the file's verdict.
                    Some(v) => return Ok(Some(v != e.negate)),
                    None => false,
                },
            };
            if hit {
                return Ok(Some(!e.negate));
            }
        }
        Ok(None)
    }

    fn name_matches(&self, pattern: &str, d: &str) -> bool {
        if pattern == d {
            return true;
        }
        // `.parent` matches subdomains in either style.
        if pattern.starts_with('.') {
            return d.len() > pattern.len() && d.ends_with(pattern);
        }
        self.parent_matches
            && d.len() > pattern.len()
            && d.ends_with(pattern)
            && d.as_bytes()[d.len() - pattern.len() - 1] == b'.'
    }

    fn table_matches(&self, t: &Table, d: &str) -> Result<bool, RoutingError> {
        let found = |key: &str| -> Result<bool, RoutingError> {
            t.lookup(key)
                .map(|v| v.is_some())
                .map_err(|source| RoutingError::Table {
                    param: self.param,
                    source,
                })
        };
        if found(d)? {
            return Ok(true);
        }
        if t.is_pattern() || d.starts_with('[') {
            return Ok(false);
        }
        for key in parent_keys(d, self.parent_matches) {
            if found(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl ListFile {
    /// The entries of the file as it is now.
    fn entries(&self, param: &'static str) -> Result<Arc<Vec<Entry>>, RoutingError> {
        let words = self
            .file
            .words()
            .map_err(|source| RoutingError::Table { param, source })?;
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&compiled.0, &words) {
            // The file changed: its tables and files are opened again.
            let entries = compile_file(&self.base_dir, param, self.file.path(), &words, self.depth)
                .map_err(|(value, reason)| RoutingError::Config {
                    param,
                    value,
                    reason,
                })?;
            *compiled = (words, Arc::new(entries));
        }
        Ok(Arc::clone(&compiled.1))
    }
}

/// Entries from the words of a parameter value.
fn compile(
    base_dir: &Path,
    param: &'static str,
    items: &[String],
) -> Result<Vec<Entry>, RoutingError> {
    items
        .iter()
        .map(|item| {
            entry(base_dir, param, item, 0).map_err(|e| match e {
                Bad::Table(source) => RoutingError::Table { param, source },
                Bad::Other(reason) => RoutingError::Config {
                    param,
                    value: item.clone(),
                    reason,
                },
            })
        })
        .collect()
}

/// Entries from the words of a `/file/name`; an error is the word and
/// why, naming the file and line.
fn compile_file(
    base_dir: &Path,
    param: &'static str,
    path: &Path,
    words: &[Word],
    depth: usize,
) -> Result<Vec<Entry>, (String, String)> {
    words
        .iter()
        .map(|w| {
            entry(base_dir, param, &w.text, depth).map_err(|e| {
                (
                    w.text.clone(),
                    format!("{}:{}: {e}", path.display(), w.line),
                )
            })
        })
        .collect()
}

/// Why one entry cannot be used.
#[derive(Debug, thiserror::Error)]
enum Bad {
    #[error("{0}")]
    Table(TableError),
    #[error("{0}")]
    Other(String),
}

fn entry(base_dir: &Path, param: &'static str, item: &str, depth: usize) -> Result<Entry, Bad> {
    let (negate, text) = match item.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, item),
    };
    let pattern = if text.starts_with('/') {
        if depth >= MAX_FILE_DEPTH {
            return Err(Bad::Other(format!(
                "files nest more than {MAX_FILE_DEPTH} deep"
            )));
        }
        let file = WordFile::open(text, base_dir)
            .map_err(|e| Bad::Other(format!("cannot read the list file: {e}")))?;
        let words = file.words().map_err(Bad::Table)?;
        let entries = compile_file(base_dir, param, file.path(), &words, depth + 1)
            .map_err(|(word, reason)| Bad::Other(format!("{reason} (\"{word}\")")))?;
        Pattern::File(Arc::new(ListFile {
            file,
            base_dir: base_dir.to_path_buf(),
            depth: depth + 1,
            compiled: Mutex::new((words, Arc::new(entries))),
        }))
    } else if text.contains(':') && !text.starts_with('[') {
        Pattern::Table(Table::open(text, base_dir).map_err(Bad::Table)?)
    } else {
        let mut name = text.to_ascii_lowercase();
        crate::address::strip_trailing_dot(&mut name);
        Pattern::Name(name)
    };
    Ok(Entry { negate, pattern })
}

/// The parent-domain keys of `d`, nearest first: `.b.c`, `.c` or, in the
/// parent-matches style, `b.c`, `c`.
pub(crate) fn parent_keys(d: &str, parent_matches: bool) -> impl Iterator<Item = &str> {
    d.match_indices('.').map(
        move |(i, _)| {
            if parent_matches { &d[i + 1..] } else { &d[i..] }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_key_order() {
        let v: Vec<_> = parent_keys("a.b.example", false).collect();
        assert_eq!(v, vec![".b.example", ".example"]);
        let v: Vec<_> = parent_keys("a.b.example", true).collect();
        assert_eq!(v, vec!["b.example", "example"]);
        assert_eq!(parent_keys("localhost", true).count(), 0);
    }
}
