//! Bad input ends with exit code 2 and one clear line, before any device is touched.

mod common;

use common::{run, stderr};

fn assert_one_line_exit_2(args: &[&str], expect: &str) {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?} printed more than one line: {err}");
    assert!(lines[0].starts_with("harness: error: "), "{err}");
    assert!(
        lines[0].contains(expect),
        "{args:?}: {err:?} lacks {expect:?}"
    );
}

#[test]
fn unknown_machine() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    assert_one_line_exit_2(
        &["run", "--machine", "vax11", "suite/smoke", "--out", o],
        "unknown machine `vax11` (known: ",
    );
}

#[test]
fn unknown_suite() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    assert_one_line_exit_2(
        &["run", "--machine", "qemux86-64", "suite/nope", "--out", o],
        "unknown suite `suite/nope`",
    );
}

#[test]
fn missing_image() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    assert_one_line_exit_2(
        &[
            "run",
            "--machine",
            "qemux86-64",
            "suite/smoke",
            "--image",
            "/nonexistent/balena.img",
            "--out",
            o,
        ],
        "image /nonexistent/balena.img does not exist",
    );
}

#[test]
fn a_file_that_is_not_a_disk_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("notes.img");
    std::fs::write(
        &img,
        "these are not the partitions you are looking for\n".repeat(100),
    )
    .unwrap();
    let o = dir.path().join("out");
    assert_one_line_exit_2(
        &[
            "run",
            "--machine",
            "qemux86-64",
            "suite/smoke",
            "--image",
            img.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ],
        "notes.img",
    );
}

#[test]
fn an_image_without_resin_boot() {
    use harness::image::{testimg, TableKind};
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("noboot.img");
    testimg::make_test_image(&img, TableKind::Msdos).unwrap();
    // Wipe the boot partition's FAT boot sector: the partition is there, its label is not.
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(testimg::BOOT_START)).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    let o = dir.path().join("out");
    assert_one_line_exit_2(
        &[
            "run",
            "--machine",
            "qemux86-64",
            "suite/smoke",
            "--image",
            img.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ],
        "no partition labelled resin-boot",
    );
}

#[test]
fn a_suite_with_a_misspelt_step() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("typo");
    std::fs::create_dir(&suite).unwrap();
    std::fs::write(suite.join("suite.yaml"), "description: has a typo\n").unwrap();
    std::fs::write(
        suite.join("t.yaml"),
        "description: x\nsteps:\n  - ssh: {run: uname}\n  - rebot: {}\n",
    )
    .unwrap();
    let o = dir.path().join("out");
    assert_one_line_exit_2(
        &[
            "run",
            "--machine",
            "qemux86-64",
            suite.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ],
        "t.yaml:4:5: unknown variant `rebot`, expected one of ssh, console,",
    );
}

#[test]
fn bad_yaml_in_a_machine_file_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("machines")).unwrap();
    std::fs::create_dir_all(dir.path().join("suites")).unwrap();
    std::fs::write(
        dir.path().join("machines/m.yaml"),
        "name: m\ndescription: x\nslug: m\nqemu:\n  binary: qemu\n  memory_mib: lots\n",
    )
    .unwrap();
    let out = common::harness()
        .env("HARNESS_ROOT", dir.path())
        .args(["machines"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("machines/m.yaml:6:15: "), "{err}");
}

