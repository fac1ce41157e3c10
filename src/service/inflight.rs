//! Prompts being encoded right now, so a prompt that several concurrent requests need is
//! encoded once: the first request claims it and publishes its embedding; the others wait
//! for it. A claim that ends without publishing (the encode failed, or its request went
//! away) lets the waiters encode the prompt themselves.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::cache::Embedding;

type Slot = watch::Receiver<Option<Embedding>>;

#[derive(Default)]
pub struct InFlight {
    encoding: Mutex<HashMap<String, Slot>>,
}

/// The prompts one request encodes for everyone.
pub struct Claim<'a> {
    owner: &'a InFlight,
    senders: HashMap<String, watch::Sender<Option<Embedding>>>,
    /// The claimed prompts, in the order given.
    pub texts: Vec<String>,
}

impl InFlight {
    /// Claims the prompts nobody is encoding; returns the claim and, for the others, where
    /// their embeddings will appear.
    pub fn claim(&self, texts: &[String]) -> (Claim<'_>, Vec<(String, Slot)>) {
        let mut encoding = self.encoding.lock().unwrap_or_else(|p| p.into_inner());
        let mut claim = Claim {
            owner: self,
            senders: HashMap::new(),
            texts: Vec::new(),
        };
        let mut waits = Vec::new();
        for text in texts {
            if let Some(slot) = encoding.get(text) {
                waits.push((text.clone(), slot.clone()));
            } else {
                let (tx, rx) = watch::channel(None);
                encoding.insert(text.clone(), rx);
                claim.senders.insert(text.clone(), tx);
                claim.texts.push(text.clone());
            }
        }
        (claim, waits)
    }

    fn release(&self, text: &str) {
        self.encoding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(text);
    }
}

impl Claim<'_> {
    /// Hands the embedding of a claimed prompt to everyone waiting for it.
    pub fn publish(&mut self, text: &str, embedding: Embedding) {
        if let Some(tx) = self.senders.remove(text) {
            tx.send_replace(Some(embedding));
            self.owner.release(text);
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        // Unpublished prompts: the senders drop with the claim, and the waiters see it.
        for text in self.senders.keys() {
            self.owner.release(text);
        }
    }
}

/// Waits for a prompt another request is encoding; `None` when that request gave up.
pub async fn wait(mut slot: Slot) -> Option<Embedding> {
    loop {
        if let Some(e) = slot.borrow_and_update().clone() {
            return Some(e);
        }
        if slot.changed().await.is_err() {
            return slot.borrow().clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn one_request_encodes_a_prompt_and_the_others_wait_for_it() {
        let inflight = InFlight::default();
        let texts = vec!["cat".to_string(), "dog".to_string()];
        let (mut first, waits) = inflight.claim(&texts);
        assert_eq!(first.texts, texts);
        assert!(waits.is_empty());
        let (second, waits) = inflight.claim(&["dog".to_string(), "car".to_string()]);
        assert_eq!(second.texts, ["car"]);
        assert_eq!(waits.len(), 1);
        let (_, dog) = waits.into_iter().next().unwrap();
        let embedding: Embedding = Arc::from(vec![1.0f32, 0.0]);
        first.publish("dog", embedding.clone());
        assert_eq!(wait(dog).await, Some(embedding));
        // "cat" was never published: its waiters are told, and it can be claimed again.
        let (_, waits) = inflight.claim(&["cat".to_string()]);
        let (_, cat) = waits.into_iter().next().unwrap();
        drop(first);
        assert_eq!(wait(cat).await, None);
        let (again, _) = inflight.claim(&["cat".to_string()]);
        assert_eq!(again.texts, ["cat"]);
    }
}
