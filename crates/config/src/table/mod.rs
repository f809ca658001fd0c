//! Postfix-style lookup tables, read straight from their text files (no
//! postmap step) and reloaded when the file changes.
//!
//! | spec | contents |
//! |---|---|
//! | `hash:PATH`, `texthash:PATH` (also `btree:`, `lmdb:`, `cdb:`, `dbm:`) | `key value` lines; keys case-insensitive |
//! | `cidr:PATH` | `network/prefix result` lines, first match wins |
//! | `regexp:PATH`, `pcre:PATH` | `/pattern/flags result`, `!/pattern/`, `if`/`endif` |
//! | `inline:{ k=v, { k = v w } }` | the table in the spec itself |
//! | `static:value`, `static:{ v w }` | answers every key |
//! | `unix:passwd.byname` | the system password file |
//!
//! A `proxy:` prefix is accepted and ignored (there is no proxymap). Text
//! files follow Postfix's rules: `#` comments, blank lines, and a line that
//! starts with whitespace continues the previous one. Relative paths resolve
//! against the configuration directory.
//!
//! File-backed tables look at the file's inode, size and mtime at most once
//! per second and re-read it when any changed; a re-read that fails makes
//! lookups fail (the caller defers mail) until the file is fixed.
//! [`WordFile`] (a `/file/name` entry in a Postfix list) reloads the same way.
//!
//! A table file that cannot be read when the table is opened (not there
//! yet, say the default `hash:/etc/aliases` on a machine without one) does
//! not stop the daemon, as in Postfix (dict_surrogate): the table is opened
//! as a surrogate that logs `warning: hash:/etc/aliases is unavailable.
//! open database /etc/aliases: No such file or directory` once, fails every
//! lookup with [`TableError::Unavailable`] (a configuration error: smtpd
//! answers `451 4.3.5 Server configuration error`), and reads the file as
//! soon as it appears. Everything that does not consult the table works.
//! A syntax error in a file that is there is still an error at open.

pub(crate) mod cidr;
mod regexp;
mod words;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use cidr::{Cidr, NetworkList};
pub use words::{Word, WordFile};

use cidr::CidrTable;
use regexp::RegexpTable;

/// Errors opening or reading a table; file errors name file and line.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("unsupported dictionary type \"{kind}\" in table \"{spec}\"")]
    UnknownType { spec: String, kind: String },
    #[error("bad table \"{spec}\": {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("table \"{spec}\": lookup failed: {reason}")]
    Lookup { spec: String, reason: String },
    /// The table's file could not be read when it was opened and is still
    /// not there: a configuration error, not a passing failure.
    #[error("{spec} is unavailable. open database {}: {reason}", path.display())]
    Unavailable {
        spec: String,
        path: PathBuf,
        reason: String,
    },
}

impl TableError {
    /// Whether the error is the configuration's (a table that is not
    /// there) rather than a passing failure of a lookup.
    pub fn is_configuration_error(&self) -> bool {
        matches!(self, TableError::Unavailable { .. })
    }
}

/// Plain-text formats that Postfix indexes with postmap; Postern reads the
/// source file directly.
const TEXT_TYPES: &[&str] = &["hash", "texthash", "btree", "lmdb", "cdb", "dbm"];

pub(crate) fn known_type(kind: &str) -> bool {
    TEXT_TYPES.contains(&kind)
        || matches!(
            kind,
            "cidr" | "regexp" | "pcre" | "inline" | "static" | "unix" | "proxy"
        )
}

/// Splits `type:rest`, dropping any `proxy:` wrappers.
fn split_spec(spec: &str) -> Result<(&str, &str), TableError> {
    let mut s = spec.trim();
    loop {
        let (kind, rest) = s.split_once(':').ok_or_else(|| TableError::BadSpec {
            spec: spec.to_string(),
            reason: "expected type:name".into(),
        })?;
        if kind == "proxy" {
            s = rest;
            continue;
        }
        if !known_type(kind) {
            return Err(TableError::UnknownType {
                spec: spec.to_string(),
                kind: kind.to_string(),
            });
        }
        return Ok((kind, rest));
    }
}

/// Validates a spec without touching the file system (used when the
/// configuration is loaded, since tables may be created later).
pub fn check_spec(spec: &str) -> Result<(), TableError> {
    let (kind, rest) = split_spec(spec)?;
    match kind {
        "inline" => parse_inline(spec, rest).map(drop),
        "unix" => unix_map(spec, rest).map(drop),
        "static" => Ok(()),
        _ if rest.is_empty() => Err(TableError::BadSpec {
            spec: spec.to_string(),
            reason: "missing file name".into(),
        }),
        _ => Ok(()),
    }
}

