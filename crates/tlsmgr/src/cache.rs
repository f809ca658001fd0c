//! The smtp-client's session cache: opaque values per destination, each
//! with an expiry, bounded in entries and bytes. When full, expired entries
//! go first, then those closest to expiry.

use std::collections::HashMap;

/// At most this many entries...
pub const MAX_ENTRIES: usize = 10_000;
/// ...and this many bytes of keys and values.
pub const MAX_BYTES: usize = 16 << 20;

#[derive(Debug, Default)]
pub struct SessionCache {
    entries: HashMap<String, (Vec<u8>, i64)>,
    bytes: usize,
}

impl SessionCache {
    pub fn get(&mut self, key: &str, now: i64) -> Option<Vec<u8>> {
        match self.entries.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` until `expires` (already capped by the caller); an
    /// entry that has already expired removes any older one.
    pub fn put(&mut self, key: String, value: Vec<u8>, expires: i64, now: i64) {
        self.remove(&key);
        if expires <= now {
            return;
        }
        let size = key.len() + value.len();
        if self.entries.len() >= MAX_ENTRIES || self.bytes + size > MAX_BYTES {
            self.entries.retain(|_, (_, e)| *e > now);
            self.bytes = self
                .entries
                .iter()
                .map(|(k, (v, _))| k.len() + v.len())
                .sum();
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= MAX_ENTRIES || self.bytes + size > MAX_BYTES)
        {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                self.remove(&k);
            }
        }
        self.bytes += size;
        self.entries.insert(key, (value, expires));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn remove(&mut self, key: &str) {
        if let Some((k, (v, _))) = self.entries.remove_entry(key) {
            self.bytes -= k.len() + v.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_replacement() {
        let mut c = SessionCache::default();
        c.put("a".into(), b"1".to_vec(), 110, 100);
        assert_eq!(c.get("a", 105), Some(b"1".to_vec()));
        c.put("a".into(), b"22".to_vec(), 120, 100);
        assert_eq!(c.get("a", 115), Some(b"22".to_vec()));
        assert_eq!(c.get("a", 120), None);
        assert_eq!(c.len(), 0);
        c.put("b".into(), b"x".to_vec(), 100, 100);
        assert_eq!(c.len(), 0);
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn bounded() {
        let mut c = SessionCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            c.put(format!("k{i}"), vec![0; 10], 1000 + i as i64, 0);
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        // The soonest to expire went first.
        assert_eq!(c.get("k0", 1), None);
        assert!(c.get(&format!("k{}", MAX_ENTRIES + 9), 1).is_some());
        let big = vec![0; MAX_BYTES / 2];
        c.put("big1".into(), big.clone(), 5000, 0);
        c.put("big2".into(), big.clone(), 5001, 0);
        assert!(c.bytes <= MAX_BYTES, "{}", c.bytes);
        assert!(c.get("big2", 1).is_some());
    }
}
