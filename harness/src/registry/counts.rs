//! The registry's ledger: one entry per response, and a running byte total that never goes back.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many responses the ledger keeps; older ones drop out, the running total stays exact.
const MAX_LOG: usize = 10_000;

/// One response the registry sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// `GET` or `HEAD` (or what the client sent, for a refused request).
    pub method: String,
    /// The request target as sent, e.g. `/v2/app/blobs/sha256:...`.
    pub path: String,
    /// The repository the path names, if it names one (`app` in `/v2/app/manifests/v1`).
    pub repo: Option<String>,
    /// The HTTP status sent.
    pub status: u16,
    /// Body bytes handed to the socket (0 for `HEAD`).
    pub bytes: u64,
}

impl Served {
    /// Whether this was a blob (layer or config) rather than a manifest or the API root.
    pub fn is_blob(&self) -> bool {
        self.path.contains("/blobs/")
    }
}

/// A point in the registry's running byte total, from [`Registry::mark`](super::Registry::mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The running byte total then.
    pub(crate) total: u64,
    /// The sequence number the next response got then.
    pub(crate) seq: u64,
}

#[derive(Default)]
pub(crate) struct Counts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    log: VecDeque<Served>,
    /// Sequence number of `log[0]`.
    first_seq: u64,
    total: u64,
}

impl Counts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a response about to be sent, with no bytes yet; returns its sequence number.
    pub(crate) fn begin(&self, served: Served) -> u64 {
        let mut inner = self.lock();
        if inner.log.len() == MAX_LOG {
            inner.log.pop_front();
            inner.first_seq += 1;
        }
        inner.log.push_back(served);
        inner.first_seq + inner.log.len() as u64 - 1
    }

    /// Adds `n` body bytes (negative to take back a chunk that failed) to response `seq`.
    pub(crate) fn add(&self, seq: u64, n: i64) {
        let mut inner = self.lock();
        inner.total = inner.total.saturating_add_signed(n);
        if let Some(index) = seq.checked_sub(inner.first_seq) {
            if let Some(entry) = inner.log.get_mut(index as usize) {
                entry.bytes = entry.bytes.saturating_add_signed(n);
            }
        }
    }

    pub(crate) fn served(&self) -> Vec<Served> {
        self.lock().log.iter().cloned().collect()
    }

    pub(crate) fn bytes_for(&self, repo: &str) -> u64 {
        let inner = self.lock();
        inner
            .log
            .iter()
            .filter(|s| s.repo.as_deref() == Some(repo))
            .map(|s| s.bytes)
            .sum()
    }

    pub(crate) fn total(&self) -> u64 {
        self.lock().total
    }

    pub(crate) fn mark(&self) -> Mark {
        let inner = self.lock();
        Mark {
            total: inner.total,
            seq: inner.first_seq + inner.log.len() as u64,
        }
    }

    /// Responses begun since `mark` that are still in the ledger.
    pub(crate) fn served_since(&self, mark: Mark) -> Vec<Served> {
        let inner = self.lock();
        let skip = mark.seq.saturating_sub(inner.first_seq) as usize;
        inner.log.iter().skip(skip).cloned().collect()
    }

    /// Empties the ledger; the running total (and so every [`Mark`]) is kept.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.first_seq += inner.log.len() as u64;
        inner.log.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(repo: &str) -> Served {
        Served {
            method: "GET".into(),
            path: "/".into(),
            repo: Some(repo.into()),
            status: 200,
            bytes: 0,
        }
    }

    #[test]
    fn totals_survive_reset_and_log_overflow() {
        let counts = Counts::default();
        let a = counts.begin(served("app"));
        counts.add(a, 10);
        counts.add(a, -3);
        assert_eq!(counts.bytes_for("app"), 7);
        counts.reset();
        counts.add(a, 5); // a late chunk for an entry no longer in the ledger
        assert_eq!(counts.total(), 12);
        assert!(counts.served().is_empty());
        for _ in 0..MAX_LOG + 5 {
            let s = counts.begin(served("other"));
            counts.add(s, 1);
        }
        assert_eq!(counts.served().len(), MAX_LOG);
        assert_eq!(counts.bytes_for("other"), MAX_LOG as u64);
        assert_eq!(counts.total(), 12 + MAX_LOG as u64 + 5);
        let mark = counts.mark();
        let s = counts.begin(served("late"));
        counts.add(s, 4);
        assert_eq!(counts.served_since(mark).len(), 1);
        assert_eq!(counts.served_since(mark)[0].bytes, 4);
    }
}