/// One open lookup table. Cloning shares it; lookups take `&self` and may
/// come from many threads.
#[derive(Clone, Debug)]
pub struct Table {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    spec: String,
    source: Source,
}

#[derive(Debug)]
enum Source {
    Static(String),
    Inline(HashMap<String, String>),
    File(FileSource),
    UnixPasswd,
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Hash,
    Aliases,
    Cidr,
    Regexp {
        pcre: bool,
    },
    /// The words of a [`WordFile`].
    Words,
}

#[derive(Debug)]
struct FileSource {
    /// The table's spec, for the surrogate's errors.
    spec: String,
    path: PathBuf,
    format: Format,
    /// How often the file is stat()ed; a second keeps lookups cheap.
    check_interval: Duration,
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    /// The file's contents, or why it could not be read at open (the
    /// surrogate: every lookup fails until the file appears).
    data: Result<Arc<Data>, String>,
    stamp: Option<Stamp>,
    checked: Instant,
}

/// What identifies a version of a file without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: Option<std::time::SystemTime>,
}

#[derive(Debug)]
enum Data {
    Map(HashMap<String, String>),
    Cidr(CidrTable),
    Regexp(RegexpTable),
    Words(Arc<Vec<Word>>),
}

impl Table {
    /// Opens `type:name`; relative file names resolve against `base_dir`.
    pub fn open(spec: &str, base_dir: &Path) -> Result<Table, TableError> {
        Self::open_with(spec, base_dir, false)
    }

    /// Like [`Table::open`], but `hash:`-style files are in aliases(5)
    /// format: `name: value`.
    pub fn open_aliases(spec: &str, base_dir: &Path) -> Result<Table, TableError> {
        Self::open_with(spec, base_dir, true)
    }

    fn open_with(spec: &str, base_dir: &Path, aliases: bool) -> Result<Table, TableError> {
        let (kind, rest) = split_spec(spec)?;
        let source = match kind {
            "static" => Source::Static(strip_braces(rest).to_string()),
            "inline" => Source::Inline(parse_inline(spec, rest)?),
            "unix" => unix_map(spec, rest)?,
            _ => {
                let format = match kind {
                    "cidr" => Format::Cidr,
                    "regexp" => Format::Regexp { pcre: false },
                    "pcre" => Format::Regexp { pcre: true },
                    _ if aliases => Format::Aliases,
                    _ => Format::Hash,
                };
                if rest.is_empty() {
                    return Err(TableError::BadSpec {
                        spec: spec.to_string(),
                        reason: "missing file name".into(),
                    });
                }
                Source::File(FileSource::open_table(spec, base_dir.join(rest), format)?)
            }
        };
        Ok(Table {
            inner: Arc::new(Inner {
                spec: spec.to_string(),
                source,
            }),
        })
    }

    /// The spec this table was opened with.
    pub fn spec(&self) -> &str {
        &self.inner.spec
    }

    /// A pattern table (regexp, pcre, cidr): it answers whole keys only,
    /// never the partial keys (`@domain`, `.parent`, `user@`) of Postfix's
    /// DICT_FLAG_FIXED lookups.
    pub fn is_pattern(&self) -> bool {
        match &self.inner.source {
            Source::File(f) => matches!(f.format, Format::Cidr | Format::Regexp { .. }),
            _ => false,
        }
    }

    /// The file behind the table, if any.
    pub fn path(&self) -> Option<&Path> {
        match &self.inner.source {
            Source::File(f) => Some(&f.path),
            _ => None,
        }
    }

