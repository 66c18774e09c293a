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

/// The device a target holds, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    /// The suite whose fresh boot it is in; `None`: no device fit for a test.
    pub suite: Option<usize>,
    /// No test has touched it since that boot.
    pub pristine: bool,
    /// It was booted without the run's key (for a test with `ssh_key: false`).
    pub keyless: bool,
    /// A test left its `config.json` other than the boot set it (an `independent` suite).
    pub changed: bool,
}

/// What a test asks of the device it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    /// The test's suite.
    pub suite: usize,
    /// The suite boots a fresh device of its own (`fresh` in `suite.yaml`).
    pub suite_fresh: bool,
    /// The test wants a device booted for it (`fresh: true` or `ssh_key: false`).
    pub own_device: bool,
    /// The test runs without the run's key (`ssh_key: false`).
    pub keyless: bool,
}

/// Whether a test must boot a fresh device before it runs on `held`. A device booted without
/// the run's key serves only the test it was booted for, and a keyless test never gets a
/// device that has the key.
pub fn needs_boot(held: Held, wants: Wants) -> bool {
    let other_key = held.keyless != wants.keyless;
    match held.suite {
        None => true,
        Some(s) if s != wants.suite => wants.suite_fresh || other_key,
        Some(_) => other_key || (!held.pristine && (wants.own_device || held.changed)),
    }
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

    #[test]
    fn a_device_without_the_key_serves_only_its_own_test() {
        let plain = Wants {
            suite: 0,
            suite_fresh: true,
            own_device: false,
            keyless: false,
        };
        let keyless = Wants {
            own_device: true,
            keyless: true,
            ..plain
        };
        let booted = |keyless| Held {
            suite: Some(0),
            pristine: true,
            keyless,
            changed: false,
        };
        let used = |keyless| Held {
            pristine: false,
            ..booted(keyless)
        };
        // Nothing held: boot.
        assert!(needs_boot(Held::default(), plain));
        // A pristine device with the key serves a plain test, not a keyless one.
        assert!(!needs_boot(booted(false), plain));
        assert!(needs_boot(booted(false), keyless));
        // A pristine keyless device serves the keyless test it was booted for.
        assert!(!needs_boot(booted(true), keyless));
        // After a keyless test, neither a plain nor another keyless test takes its device.
        assert!(needs_boot(used(true), plain));
        assert!(needs_boot(used(true), keyless));
        // A used device with the key serves a plain test of its suite (as before).
        assert!(!needs_boot(used(false), plain));
        // Another suite that keeps the device (`fresh: false`) still needs the key it expects.
        let next_suite = Wants {
            suite: 1,
            suite_fresh: false,
            ..plain
        };
        assert!(!needs_boot(used(false), next_suite));
        assert!(needs_boot(used(true), next_suite));
        // `fresh: true` and a changed config.json, as before.
        let fresh = Wants {
            own_device: true,
            ..plain
        };
        assert!(needs_boot(used(false), fresh));
        assert!(!needs_boot(booted(false), fresh));
        let changed = Held {
            changed: true,
            ..used(false)
        };
        assert!(needs_boot(changed, plain));
    }

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
