//! `$name` expansion with Postfix's postconf(5) semantics:
//!
//! * `$name`, `${name}` and `$(name)` insert the (recursively expanded)
//!   value of `name`;
//! * `${name?value}` inserts `value` when `name` is non-empty, and
//!   `${name:value}` inserts `value` when `name` is empty; Postfix 3's
//!   `${name?{value1}:{value2}}` form picks one of two;
//! * `$$` is a literal `$` (Postfix's `mac_parse`);
//! * an undefined name expands to empty and is reported to the caller;
//! * a reference cycle is an error naming the chain, never a stack overflow.

/// A `$name` cycle, e.g. `["a", "b", "a"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop(pub Vec<String>);

impl std::fmt::Display for Loop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parameter expansion loop: {}", self.0.join(" -> "))
    }
}

/// The result of expanding one text.
#[derive(Debug, Default)]
pub struct Expanded {
    pub text: String,
    /// Names referenced but not defined (they expanded to empty).
    pub undefined: Vec<String>,
}

/// Looks up the raw (unexpanded) value of a name; None = undefined. It gets
/// the names being expanded, so a value computed by a nested expansion (a
/// derived default) can continue the loop detection.
pub type Lookup<'a> = dyn Fn(&str, &[String]) -> Result<Option<String>, Loop> + 'a;

/// Expands `text`. `stack` holds the names whose values are being expanded
/// (outermost first), so a value referring back to one is caught as a loop.
pub fn expand(text: &str, stack: Vec<String>, lookup: &Lookup<'_>) -> Result<Expanded, Loop> {
    let mut ex = Expander {
        lookup,
        stack,
        undefined: Vec::new(),
    };
    let text = ex.expand(text)?;
    Ok(Expanded {
        text,
        undefined: ex.undefined,
    })
}

/// Every name `text` refers to, without expanding anything (used to decide
/// whether an unknown parameter is a user-defined macro). Names inside
/// conditional text count too.
pub fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        match b.get(j) {
            Some(b'$') => {
                i += 2;
                continue;
            }
            Some(b'{' | b'(') => j += 1,
            _ => {}
        }
        let s = j;
        while j < b.len() && is_name_byte(b[j]) {
            j += 1;
        }
        if j > s {
            out.push(text[s..j].to_string());
        }
        i = j.max(i + 1);
    }
    out.sort();
    out.dedup();
    out
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

struct Expander<'a> {
    lookup: &'a Lookup<'a>,
    /// Names being expanded right now, outermost first: the loop detector.
    stack: Vec<String>,
    undefined: Vec<String>,
}

impl Expander<'_> {
    fn expand(&mut self, text: &str) -> Result<String, Loop> {
        let mut out = String::with_capacity(text.len());
        let b = text.as_bytes();
        let mut i = 0;
        // Literal runs are copied by slice so multibyte text stays intact.
        let mut lit = 0;
        while i < b.len() {
            if b[i] != b'$' {
                i += 1;
                continue;
            }
            out.push_str(&text[lit..i]);
            let next = b.get(i + 1).copied();
            match next {
                Some(b'$') => {
                    out.push('$');
                    i += 2;
                }
                Some(open @ (b'{' | b'(')) => {
                    let close = if open == b'{' { b'}' } else { b')' };
                    match matching(b, i + 1, open, close) {
                        Some(end) => {
                            let inner = &text[i + 2..end];
                            match self.braced(inner)? {
                                Some(v) => out.push_str(&v),
                                // Not a macro after all: keep it verbatim.
                                None => out.push_str(&text[i..=end]),
                            }
                            i = end + 1;
                        }
                        None => {
                            out.push_str(&text[i..]);
                            i = b.len();
                        }
                    }
                }
                Some(c) if is_name_byte(c) => {
                    let mut j = i + 1;
                    while j < b.len() && is_name_byte(b[j]) {
                        j += 1;
                    }
                    let v = self.value(&text[i + 1..j])?;
                    out.push_str(&v);
                    i = j;
                }
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
            lit = i;
        }
        out.push_str(&text[lit..]);
        Ok(out)
    }

    /// The inside of `${...}`; None when it is not a valid macro form.
    fn braced(&mut self, inner: &str) -> Result<Option<String>, Loop> {
        let name_len = inner.bytes().take_while(|&c| is_name_byte(c)).count();
        if name_len == 0 {
            return Ok(None);
        }
        let (name, rest) = inner.split_at(name_len);
        let value = self.value(name)?;
        let Some(op) = rest.chars().next() else {
            return Ok(Some(value));
        };
        if op != '?' && op != ':' {
            return Ok(None);
        }
        let arg = &rest[1..];
        let (when_set, when_empty) = match braced_pair(arg) {
            Some((a, b)) if op == '?' => (Some(a), b),
            Some((a, _)) => (None, Some(a)),
            None if op == '?' => (Some(arg), None),
            None => (None, Some(arg)),
        };
        let chosen = if value.is_empty() {
            when_empty
        } else {
            when_set
        };
        match chosen {
            Some(t) => self.expand(t).map(Some),
            None => Ok(Some(String::new())),
        }
    }

    fn value(&mut self, name: &str) -> Result<String, Loop> {
        if let Some(pos) = self.stack.iter().position(|n| n == name) {
            let mut chain = self.stack[pos..].to_vec();
            chain.push(name.to_string());
            return Err(Loop(chain));
        }
        match (self.lookup)(name, &self.stack)? {
            None => {
                self.undefined.push(name.to_string());
                Ok(String::new())
            }
            Some(raw) => {
                self.stack.push(name.to_string());
                let r = self.expand(&raw);
                self.stack.pop();
                r
            }
        }
    }
}

