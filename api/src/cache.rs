//! A small time-bounded cache for what every request reads and rarely changes (API keys, cities):
//! an entry is trusted for its time to live, then read again. Bounded in size: when full, the
//! expired entries go, and if none had expired, everything (misses are never cached, so keys an
//! attacker makes up cannot fill it).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries a cache holds at most.
const MAX_ENTRIES: usize = 10_000;

/// A map whose entries expire `ttl` after they were put.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// A cache trusting entries for `ttl` (zero: never caches).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        // A panic while holding the lock leaves a plain map, still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry for `key`, if put less than the time to live ago.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.lock();
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Stores `value` for `key`.
    pub fn put(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// The entry for `key`, and whether this caller must read it again. A fresh entry is
    /// returned as is (`false`). An expired one is returned too, and stamped fresh again under the
    /// lock, so exactly one of the callers that find it expired is told to read it again
    /// (`true`) while the others go on with the old value until that one puts the new one.
    pub fn get_or_claim_refresh(&self, key: &K) -> Option<(V, bool)> {
        let mut entries = self.lock();
        let (at, value) = entries.get_mut(key)?;
        if at.elapsed() < self.ttl {
            return Some((value.clone(), false));
        }
        *at = Instant::now();
        Some((value.clone(), true))
    }

    /// Changes the entry for `key` in place (its age unchanged), if there is one.
    pub fn update(&self, key: &K, change: impl FnOnce(&mut V)) {
        if let Some((_, value)) = self.lock().get_mut(key) {
            change(value);
        }
    }

    /// Forgets every entry whose value matches.
    pub fn forget(&self, matches: impl Fn(&V) -> bool) {
        self.lock().retain(|_, (_, v)| !matches(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let cache = TtlCache::new(Duration::from_millis(50));
        cache.put(1, "one");
        cache.put(2, "two");
        assert_eq!(cache.get(&1), Some("one"));
        cache.update(&1, |v| *v = "uno");
        assert_eq!(cache.get(&1), Some("uno"));
        cache.forget(|v| *v == "two");
        assert_eq!(cache.get(&2), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&1), None, "expired");
    }

    #[test]
    fn one_caller_of_many_refreshes_an_expired_entry() {
        let cache = TtlCache::new(Duration::from_millis(50));
        assert_eq!(cache.get_or_claim_refresh(&1), None::<(u8, bool)>);
        cache.put(1, 10);
        assert_eq!(cache.get_or_claim_refresh(&1), Some((10, false)));
        std::thread::sleep(Duration::from_millis(60));
        let answers: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| cache.get_or_claim_refresh(&1)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            answers.iter().all(|a| a.map(|(v, _)| v) == Some(10)),
            "{answers:?}"
        );
        assert_eq!(
            answers
                .iter()
                .filter(|a| a.is_some_and(|(_, claimed)| claimed))
                .count(),
            1,
            "exactly one refreshes: {answers:?}"
        );
        cache.put(1, 11);
        assert_eq!(cache.get_or_claim_refresh(&1), Some((11, false)));
    }

    #[test]
    fn a_zero_ttl_caches_nothing_and_the_size_is_bounded() {
        let off = TtlCache::new(Duration::ZERO);
        off.put(1, 1);
        assert_eq!(off.get(&1), None);
        let cache = TtlCache::new(Duration::from_secs(60));
        for i in 0..(MAX_ENTRIES + 5) {
            cache.put(i, i);
        }
        assert!(cache.lock().len() <= MAX_ENTRIES);
        assert_eq!(cache.get(&(MAX_ENTRIES + 4)), Some(MAX_ENTRIES + 4));
    }
}