    /// Looks `key` up; `Ok(None)` is "not found".
    pub fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        match &self.inner.source {
            Source::Static(v) => Ok(Some(v.clone())),
            Source::Inline(m) => Ok(m.get(&key.to_lowercase()).cloned()),
            Source::UnixPasswd => lookup_passwd(&self.inner.spec, key),
            Source::File(f) => {
                let data = f.current()?;
                Ok(match &*data {
                    Data::Map(m) => m.get(&key.to_lowercase()).cloned(),
                    Data::Cidr(t) => t.lookup(key),
                    Data::Regexp(t) => t.lookup(key),
                    // Only a WordFile holds words, and it has no keys.
                    Data::Words(_) => None,
                })
            }
        }
    }

    /// Every key and value of a `hash:`-style, `inline:` table, for a
    /// reader that must see them all at start (dkim_key_table's keys);
    /// `None` for tables whose keys cannot be listed (patterns, static:,
    /// unix:).
    pub fn entries(&self) -> Result<Option<Vec<(String, String)>>, TableError> {
        let map = |m: &HashMap<String, String>| {
            let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort();
            v
        };
        match &self.inner.source {
            Source::Inline(m) => Ok(Some(map(m))),
            Source::File(f) => match &*f.current()? {
                Data::Map(m) => Ok(Some(map(m))),
                _ => Ok(None),
            },
            Source::Static(_) | Source::UnixPasswd => Ok(None),
        }
    }

    #[cfg(test)]
    fn set_check_interval(&mut self, d: Duration) {
        if let Some(inner) = Arc::get_mut(&mut self.inner)
            && let Source::File(f) = &mut inner.source
        {
            f.check_interval = d;
        }
    }
}

impl FileSource {
    /// Reads a file that must be there (a [`WordFile`]).
    fn open(path: PathBuf, format: Format) -> Result<FileSource, TableError> {
        let (data, stamp) = load(&path, format)?;
        Ok(FileSource::new(
            path.display().to_string(),
            path,
            format,
            Ok(Arc::new(data)),
            Some(stamp),
        ))
    }

    /// Reads a table's file, or makes the surrogate of one that cannot
    /// be read (see the module documentation).
    fn open_table(spec: &str, path: PathBuf, format: Format) -> Result<FileSource, TableError> {
        let (data, stamp) = match load(&path, format) {
            Ok((data, stamp)) => (Ok(Arc::new(data)), Some(stamp)),
            Err(TableError::Io { source, .. }) => {
                let reason = source.to_string();
                let e = TableError::Unavailable {
                    spec: spec.to_string(),
                    path: path.clone(),
                    reason: reason.clone(),
                };
                tracing::warn!("{e}");
                (Err(reason), None)
            }
            Err(e) => return Err(e),
        };
        Ok(FileSource::new(spec.to_string(), path, format, data, stamp))
    }

    fn new(
        spec: String,
        path: PathBuf,
        format: Format,
        data: Result<Arc<Data>, String>,
        stamp: Option<Stamp>,
    ) -> FileSource {
        FileSource {
            spec,
            path,
            format,
            check_interval: Duration::from_secs(1),
            state: Mutex::new(FileState {
                data,
                stamp,
                checked: Instant::now(),
            }),
        }
    }

    /// The data, re-read first if the file changed since the last check.
    fn current(&self) -> Result<Arc<Data>, TableError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // A surrogate looks for its file at every lookup: each process then
        // uses the table from the first lookup after the file appears.
        if st.data.is_err() || st.checked.elapsed() >= self.check_interval {
            st.checked = Instant::now();
            match (stamp(&self.path), &st.data) {
                // Still not there: the surrogate keeps failing.
                (Err(_), Err(_)) => {}
                (now, _) => {
                    let now = now?;
                    if st.stamp.as_ref() != Some(&now) {
                        // On failure the old stamp stays, so the next check
                        // retries.
                        let (data, stamp) = load(&self.path, self.format)?;
                        tracing::info!("table {}: reloaded", self.path.display());
                        st.data = Ok(Arc::new(data));
                        st.stamp = Some(stamp);
                    }
                }
            }
        }
        st.data
            .as_ref()
            .map(Arc::clone)
            .map_err(|reason| TableError::Unavailable {
                spec: self.spec.clone(),
                path: self.path.clone(),
                reason: reason.clone(),
            })
    }
}

fn stamp(path: &Path) -> Result<Stamp, TableError> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Stamp {
        ino: md.ino(),
        size: md.len(),
        mtime: md.modified().ok(),
    })
}

fn load(path: &Path, format: Format) -> Result<(Data, Stamp), TableError> {
    // Stamp first: a write racing with the read is then seen as a change.
    let stamp = stamp(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let data = match format {
        Format::Hash => Data::Map(parse_map(path, &text, false)?),
        Format::Aliases => Data::Map(parse_map(path, &text, true)?),
        Format::Cidr => Data::Cidr(CidrTable::parse(path, &text)?),
        Format::Regexp { pcre } => Data::Regexp(RegexpTable::parse(path, &text, pcre)?),
        Format::Words => Data::Words(Arc::new(words::parse(&text))),
    };
    Ok((data, stamp))
}

/// Postfix's logical lines: drops comments and blank lines, joins lines that
/// start with whitespace onto the previous one. Yields (first line number,
/// text).
pub(crate) fn read_logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let continues = raw.starts_with([' ', '\t']);
        match out.last_mut() {
            Some((_, prev)) if continues => {
                prev.push(' ');
                prev.push_str(trimmed);
            }
            _ => out.push((i + 1, trimmed.to_string())),
        }
    }
    out
}

