//! [`WordFile`]: a file of list entries, what a `/file/name` entry in a
//! Postfix list (`mydestination`, `relay_domains`, ...) stands for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Data, FileSource, Format, TableError, read_logical_lines};

/// One entry of a [`WordFile`] and the line it is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub line: usize,
    pub text: String,
}

/// The entries of a file, separated by commas and whitespace; `#`
/// comment lines and blank lines are skipped. Like a file table, it is
/// re-read when the file changes (checked at most once a second).
#[derive(Clone, Debug)]
pub struct WordFile {
    source: Arc<FileSource>,
}

impl WordFile {
    /// Reads `path` (relative names resolve against `base_dir`).
    pub fn open(path: &str, base_dir: &Path) -> Result<WordFile, TableError> {
        let source = FileSource::open(base_dir.join(path), Format::Words)?;
        Ok(WordFile {
            source: Arc::new(source),
        })
    }

    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// The entries, re-read first if the file changed. The same `Arc`
    /// comes back until the file changes, so callers may cache what they
    /// derive from it.
    pub fn words(&self) -> Result<Arc<Vec<Word>>, TableError> {
        match &*self.source.current()? {
            Data::Words(w) => Ok(Arc::clone(w)),
            _ => Err(TableError::Io {
                path: PathBuf::from(self.path()),
                source: std::io::Error::other("not a word file"),
            }),
        }
    }

    #[cfg(test)]
    fn set_check_interval(&mut self, d: std::time::Duration) {
        if let Some(s) = Arc::get_mut(&mut self.source) {
            s.check_interval = d;
        }
    }
}

/// The entries of a list file: logical lines (comments and blank lines
/// dropped, indented lines continue), split as parameter lists are.
pub(super) fn parse(text: &str) -> Vec<Word> {
    read_logical_lines(text)
        .into_iter()
        .flat_map(|(line, l)| {
            crate::value::split_list(&l)
                .into_iter()
                .map(move |text| Word { line, text })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn words_lines_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay_domains");
        std::fs::write(
            &path,
            "# relays\na.example, b.example\n\n  .c.example\n!d.example\n",
        )
        .unwrap();
        let mut f = WordFile::open("relay_domains", dir.path()).unwrap();
        f.set_check_interval(Duration::ZERO);
        let w = f.words().unwrap();
        let got: Vec<(usize, &str)> = w.iter().map(|w| (w.line, w.text.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "a.example"),
                (2, "b.example"),
                (2, ".c.example"),
                (5, "!d.example")
            ]
        );
        assert!(
            Arc::ptr_eq(&w, &f.words().unwrap()),
            "unchanged file, same words"
        );
        std::fs::write(&path, "e.example\n").unwrap();
        let w = f.words().unwrap();
        assert_eq!(
            w.as_slice(),
            [Word {
                line: 1,
                text: "e.example".into()
            }]
        );
        assert!(WordFile::open("missing", dir.path()).is_err());
    }
}