/// Index of the `close` matching the `open` at `start`.
fn matching(b: &[u8], start: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    for (k, &c) in b.iter().enumerate().skip(start) {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

/// Postfix 3 `{value1}` or `{value1}:{value2}` after `?`/`:`.
fn braced_pair(arg: &str) -> Option<(&str, Option<&str>)> {
    let t = arg.trim_start();
    if !t.starts_with('{') {
        return None;
    }
    let b = t.as_bytes();
    let end = matching(b, 0, b'{', b'}')?;
    let first = &t[1..end];
    let rest = t[end + 1..].trim();
    if rest.is_empty() {
        return Some((first, None));
    }
    let rest = rest.strip_prefix(':')?.trim();
    let rb = rest.as_bytes();
    if !rest.starts_with('{') || matching(rb, 0, b'{', b'}')? != rest.len() - 1 {
        return None;
    }
    Some((first, Some(&rest[1..rest.len() - 1])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(text: &str, vars: &[(&str, &str)]) -> Result<Expanded, Loop> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |n: &str, _: &[String]| Ok(map.get(n).cloned());
        expand(text, Vec::new(), &lookup)
    }

    fn ok(text: &str, vars: &[(&str, &str)]) -> String {
        run(text, vars).unwrap().text
    }

    #[test]
    fn simple_forms() {
        let v = [("a", "A"), ("b", "$a-B"), ("empty", "")];
        assert_eq!(ok("x $a y", &v), "x A y");
        assert_eq!(ok("${a}x", &v), "Ax");
        assert_eq!(ok("$(a)x", &v), "Ax");
        assert_eq!(ok("$b", &v), "A-B");
        assert_eq!(ok("cost $$5", &v), "cost $5");
        assert_eq!(ok("trailing $", &v), "trailing $");
        assert_eq!(ok("héllo $a ü", &v), "héllo A ü");
    }

    #[test]
    fn conditionals() {
        let v = [("a", "A"), ("empty", "")];
        assert_eq!(ok("${a?set}", &v), "set");
        assert_eq!(ok("${empty?set}", &v), "");
        assert_eq!(ok("${a:unset}", &v), "");
        assert_eq!(ok("${empty:unset $a}", &v), "unset A");
        assert_eq!(ok("${a?{yes}:{no}}", &v), "yes");
        assert_eq!(ok("${empty?{yes}:{no}}", &v), "no");
        assert_eq!(ok("${a?{with space $a}}", &v), "with space A");
    }

    #[test]
    fn undefined_is_empty_and_reported() {
        let e = run("x${nope}y", &[]).unwrap();
        assert_eq!(e.text, "xy");
        assert_eq!(e.undefined, vec!["nope"]);
    }

    #[test]
    fn loops_are_errors() {
        let v = [("a", "$b"), ("b", "x ${a}")];
        let err = run("$a", &v).unwrap_err();
        assert_eq!(err.0, vec!["a", "b", "a"]);
        assert_eq!(err.to_string(), "parameter expansion loop: a -> b -> a");
        let self_ref = [("a", "$a")];
        let lookup = |n: &str, _: &[String]| {
            Ok(self_ref
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string()))
        };
        assert!(expand("$a", vec!["a".into()], &lookup).is_err());
    }

    #[test]
    fn finds_references() {
        assert_eq!(references("$a ${b} ${c?$d} $$e"), vec!["a", "b", "c", "d"]);
    }
}