#[test]
fn a_machine_with_two_firmwares_or_vmgenid_where_qemu_has_none_is_one_line() {
    let base = "name: m\ndescription: x\nslug: m\nqemu:\n  binary: qemu-system-aarch64\n  \
                machine: virt\n  memory_mib: 1024\n  cpus: 1\n  disk_size_gib: 4\n  nic: n\n";
    for (extra, expect) in [
        (
            "  firmware: {code: /c.fd, vars: /v.fd, bios: /u.bin}\n",
            "firmware: give either `code` and `vars` (UEFI) or `bios` (e.g. u-boot), not both or part",
        ),
        (
            "  firmware: {bios: /u.bin}\n  vmgenid: true\n",
            "qemu.vmgenid: qemu-system-aarch64 has no vmgenid device (QEMU has it on x86 only); \
             remove the line or say `vmgenid: false`",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("machines")).unwrap();
        std::fs::create_dir_all(dir.path().join("suites")).unwrap();
        std::fs::write(dir.path().join("machines/m.yaml"), format!("{base}{extra}")).unwrap();
        let out = common::harness()
            .env("HARNESS_ROOT", dir.path())
            .args(["machines"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("machines/m.yaml") && err.trim_end().ends_with(expect), "{err}");
    }
}

// Static checks of a suite: each rule refuses a bad suite with exit 2 and one line before
// anything boots, and its twin shows a good suite getting past every check (to the image,
// which does not exist, so nothing boots either).

/// A suite `s` in a temp folder: `suite.yaml` and the other `(path, text)` files.
fn make_suite(files: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("s");
    for (name, text) in files {
        let path = suite.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    (dir, suite)
}

/// `harness run --machine qemux86-64 SUITE --out OUT EXTRA...`.
fn run_args<'a>(suite: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--machine", "qemux86-64", suite, "--out", out];
    args.extend_from_slice(extra);
    args
}

/// The run of `suite` is refused with exit 2 and one line containing `expect`, before its
/// folder exists: no QEMU was started.
fn refused(suite: &std::path::Path, extra: &[&str], expect: &str) {
    let out = suite.parent().unwrap().join("out");
    let o = out.to_str().unwrap();
    assert_one_line_exit_2(&run_args(suite.to_str().unwrap(), o, extra), expect);
    assert!(!out.exists(), "the run got as far as creating {o}");
    assert!(common::qemu_pids_mentioning(o).is_empty());
}

/// The run of `suite` gets past every check of its plan: it ends at the image, which does
/// not exist, so no QEMU was started.
fn accepted(suite: &std::path::Path, extra: &[&str]) {
    let out = suite.parent().unwrap().join("out-accepted");
    let o = out.to_str().unwrap();
    let mut extra = extra.to_vec();
    extra.extend(["--image", "/nonexistent/static-check.img"]);
    assert_one_line_exit_2(
        &run_args(suite.to_str().unwrap(), o, &extra),
        "harness: error: image /nonexistent/static-check.img does not exist",
    );
    assert!(common::qemu_pids_mentioning(o).is_empty());
}

const ONE_TEST: &str = "description: s\ntests: [t]\n";

fn test_with(steps: &str) -> String {
    format!("description: t\nsteps:\n{steps}")
}

#[test]
fn a_variable_that_nothing_sets() {
    let t = test_with("  - ssh: {run: uname}\n  - ssh: {run: 'echo {{colour}}'}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &t)]);
    refused(
        &s,
        &[],
        "s/t.yaml:4:5: step 2: `{{colour}}` is not set: nothing sets it (give --var colour=VALUE,",
    );
}

#[test]
fn a_variable_set_by_var_suite_vars_or_an_earlier_save_is_accepted() {
    let t = test_with("  - ssh: {run: 'echo {{colour}}'}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &t)]);
    accepted(&s, &["--var", "colour=red"]);
    let vars = "description: s\nvars: {colour: '{{slug}}-red'}\ntests: [t]\n";
    let (_d, s) = make_suite(&[("suite.yaml", vars), ("t.yaml", &t)]);
    accepted(&s, &[]);
    let saved =
        test_with("  - ssh: {run: uname, save: colour}\n  - ssh: {run: 'echo {{colour}}'}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &saved)]);
    accepted(&s, &[]);
}

#[test]
fn a_variable_used_before_the_save_that_sets_it() {
    let t = test_with("  - ssh: {run: 'echo {{kernel}}'}\n  - ssh: {run: uname, save: kernel}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &t)]);
    refused(
        &s,
        &[],
        "t.yaml:3:5: step 1: `{{kernel}}` is not set: it is saved only by step 2, after this one",
    );
}

#[test]
fn a_save_reaches_the_next_test_on_the_same_device_only() {
    let a = test_with("  - ssh: {run: uname, save: kernel}\n");
    let b = test_with("  - ssh: {run: 'test {{kernel}} = Linux'}\n");
    let two = "description: s\ntests: [a, b]\n";
    let (_d, s) = make_suite(&[("suite.yaml", two), ("a.yaml", &a), ("b.yaml", &b)]);
    // The runner carries `a`'s save over to `b`: they share a device.
    accepted(&s, &[]);
    refused(
        &s,
        &["--filter", "/b$"],
        "b.yaml:3:5: step 1: `{{kernel}}` is not set: it is saved by test `a`, which --filter leaves out of this run",
    );
    let fresh = b.replace("steps:", "fresh: true\nsteps:");
    let (_d, s) = make_suite(&[("suite.yaml", two), ("a.yaml", &a), ("b.yaml", &fresh)]);
    refused(
        &s,
        &[],
        "but test `b` (`fresh: true`) starts a new device after it",
    );
    let independent = "description: s\nindependent: true\ntests: [a, b]\n";
    let (_d, s) = make_suite(&[("suite.yaml", independent), ("a.yaml", &a), ("b.yaml", &b)]);
    refused(&s, &[], "but the suite is `independent`");
}

#[test]
fn a_test_with_no_steps() {
    let (_d, s) = make_suite(&[
        ("suite.yaml", ONE_TEST),
        ("t.yaml", "description: t\nsteps: []\n"),
    ]);
    refused(
        &s,
        &[],
        "s/t.yaml: the test has no steps; it would pass without checking anything",
    );
    let (_d, s) = make_suite(&[("suite.yaml", "description: s\n")]);
    refused(&s, &[], "s/suite.yaml: suite `s` has no tests");
    let (_d, s) = make_suite(&[
        ("suite.yaml", ONE_TEST),
        ("t.yaml", &test_with("  - reboot: {}\n")),
    ]);
    accepted(&s, &[]);
}

#[test]
fn setup_steps_are_checked_before_boot() {
    let suite = "description: s\nsetup: [faults/f.yaml]\ntests: [t]\n";
    let t = test_with("  - ssh: {run: uname}\n");
    let bad_check = test_with("  - check: {name: engine-ap}\n");
    let (_d, s) = make_suite(&[
        ("suite.yaml", suite),
        ("t.yaml", &t),
        ("faults/f.yaml", &bad_check),
    ]);
    refused(
        &s,
        &[],
        "faults/f.yaml:3:5: setup step 1: unknown check `engine-ap` (known: ",
    );
    let bad_var = test_with("  - ssh: {run: 'rm {{target_file}}'}\n");
    let (_d, s) = make_suite(&[
        ("suite.yaml", suite),
        ("t.yaml", &t),
        ("faults/f.yaml", &bad_var),
    ]);
    refused(
        &s,
        &[],
        "faults/f.yaml:3:5: setup step 1: `{{target_file}}` is not set: nothing sets it",
    );
    let empty = "description: f\nsteps: []\n";
    let (_d, s) = make_suite(&[
        ("suite.yaml", suite),
        ("t.yaml", &t),
        ("faults/f.yaml", empty),
    ]);
    refused(&s, &[], "faults/f.yaml: the setup file has no steps");
    let (_d, s) = make_suite(&[
        ("suite.yaml", suite),
        ("t.yaml", &t),
        ("faults/f.yaml", &bad_var),
    ]);
    accepted(&s, &["--var", "target_file=/etc/hostname"]);
}

#[test]
fn a_copy_from_a_file_that_does_not_exist() {
    let t = test_with("  - copy: {from: payload.bin, to_device: /tmp/p}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &t)]);
    refused(&s, &[], "t.yaml:3:5: step 1: copy from `payload.bin`: ");
    refused(&s, &[], "/s/payload.bin does not exist");
    // Relative to the suite's folder, as the runner reads it.
    std::fs::write(s.join("payload.bin"), "p").unwrap();
    accepted(&s, &[]);
    let by_var = test_with("  - copy: {from: '{{payload}}', to_device: /tmp/p}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &by_var)]);
    refused(
        &s,
        &["--var", "payload=/nonexistent/hostapp.tar"],
        "copy from `{{payload}}`: /nonexistent/hostapp.tar does not exist",
    );
    let real = s.parent().unwrap().join("hostapp.tar");
    std::fs::write(&real, "p").unwrap();
    accepted(&s, &["--var", &format!("payload={}", real.display())]);
    let shapeless = test_with("  - copy: {from: payload.bin}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &shapeless)]);
    refused(
        &s,
        &[],
        "step 1: a copy step takes either `from` and `to_device`, or `from_device`",
    );
}

/// The case: suite/hup on a real image with an update file that is not there.
#[test]
fn suite_hup_on_a_real_image_needs_its_vars_and_an_update_file_that_exists() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let image = ["--image", "/nonexistent/balena.img"];
    let mut args = run_args("suite/hup", o, &image);
    assert_one_line_exit_2(
        &args,
        "suites/hup/update.yaml:5:5: step 1: `{{base_version}}` is not set: the reference image sets it, but this run boots --image: give --var base_version=VALUE",
    );
    args.extend([
        "--var",
        "base_version=6.0.13",
        "--var",
        "update_version=6.0.14",
        "--var",
        "update_file=/nonexistent/hostapp.tar",
    ]);
    assert_one_line_exit_2(
        &args,
        "suites/hup/update.yaml:27:5: step 7: copy from `{{update_file}}`: /nonexistent/hostapp.tar does not exist",
    );
    assert!(!out.exists());
    let payload = dir.path().join("hostapp.tar");
    std::fs::write(&payload, "p").unwrap();
    let var = format!("update_file={}", payload.display());
    *args.last_mut().unwrap() = &var;
    assert_one_line_exit_2(&args, "image /nonexistent/balena.img does not exist");
    assert!(common::qemu_pids_mentioning(o).is_empty());
}

#[test]
fn a_check_that_does_not_exist_or_gets_the_wrong_arguments() {
    for (check, expect) in [
        (
            "{name: reach-ssh, args: {ip: 10.0.0.1}}",
            "step 1: unknown check `reach-ssh` (known: engine-api, ",
        ),
        (
            "{name: reach, args: {ip: 10.0.0.1, prot: 22}}",
            "step 1: check `reach` has no argument `prot` (it takes: ip, port)",
        ),
        (
            "{name: reach, args: {port: 22}}",
            "step 1: check `reach` needs `ip` (an IP address)",
        ),
        (
            "{name: engine-api, args: {open: 'no'}}",
            "step 1: check `engine-api`: `open` must be true or false, not \"no\"",
        ),
        (
            "{name: engine-pull, args: {tag: v3}}",
            "step 1: check `engine-pull`: `tag` must be one of v1, v2, not \"v3\"",
        ),
        (
            "{name: power-loss, args: {payload: /p, version: 6.0}}",
            "check `power-loss`: `version` must be text (quote it), not 6.0",
        ),
    ] {
        let t = test_with(&format!("  - check: {check}\n"));
        let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &t)]);
        refused(&s, &[], expect);
    }
    let good = test_with(
        "  - check: {name: reach, args: {ip: '{{peer}}', port: 22}}\n  - check: {name: engine-api, args: {open: false}}\n  - check: {name: power-loss, args: {payload: /p, version: '6.0', points: [mid-write]}}\n",
    );
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &good)]);
    accepted(&s, &["--var", "peer=10.0.0.1"]);
}

#[test]
fn a_filter_that_selects_nothing() {
    let t = test_with("  - ssh: {run: uname}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &t)]);
    refused(
        &s,
        &["--filter", "^smoke/"],
        "--filter /^smoke// selects no test (it is matched against `suite/test`: s/t)",
    );
    accepted(&s, &["--filter", "^s/t$"]);
}

#[test]
fn a_variable_where_nothing_fills_it_in() {
    let t = test_with("  - configure: {set: {hostname: '{{name}}'}}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &t)]);
    refused(&s, &["--var", "name=x"], "step 1: `{{name}}` would reach the device as written: a configure step does not fill in variables");
    let t = test_with("  - configure: {set: {hostname: renamed}}\n");
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", &t)]);
    accepted(&s, &[]);
}

#[test]
fn a_test_without_the_key_in_a_suite_without_development_mode() {
    let t = "description: t\nssh_key: false\nsteps:\n  - ssh: {run: 'true'}\n";
    let (_d, s) = make_suite(&[("suite.yaml", ONE_TEST), ("t.yaml", t)]);
    refused(
        &s,
        &[],
        "s/t.yaml: ssh_key: false needs developmentMode: true in the suite's config",
    );
    let dev = "description: s\nconfig: {developmentMode: true}\ntests: [t]\n";
    let (_d, s) = make_suite(&[("suite.yaml", dev), ("t.yaml", t)]);
    accepted(&s, &[]);
}
