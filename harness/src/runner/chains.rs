//! Chains: a suite's selected tests split into runs that share one device. An `independent`
//! suite's tests are chains of one; elsewhere a chain ends where a test wants a fresh device
//! (`fresh: true`, or `ssh_key: false`), and after a test that ran without the run's key.
//! The order puts the chains that ask for the most boots first.

use super::plan::Plan;
use crate::config::suite::{ConfigureOn, Step, TestFile};

/// Tests of one suite that run in order on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The suite's index in the plan.
    pub suite: usize,
    /// The tests' indices in the suite, in order.
    pub tests: Vec<usize>,
}

/// The plan's selected tests in chains: one test each in an `independent` suite, else split
/// where a test wants a fresh device.
pub fn chains(plan: &Plan) -> Vec<Chain> {
    let mut out: Vec<Chain> = Vec::new();
    for (s, planned) in plan.suites.iter().enumerate() {
        let mut current: Option<Chain> = None;
        let mut after_keyless = false;
        for (t, ((_, test), &selected)) in planned
            .suite
            .tests
            .iter()
            .zip(&planned.selected)
            .enumerate()
        {
            if !selected {
                continue;
            }
            // A device booted without the run's key serves no test after it.
            let split = planned.suite.file.independent || test.starts_device() || after_keyless;
            after_keyless = !test.ssh_key;
            match &mut current {
                Some(chain) if !split => chain.tests.push(t),
                _ => {
                    out.extend(current.take());
                    current = Some(Chain {
                        suite: s,
                        tests: vec![t],
                    });
                }
            }
        }
        out.extend(current);
    }
    out
}

/// Puts each suite's longest chains first, by the boots their tests ask for, so that with
/// several targets the long chains start at once and the short ones fill in at the end.
/// Suites keep their order, and chains that ask for as many boots keep theirs.
pub fn longest_first(chains: &mut [Chain], plan: &Plan) {
    let boots = |c: &Chain| -> usize {
        let tests = &plan.suites[c.suite].suite.tests;
        c.tests.iter().map(|&t| boots(&tests[t].1)).sum()
    };
    chains.sort_by_key(|c| (c.suite, std::cmp::Reverse(boots(c))));
}

