//! The farm's decisions, as pure functions over plain data: whether a failed job runs again,
//! which target may take a job, when a target leaves the run, when a rig leaves rotation, and
//! who is blamed for a device that did not come up. The worker gathers the facts and acts;
//! the rules live here, each with its unit test.

/// Infrastructure failures in a row after which a target leaves the run.
pub const TARGET_FAILURE_LIMIT: usize = 2;

/// What ended a run of a test that did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The machinery: QEMU, flashing, power, the network between harness and device.
    Infrastructure,
    /// The device did not do what the contract says.
    Test,
}

/// Whether a job whose test ended in `failure` runs again, given the retries (after
/// infrastructure failures) and reruns (after test failures) it has left. Bad input never
/// does: it would fail again the same way.
pub fn runs_again(
    failure: Failure,
    retries_left: usize,
    reruns_left: usize,
    bad_input: bool,
) -> bool {
    !bad_input
        && match failure {
            Failure::Infrastructure => retries_left > 0,
            Failure::Test => reruns_left > 0,
        }
}

/// Whether `target` may take a job now: the job is for any target or for this one, and this
/// target has not failed it, unless every target still in the run has (then someone must).
pub fn may_take(owner: Option<&str>, failed_on: &[String], live: &[String], target: &str) -> bool {
    owner.is_none_or(|t| t == target)
        && (!failed_on.iter().any(|t| t == target) || live.iter().all(|t| failed_on.contains(t)))
}

/// The count of infrastructure failures in a row after a job that ended with (`true`) or
/// without one.
pub fn streak(before: usize, infrastructure: bool) -> usize {
    if infrastructure {
        before + 1
    } else {
        0
    }
}

/// Whether a target with `streak` infrastructure failures in a row leaves the run.
pub fn leaves_run(streak: usize) -> bool {
    streak >= TARGET_FAILURE_LIMIT
}

/// What booting the target's known-good image showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownGood {
    /// It booted to SSH: the target works.
    Boots,
    /// It did not boot either: the target is at fault.
    DoesNotBoot,
    /// The image under test is the known-good image: its own failures say the same.
    IsTheImageUnderTest,
    /// The target has no known-good image to try.
    NoneToTry,
}

/// Whether a rig that leaves the run also leaves rotation: only on evidence that the rig is at
/// fault, never because an image under test misbehaved on it.
pub fn leaves_rotation(known_good: KnownGood) -> bool {
    matches!(
        known_good,
        KnownGood::DoesNotBoot | KnownGood::IsTheImageUnderTest
    )
}

/// How a fresh device failed to come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootError {
    /// The device showed it is broken: it panicked in a loop, a setup step failed, it refused
    /// the run's key.
    Misbehaved,
    /// It never answered (SSH never came up), or the machinery failed on the way.
    NoAnswer,
    /// The run's input is wrong (a file a setup step needs is gone).
    BadInput,
}

/// Whether the known-good image must be booted to blame a boot failure of this kind.
pub fn needs_known_good(error: BootError) -> bool {
    error == BootError::NoAnswer
}

/// Who is to blame for a fresh device that did not come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The image under test: a test failure (exit 1).
    Image,
    /// The target or the harness: an infrastructure failure (exit 3), retried elsewhere.
    Infrastructure,
    /// The user's input: the run stops (exit 2).
    BadInput,
}

/// Blames a boot failure on the evidence: what the device showed, and (for a device that
/// never answered) whether the target boots its known-good image.
pub fn blame_boot(error: BootError, known_good: KnownGood) -> Blame {
    match (error, known_good) {
        (BootError::BadInput, _) => Blame::BadInput,
        (BootError::Misbehaved, _) => Blame::Image,
        (BootError::NoAnswer, KnownGood::Boots) => Blame::Image,
        (BootError::NoAnswer, _) => Blame::Infrastructure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_job_runs_again_only_with_a_retry_or_rerun_of_its_kind_left() {
        assert!(runs_again(Failure::Infrastructure, 1, 0, false));
        assert!(!runs_again(Failure::Infrastructure, 0, 5, false));
        assert!(runs_again(Failure::Test, 0, 1, false));
        assert!(!runs_again(Failure::Test, 5, 0, false));
        assert!(!runs_again(Failure::Infrastructure, 3, 3, true));
    }

    #[test]
    fn a_target_takes_its_own_jobs_and_any_others_not_failed_there() {
        let live = names(&["fake-a", "fake-b"]);
        assert!(may_take(None, &[], &live, "fake-a"));
        assert!(may_take(Some("fake-a"), &[], &live, "fake-a"));
        assert!(!may_take(Some("fake-b"), &[], &live, "fake-a"));
        // Failed on fake-a: fake-b gets it while it lives.
        let failed = names(&["fake-a"]);
        assert!(!may_take(None, &failed, &live, "fake-a"));
        assert!(may_take(None, &failed, &live, "fake-b"));
        // Once every live target failed it, anyone may try again.
        assert!(may_take(None, &failed, &names(&["fake-a"]), "fake-a"));
        assert!(may_take(
            None,
            &names(&["fake-a", "fake-b"]),
            &live,
            "fake-a"
        ));
    }

    #[test]
    fn two_infrastructure_failures_in_a_row_take_a_target_out_of_the_run() {
        let one = streak(0, true);
        assert!(!leaves_run(one));
        assert!(leaves_run(streak(one, true)));
        // A job that ends well in between starts the count again.
        assert!(!leaves_run(streak(streak(one, false), true)));
    }

    #[test]
    fn a_rig_leaves_rotation_only_on_evidence_against_it() {
        assert!(leaves_rotation(KnownGood::DoesNotBoot));
        assert!(leaves_rotation(KnownGood::IsTheImageUnderTest));
        assert!(!leaves_rotation(KnownGood::Boots));
        assert!(!leaves_rotation(KnownGood::NoneToTry));
    }

    #[test]
    fn a_boot_failure_is_blamed_on_the_evidence() {
        for kg in [
            KnownGood::Boots,
            KnownGood::DoesNotBoot,
            KnownGood::IsTheImageUnderTest,
            KnownGood::NoneToTry,
        ] {
            assert_eq!(blame_boot(BootError::Misbehaved, kg), Blame::Image);
            assert_eq!(blame_boot(BootError::BadInput, kg), Blame::BadInput);
        }
        assert_eq!(
            blame_boot(BootError::NoAnswer, KnownGood::Boots),
            Blame::Image
        );
        assert_eq!(
            blame_boot(BootError::NoAnswer, KnownGood::DoesNotBoot),
            Blame::Infrastructure
        );
        assert_eq!(
            blame_boot(BootError::NoAnswer, KnownGood::NoneToTry),
            Blame::Infrastructure
        );
        assert!(needs_known_good(BootError::NoAnswer));
        assert!(!needs_known_good(BootError::Misbehaved));
    }
}
