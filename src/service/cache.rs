//! The text-embedding cache: final prompt text → unit embedding, least recently used out.
//!
//! Keyed by model name and the text after templating, so a repeated prompt never reaches
//! the text encoder and two models never share entries.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;

pub type Embedding = Arc<[f32]>;

pub struct TextCache {
    model: String,
    entries: Option<Mutex<LruCache<String, Embedding>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl TextCache {
    /// A cache of `capacity` entries; 0 disables it.
    pub fn new(model: &str, capacity: usize) -> TextCache {
        TextCache {
            model: model.to_string(),
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn key(&self, text: &str) -> String {
        format!("{}\u{0}{}", self.model, text)
    }

    pub fn get(&self, text: &str) -> Option<Embedding> {
        let found = self.entries.as_ref().and_then(|m| {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&self.key(text))
                .cloned()
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn put(&self, text: &str, embedding: Embedding) {
        if let Some(m) = &self.entries {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(self.key(text), embedding);
        }
    }

    pub fn len(&self) -> usize {
        self.entries
            .as_ref()
            .map_or(0, |m| m.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (hits, misses) since start.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_eviction_and_counters() {
        let cache = TextCache::new("m", 2);
        cache.put("a", Arc::from(vec![1.0]));
        cache.put("b", Arc::from(vec![2.0]));
        assert_eq!(cache.get("a").unwrap()[0], 1.0);
        cache.put("c", Arc::from(vec![3.0])); // evicts b, the least recently used
        assert!(cache.get("b").is_none());
        assert_eq!(cache.get("c").unwrap()[0], 3.0);
        assert_eq!(cache.stats(), (2, 1));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = TextCache::new("m", 0);
        cache.put("a", Arc::from(vec![1.0]));
        assert!(cache.get("a").is_none());
        assert!(cache.is_empty());
    }
}