/// How many boots a test asks for (a fresh device, reboots, power cycles, changes to the
/// image, checks that cut the power): what its time mostly goes to, tens of seconds each
/// under emulation against a second or two for a command.
fn boots(test: &TestFile) -> usize {
    let steps: usize = test
        .steps
        .iter()
        .map(|s| match s {
            Step::Reboot(_) | Step::PowerCycle(_) => 1,
            Step::Configure(c) => usize::from(c.on == ConfigureOn::Image),
            Step::Check(c) => super::checks::boots(&c.name, &c.args),
            _ => 0,
        })
        .sum();
    usize::from(test.starts_device()) + steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A project of fixture suites (not the repository's, whose content changes): the
    /// repository's machine files, and `suites` as `(name, suite.yaml, [(test, yaml)])`.
    /// A fixture suite: its name, its `suite.yaml`, and its tests as `(name, yaml)`.
    type FixtureSuite<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn plan_of(suites: &[FixtureSuite], filter: Option<&str>) -> Plan {
        let dir = tempfile::tempdir().unwrap().keep();
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::os::unix::fs::symlink(real.join("machines"), dir.join("machines")).unwrap();
        let mut names = Vec::new();
        for (name, suite_yaml, tests) in suites {
            let sdir = dir.join("suites").join(name);
            std::fs::create_dir_all(&sdir).unwrap();
            std::fs::write(sdir.join("suite.yaml"), suite_yaml).unwrap();
            for (test, yaml) in *tests {
                std::fs::write(sdir.join(format!("{test}.yaml")), yaml).unwrap();
            }
            names.push(format!("suite/{name}"));
        }
        crate::runner::plan::build(&dir, "qemux86-64", &names, filter).unwrap()
    }

    const SSH: &str = "description: d\nsteps:\n  - ssh: {run: 'true'}\n";
    const FRESH: &str = "description: d\nfresh: true\nsteps:\n  - ssh: {run: 'true'}\n";
    const REBOOTS_TWICE: &str = "description: d\nsteps:\n  - reboot: {}\n  - reboot: {}\n";
    const POWER_CYCLE: &str = "description: d\nsteps:\n  - power_cycle: {}\n";
    const CUTS: &str = "description: d\nsteps:\n  - check: {name: power-loss, args: {payload: /p, version: '2', points: [mid-write, after-arm]}}\n";

    fn fixture() -> Plan {
        plan_of(
            &[
                (
                    "indep",
                    "description: s\nindependent: true\ntests: [a, b, c]\n",
                    &[("a", SSH), ("b", REBOOTS_TWICE), ("c", POWER_CYCLE)],
                ),
                (
                    "shared",
                    "description: s\ntests: [p, q, r, s]\n",
                    &[("p", SSH), ("q", SSH), ("r", FRESH), ("s", SSH)],
                ),
            ],
            None,
        )
    }

    #[test]
    fn chains_split_independent_suites_by_test_and_others_at_fresh_tests() {
        let plan = fixture();
        let got: Vec<(usize, Vec<usize>)> = chains(&plan)
            .into_iter()
            .map(|c| (c.suite, c.tests))
            .collect();
        assert_eq!(
            got,
            [
                (0, vec![0]),
                (0, vec![1]),
                (0, vec![2]),
                (1, vec![0, 1]),
                (1, vec![2, 3])
            ]
        );
    }

    #[test]
    fn a_filter_keeps_only_the_selected_tests_in_their_chains() {
        let plan = plan_of(
            &[(
                "shared",
                "description: s\ntests: [p, q, r, s]\n",
                &[("p", SSH), ("q", SSH), ("r", FRESH), ("s", SSH)],
            )],
            Some("shared/(q|s)"),
        );
        let got: Vec<Vec<usize>> = chains(&plan).into_iter().map(|c| c.tests).collect();
        // r, the fresh test between them, is left out: q and s share a device.
        assert_eq!(got, [vec![1, 3]]);
    }

    #[test]
    fn the_chains_with_the_most_boots_go_first_within_each_suite() {
        let plan = fixture();
        let mut c = chains(&plan);
        longest_first(&mut c, &plan);
        let got: Vec<(usize, usize)> = c.iter().map(|c| (c.suite, c.tests[0])).collect();
        // indep: b reboots twice, c power-cycles once, a never; shared keeps its order
        // (the fresh chain r,s boots once, as does p,q's first boot, which is not counted).
        assert_eq!(got, [(0, 1), (0, 2), (0, 0), (1, 2), (1, 0)]);
    }

    const KEYLESS: &str = "description: d\nssh_key: false\nsteps:\n  - ssh: {run: 'true'}\n";

    #[test]
    fn a_test_without_the_key_gets_a_device_of_its_own() {
        let plan = plan_of(
            &[(
                "dev",
                "description: s\nconfig: {developmentMode: true}\ntests: [p, k, q, r]\n",
                &[("p", SSH), ("k", KEYLESS), ("q", SSH), ("r", SSH)],
            )],
            None,
        );
        let got: Vec<Vec<usize>> = chains(&plan).into_iter().map(|c| c.tests).collect();
        // k boots without the key; q, which expects it, starts a new device after it.
        assert_eq!(got, [vec![0], vec![1], vec![2, 3]]);
    }

    #[test]
    fn power_cuts_count_as_boots() {
        let plan = plan_of(
            &[(
                "hup",
                "description: s\nindependent: true\ntests: [plain, cuts]\n",
                &[("plain", REBOOTS_TWICE), ("cuts", CUTS)],
            )],
            None,
        );
        let mut c = chains(&plan);
        longest_first(&mut c, &plan);
        // Two cuts and the final update: three boots, more than two reboots.
        assert_eq!(c[0].tests, [1]);
    }
}