/// `key value` (or aliases(5) `key: value`) files.
fn parse_map(
    path: &Path,
    text: &str,
    aliases: bool,
) -> Result<HashMap<String, String>, TableError> {
    let mut map = HashMap::new();
    for (line, l) in read_logical_lines(text) {
        let split = if aliases {
            l.split_once(':')
        } else {
            l.split_once(char::is_whitespace)
        };
        let (key, value) = match split {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => (k.trim(), v.trim()),
            _ => {
                let want = if aliases {
                    "name: value"
                } else {
                    "key whitespace value"
                };
                return Err(TableError::Syntax {
                    path: path.to_path_buf(),
                    line,
                    reason: format!("expected format: {want}, got \"{l}\""),
                });
            }
        };
        let key = key.to_lowercase();
        if map.contains_key(&key) {
            // postmap keeps the first entry and warns; so do we.
            tracing::warn!("{}:{line}: duplicate entry: \"{key}\"", path.display());
            continue;
        }
        map.insert(key, value.to_string());
    }
    Ok(map)
}

/// `{ text }` -> `text`; other text is returned trimmed.
fn strip_braces(s: &str) -> &str {
    let t = s.trim();
    match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        Some(inner) => inner.trim(),
        None => t,
    }
}

/// Postfix 3 `inline:{ key=value, { key = value with spaces } }`.
fn parse_inline(spec: &str, rest: &str) -> Result<HashMap<String, String>, TableError> {
    let bad = |reason: String| TableError::BadSpec {
        spec: spec.to_string(),
        reason,
    };
    let t = rest.trim();
    let body = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| bad("expected inline:{ key=value, ... }".into()))?;
    let mut map = HashMap::new();
    for item in crate::value::split_list(body) {
        let item = strip_braces(&item);
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("missing '=' in \"{item}\"")))?;
        let k = k.trim().to_lowercase();
        if k.is_empty() {
            return Err(bad(format!("empty key in \"{item}\"")));
        }
        map.entry(k).or_insert_with(|| v.trim().to_string());
    }
    Ok(map)
}

fn unix_map(spec: &str, rest: &str) -> Result<Source, TableError> {
    match rest {
        "passwd.byname" => Ok(Source::UnixPasswd),
        _ => Err(TableError::BadSpec {
            spec: spec.to_string(),
            reason: "only unix:passwd.byname is supported".into(),
        }),
    }
}

