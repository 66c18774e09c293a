//! Progress of a flash: bytes done, throughput and time left, throttled for the renderer.

use std::time::{Duration, Instant};

/// The stage a flash is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Writing the image's data.
    Write,
    /// Reading it back and comparing.
    Verify,
}

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// The stage.
    pub phase: Phase,
    /// Bytes done in this stage.
    pub done: u64,
    /// Bytes this stage will handle, when known (a packed stream without a bmap is not).
    pub total: Option<u64>,
    /// Average throughput of this stage so far, in bytes per second.
    pub bytes_per_sec: f64,
    /// Estimated time left, when the total is known.
    pub eta: Option<Duration>,
}

/// Counts bytes for one stage and reports at most every 100 ms (and at the end).
pub struct Meter<'a> {
    phase: Phase,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last: Option<Instant>,
    report: &'a dyn Fn(Progress),
}

impl<'a> Meter<'a> {
    /// A meter for `phase`, reporting to `report`.
    pub fn new(phase: Phase, total: Option<u64>, report: &'a dyn Fn(Progress)) -> Meter<'a> {
        Meter {
            phase,
            total,
            done: 0,
            start: Instant::now(),
            last: None,
            report,
        }
    }

    /// Adds `n` bytes done.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100))
        {
            self.last = Some(now);
            (self.report)(self.snapshot(now));
        }
    }

    /// Reports the final state.
    pub fn finish(&mut self) {
        (self.report)(self.snapshot(Instant::now()));
    }

    fn snapshot(&self, now: Instant) -> Progress {
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-6);
        let rate = self.done as f64 / secs;
        let eta = self
            .total
            .filter(|_| rate > 0.0)
            .map(|t| Duration::from_secs_f64(t.saturating_sub(self.done) as f64 / rate));
        Progress {
            phase: self.phase,
            done: self.done,
            total: self.total,
            bytes_per_sec: rate,
            eta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn reports_rate_and_eta() {
        let seen = RefCell::new(Vec::new());
        let cb = |p: Progress| seen.borrow_mut().push(p);
        let mut m = Meter::new(Phase::Write, Some(100), &cb);
        m.add(10);
        m.add(10); // throttled
        std::thread::sleep(Duration::from_millis(20));
        m.finish();
        let seen = seen.borrow();
        assert_eq!(seen.len(), 2);
        let last = seen[1];
        assert_eq!(last.done, 20);
        assert!(last.bytes_per_sec > 0.0);
        assert!(last.eta.unwrap() > Duration::ZERO);
    }
}
