//! Sharing the work out over the targets: a suite's tests go in chains (tests that must share
//! a device), each chain is a job, and each target's worker takes the next job it may run.
//! A job that hit an infrastructure failure comes back to the front of the queue, for another
//! target if there is one; a target that is gone hands its own jobs back to the caller.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::report::journal::Slot;
use crate::report::Attempt;
use crate::runner::chains::Chain;

/// A chain to run, with what its earlier attempts left.
#[derive(Debug, Clone)]
pub struct Job {
    /// Unique in the process; its retries and reruns keep it, so that their results replace
    /// the earlier ones in the report.
    pub id: u64,
    /// The chain.
    pub chain: Chain,
    /// The one target that must run it (every target runs every chain), or any.
    pub target: Option<String>,
    /// Retries left after an infrastructure failure.
    pub infra_retries: usize,
    /// Reruns left after a test failure.
    pub reruns: usize,
    /// Targets that failed it; others get it first.
    pub avoid: Vec<String>,
    /// Earlier runs of each of the chain's tests that did not pass.
    pub earlier: Vec<Vec<Attempt>>,
}

impl Job {
    /// Where the result of the chain's test at `pos` goes in the report.
    pub fn slot(&self, pos: usize) -> Slot {
        Slot { job: self.id, pos }
    }
}

impl Job {
    /// A first attempt of `chain`.
    pub fn new(chain: Chain, target: Option<String>, infra_retries: usize, reruns: usize) -> Job {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let earlier = vec![Vec::new(); chain.tests.len()];
        Job {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            chain,
            target,
            infra_retries,
            reruns,
            avoid: Vec::new(),
            earlier,
        }
    }
}

/// The jobs not yet done, shared by the targets' workers.
pub struct Queue {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    queued: VecDeque<Job>,
    running: usize,
    live: Vec<String>,
    stop: Option<String>,
}

impl State {
    fn may_take(&self, job: &Job, target: &str) -> bool {
        super::policy::may_take(job.target.as_deref(), &job.avoid, &self.live, target)
    }
}

impl Queue {
    /// A queue of `jobs` for the `targets` (by name).
    pub fn new(jobs: Vec<Job>, targets: Vec<String>) -> Queue {
        Queue {
            state: Mutex::new(State {
                queued: jobs.into(),
                running: 0,
                live: targets,
                stop: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next job `target` may run; waits while running jobs may still come back. `None`
    /// when nothing is left for it, or on Ctrl-C.
    pub fn next(&self, target: &str) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if crate::interrupt::requested() {
                return None;
            }
            if let Some(i) = state.queued.iter().position(|j| state.may_take(j, target)) {
                state.running += 1;
                return state.queued.remove(i);
            }
            let others_waiting = state
                .queued
                .iter()
                .any(|j| j.target.as_deref().is_none_or(|t| t == target));
            if state.running == 0 && !others_waiting {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_secs(1))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Whether any job is queued or running.
    pub fn has_work(&self) -> bool {
        let state = self.lock();
        !state.queued.is_empty() || state.running > 0
    }

    /// A job taken with [`Queue::next`] is finished.
    pub fn done(&self) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        self.changed.notify_all();
    }

    /// A job taken with [`Queue::next`] goes back to the front, to run again.
    pub fn retry(&self, job: Job) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        state.queued.push_front(job);
        self.changed.notify_all();
    }

    /// `target` is out of the run: returns the jobs nobody can run now (its own, or all that
    /// are left when it was the last target).
    pub fn target_gone(&self, target: &str) -> Vec<Job> {
        let mut state = self.lock();
        state.live.retain(|t| t != target);
        let last = state.live.is_empty();
        let (orphans, keep): (Vec<Job>, Vec<Job>) = state
            .queued
            .drain(..)
            .partition(|j| last || j.target.as_deref() == Some(target));
        state.queued = keep.into();
        self.changed.notify_all();
        orphans
    }

    /// Stops the run after a failure (without `--keep-going`): later tests are skipped with
    /// `why`. The first reason stays.
    pub fn stop(&self, why: String) {
        let mut state = self.lock();
        state.stop.get_or_insert(why);
    }

    /// Why the run stopped, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.lock().stop.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(suite: usize, target: Option<&str>) -> Job {
        Job::new(
            Chain {
                suite,
                tests: vec![0],
            },
            target.map(String::from),
            1,
            0,
        )
    }

    #[test]
    fn a_retried_job_goes_to_another_target_first() {
        let q = Queue::new(
            vec![job(0, None), job(1, None)],
            vec!["a".into(), "b".into()],
        );
        let mut first = q.next("b").unwrap();
        assert_eq!(first.chain.suite, 0);
        first.avoid.push("b".into());
        q.retry(first);
        // b may not take it back while a is alive, so b gets the second job.
        assert_eq!(q.next("b").unwrap().chain.suite, 1);
        assert_eq!(q.next("a").unwrap().chain.suite, 0);
        q.done();
        q.done();
        assert!(q.next("a").is_none());
    }

    #[test]
    fn the_last_target_takes_what_others_failed() {
        let q = Queue::new(vec![job(0, None)], vec!["a".into(), "b".into()]);
        let mut j = q.next("b").unwrap();
        j.avoid.push("b".into());
        q.retry(j);
        assert!(q.target_gone("a").is_empty());
        assert_eq!(q.next("b").unwrap().chain.suite, 0);
    }

    #[test]
    fn a_gone_target_hands_back_its_own_jobs_and_the_last_one_all() {
        let q = Queue::new(
            vec![job(0, Some("a")), job(0, Some("b")), job(1, None)],
            vec!["a".into(), "b".into()],
        );
        let orphans = q.target_gone("a");
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].target.as_deref(), Some("a"));
        assert_eq!(q.target_gone("b").len(), 2);
    }

    #[test]
    fn an_idle_target_waits_for_a_running_job_that_may_come_back() {
        let q = std::sync::Arc::new(Queue::new(vec![job(0, None)], vec!["a".into(), "b".into()]));
        let j = q.next("a").unwrap();
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || q2.next("b").map(|j| j.chain.suite));
        std::thread::sleep(Duration::from_millis(100));
        q.retry(j);
        assert_eq!(waiter.join().unwrap(), Some(0));
    }
}