/// The passwd(5) line for a user, as Postfix's unix:passwd.byname returns.
fn lookup_passwd(spec: &str, key: &str) -> Result<Option<String>, TableError> {
    match nix::unistd::User::from_name(key) {
        Ok(None) => Ok(None),
        Ok(Some(u)) => Ok(Some(format!(
            "{}:{}:{}:{}:{}:{}:{}",
            u.name,
            u.passwd.to_string_lossy(),
            u.uid,
            u.gid,
            u.gecos.to_string_lossy(),
            u.dir.display(),
            u.shell.display()
        ))),
        Err(e) => Err(TableError::Lookup {
            spec: spec.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// An ordered list of tables, e.g. `hash:aliases, regexp:/x`: the first
/// table with an answer wins; a failing table stops the search (the caller
/// should defer rather than act on a partial answer).
#[derive(Clone, Debug, Default)]
pub struct Maps {
    tables: Vec<Table>,
}

impl Maps {
    /// Opens each spec in order.
    pub fn open(specs: &[String], base_dir: &Path) -> Result<Maps, TableError> {
        let tables = specs
            .iter()
            .map(|s| Table::open(s, base_dir))
            .collect::<Result<_, _>>()?;
        Ok(Maps { tables })
    }

    /// Tables opened one by one (some in aliases(5) syntax, say).
    pub fn from_tables(tables: Vec<Table>) -> Maps {
        Maps { tables }
    }

    /// Like [`Maps::open`] with aliases(5) syntax for text files.
    pub fn open_aliases(specs: &[String], base_dir: &Path) -> Result<Maps, TableError> {
        let tables = specs
            .iter()
            .map(|s| Table::open_aliases(s, base_dir))
            .collect::<Result<_, _>>()?;
        Ok(Maps { tables })
    }

    pub fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        for t in &self.tables {
            if let Some(v) = t.lookup(key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    pub fn tables(&self) -> &[Table] {
        &self.tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn hash_file_format() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "transport",
            "# comment\n\nExample.COM   smtp:[mx.example.com]:25\nlong.org relay:a,\n   b\n",
        );
        for kind in ["hash", "texthash", "lmdb"] {
            let t = Table::open(&format!("{kind}:transport"), dir.path()).unwrap();
            assert_eq!(
                t.lookup("example.com").unwrap().as_deref(),
                Some("smtp:[mx.example.com]:25")
            );
            assert_eq!(
                t.lookup("EXAMPLE.com").unwrap().as_deref(),
                Some("smtp:[mx.example.com]:25")
            );
            assert_eq!(t.lookup("long.org").unwrap().as_deref(), Some("relay:a, b"));
            assert_eq!(t.lookup("nope").unwrap(), None);
        }
    }

    #[test]
    fn hash_key_without_value_is_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t", "a b\n\nlonely\n");
        let e = Table::open("hash:t", dir.path()).unwrap_err();
        let want = format!(
            "{}:3: expected format: key whitespace value, got \"lonely\"",
            dir.path().join("t").display()
        );
        assert_eq!(e.to_string(), want);
    }

    #[test]
    fn aliases_format() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "aliases",
            "postmaster: root\nroot:  alice,\n  bob@example.com\nlist: :include:/etc/list\n",
        );
        let t = Table::open_aliases("hash:aliases", dir.path()).unwrap();
        assert_eq!(t.lookup("Postmaster").unwrap().as_deref(), Some("root"));
        assert_eq!(
            t.lookup("root").unwrap().as_deref(),
            Some("alice, bob@example.com")
        );
        assert_eq!(
            t.lookup("list").unwrap().as_deref(),
            Some(":include:/etc/list")
        );
        write(dir.path(), "bad", "root alice\n");
        let e = Table::open_aliases("hash:bad", dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .ends_with(":1: expected format: name: value, got \"root alice\""),
            "{e}"
        );
    }

    #[test]
    fn reloads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t", "a 1\n");
        let mut t = Table::open("hash:t", dir.path()).unwrap();
        t.set_check_interval(Duration::ZERO);
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("1"));
        write(dir.path(), "t", "a 22\nb 3\n");
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("22"));
        assert_eq!(t.lookup("b").unwrap().as_deref(), Some("3"));
        // A broken rewrite fails lookups until it is fixed.
        write(dir.path(), "t", "a\n");
        assert!(matches!(
            t.lookup("a"),
            Err(TableError::Syntax { line: 1, .. })
        ));
        write(dir.path(), "t", "a 4444\n");
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("4444"));
        // Replaced by rename (new inode).
        write(dir.path(), "t.new", "a 5\n");
        std::fs::rename(dir.path().join("t.new"), dir.path().join("t")).unwrap();
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("5"));
    }

    #[test]
    fn a_missing_file_is_a_surrogate_until_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Table::open_aliases("hash:aliases", dir.path()).unwrap();
        t.set_check_interval(Duration::ZERO);
        let e = t.lookup("postmaster").unwrap_err();
        assert!(e.is_configuration_error());
        assert_eq!(
            e.to_string(),
            format!(
                "hash:aliases is unavailable. open database {}: No such file or directory (os error 2)",
                dir.path().join("aliases").display()
            )
        );
        // Maps stop at the failing table; a table before it still answers.
        let m = Maps::open(
            &[
                "inline:{ root=admin }".to_string(),
                "hash:missing".to_string(),
            ],
            dir.path(),
        )
        .unwrap();
        assert_eq!(m.lookup("root").unwrap().as_deref(), Some("admin"));
        assert!(m.lookup("other").unwrap_err().is_configuration_error());
        // A syntax error appearing with the file is reported as such, and the
        // fixed file is used.
        write(dir.path(), "aliases", "postmaster root\n");
        assert!(matches!(
            t.lookup("postmaster"),
            Err(TableError::Syntax { line: 1, .. })
        ));
        write(dir.path(), "aliases", "postmaster: root\n");
        assert_eq!(t.lookup("postmaster").unwrap().as_deref(), Some("root"));
        // A syntax error in a file that is there at open stays an error.
        write(dir.path(), "bad", "lonely\n");
        assert!(matches!(
            Table::open("hash:bad", dir.path()),
            Err(TableError::Syntax { .. })
        ));
    }

    #[test]
    fn reload_check_is_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t", "a 1\n");
        let t = Table::open("hash:t", dir.path()).unwrap();
        write(dir.path(), "t", "a 22\n");
        // Within a second of opening the old contents are still served.
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("1"));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("22"));
    }

    #[test]
    fn cidr_and_regexp_files_reload() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "c", "10.0.0.0/8 A\n[2001:db8::]/32 B\n");
        let mut c = Table::open("cidr:c", dir.path()).unwrap();
        c.set_check_interval(Duration::ZERO);
        assert_eq!(c.lookup("10.9.9.9").unwrap().as_deref(), Some("A"));
        assert_eq!(c.lookup("2001:db8::1").unwrap().as_deref(), Some("B"));
        write(dir.path(), "c", "10.0.0.0/8 changed\n");
        assert_eq!(c.lookup("10.9.9.9").unwrap().as_deref(), Some("changed"));

        write(dir.path(), "r", "/^(.*)@old\\.com$/ $1@new.com\n");
        let mut r = Table::open("pcre:r", dir.path()).unwrap();
        r.set_check_interval(Duration::ZERO);
        assert_eq!(r.lookup("x@old.com").unwrap().as_deref(), Some("x@new.com"));
        write(dir.path(), "r", "/^(.*)@old\\.com$/ $1@newer.com\n");
        assert_eq!(
            r.lookup("x@old.com").unwrap().as_deref(),
            Some("x@newer.com")
        );
        let r2 = Table::open("regexp:r", dir.path()).unwrap();
        assert_eq!(
            r2.lookup("X@OLD.COM").unwrap().as_deref(),
            Some("X@newer.com")
        );
    }

    #[test]
    fn inline_and_static() {
        let t = Table::open("inline:{ a=1, B=2, { c = three four } }", Path::new("/")).unwrap();
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("1"));
        assert_eq!(t.lookup("b").unwrap().as_deref(), Some("2"));
        assert_eq!(t.lookup("C").unwrap().as_deref(), Some("three four"));
        assert_eq!(t.lookup("d").unwrap(), None);
        assert!(Table::open("inline:{ a }", Path::new("/")).is_err());
        assert!(Table::open("inline:a=b", Path::new("/")).is_err());

        let s = Table::open("static:OK", Path::new("/")).unwrap();
        assert_eq!(s.lookup("anything").unwrap().as_deref(), Some("OK"));
        let s = Table::open("static:{ REJECT go away }", Path::new("/")).unwrap();
        assert_eq!(s.lookup("x").unwrap().as_deref(), Some("REJECT go away"));
    }

    #[test]
    fn spec_errors() {
        let e = Table::open("nosuch:/x", Path::new("/")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported dictionary type \"nosuch\" in table \"nosuch:/x\""
        );
        assert!(matches!(
            Table::open("justaname", Path::new("/")),
            Err(TableError::BadSpec { .. })
        ));
        // A missing file is a surrogate, not an error at open.
        let t = Table::open("hash:/nonexistent/postern/x", Path::new("/")).unwrap();
        assert!(t.lookup("a").unwrap_err().is_configuration_error());
        assert!(check_spec("proxy:unix:passwd.byname").is_ok());
        assert!(check_spec("hash:/does/not/exist/yet").is_ok());
        assert!(check_spec("unix:group.byname").is_err());
    }

    #[test]
    fn unix_passwd() {
        let t = Table::open("proxy:unix:passwd.byname", Path::new("/")).unwrap();
        let root = t.lookup("root").unwrap().unwrap();
        assert!(root.starts_with("root:"), "{root}");
        assert_eq!(t.lookup("no-such-user-postern").unwrap(), None);
    }

    #[test]
    fn maps_first_hit_wins() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "x from-a\n");
        let m = Maps::open(
            &[
                "hash:a".to_string(),
                "inline:{ x=from-inline, y=from-inline }".to_string(),
                "static:fallback".to_string(),
            ],
            dir.path(),
        )
        .unwrap();
        assert_eq!(m.lookup("x").unwrap().as_deref(), Some("from-a"));
        assert_eq!(m.lookup("y").unwrap().as_deref(), Some("from-inline"));
        assert_eq!(m.lookup("z").unwrap().as_deref(), Some("fallback"));
        assert!(Maps::default().lookup("x").unwrap().is_none());
    }

    #[test]
    fn table_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Table>();
        assert_send_sync::<Maps>();
        assert_send_sync::<NetworkList>();
    }
}
