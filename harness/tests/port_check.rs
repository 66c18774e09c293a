//! `harness port-check` end to end: the static checks pass on the reference image; copies of
//! it broken the way a port goes wrong (no `resin-state` label, os-release of another board)
//! exit 1 without a boot and name each broken contract; the page reads right in headless
//! Chromium; and one short run boots once and links each test's logs.
//!
//! Needs the reference image (`scripts/setup` builds it) and e2fsprogs' `debugfs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{copy_of_reference, element, harness, qemu_pids_mentioning, qemu_slots, stderr};
use harness::image::ext4::Ext4;
use harness::image::hostapp::OsRoot;
use harness::image::partitions::{read_table, Partition};

/// Runs `harness port-check ARGS --out DIR`; returns its output and how long it took.
fn port_check(args: &[&str], dir: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let out = harness()
        .arg("port-check")
        .args(args)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    (out, started.elapsed())
}

fn porting_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("porting.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The row of contract section `n`.
fn row(doc: &serde_json::Value, n: u64) -> &serde_json::Value {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["section"] == n)
        .unwrap_or_else(|| panic!("no row for section {n}: {doc}"))
}

/// The check `id` of a report.
fn check<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["checks"].as_array().unwrap())
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

/// The partition labelled `label` of `image`.
fn partition(image: &Path, label: &str) -> Partition {
    let table = read_table(&mut std::fs::File::open(image).unwrap()).unwrap();
    table.by_label(label).unwrap().clone()
}

/// Runs debugfs read-write on the filesystem of `part` with the commands `cmds`.
fn debugfs_write(image: &Path, part: &Partition, cmds: &str) {
    let file = image.with_extension("cmds");
    std::fs::write(&file, cmds).unwrap();
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&file)
        .arg(format!("{}?offset={}", image.display(), part.start))
        .output()
        .expect("debugfs (Debian's e2fsprogs)");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A copy of the reference image whose resin-state filesystem is labelled otherwise.
fn without_resin_state(dir: &Path) -> PathBuf {
    let image = copy_of_reference(dir);
    let state = partition(&image, "resin-state");
    debugfs_write(&image, &state, "ssv volume_name resin-spare\n");
    assert!(read_table(&mut std::fs::File::open(&image).unwrap())
        .unwrap()
        .by_label("resin-state")
        .is_none());
    image
}

/// A copy of the reference image whose active root's os-release names another board.
fn with_slug_of_another_board(dir: &Path) -> PathBuf {
    let image = copy_of_reference(dir);
    let root_a = partition(&image, "resin-rootA");
    let os = OsRoot::of(Ext4::on(&image, &root_a).unwrap()).unwrap();
    let (found, bytes) = os.read("/etc/os-release").unwrap().unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("SLUG=\"qemux86-64\""), "{text}");
    let local = dir.join("os-release");
    std::fs::write(
        &local,
        text.replace("SLUG=\"qemux86-64\"", "SLUG=\"raspberrypi4-64\""),
    )
    .unwrap();
    let (folder, name) = found.rsplit_once('/').unwrap();
    debugfs_write(
        &image,
        &root_a,
        &format!("cd {folder}\nrm {name}\nwrite {} {name}\n", local.display()),
    );
    image
}

#[test]
fn static_checks_pass_on_the_reference_image() {
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = port_check(&["--machine", "qemux86-64", "--static-only"], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(dir.path().join("porting.html").is_file());
    let doc = porting_json(dir.path());
    assert_eq!(doc["verdict"]["status"], "passed", "{doc}");
    assert_eq!(doc["booted"], false);
    assert!(!dir.path().join("run").exists(), "nothing ran");
    for n in [1, 2, 7, 8] {
        assert_eq!(row(&doc, n)["status"], "passed", "section {n}: {doc}");
    }
    for id in harness::port::statics::IDS {
        let c = check(&doc, &format!("static/{id}"));
        assert_eq!(c["status"], "passed", "{c}");
    }
    assert!(check(&doc, "static/fingerprint")["why"]
        .as_str()
        .unwrap()
        .contains("in resin-rootA (its hostapp"));
    assert_eq!(check(&doc, "os/hostname")["why"], "not run: --static-only");
    eprintln!("port-check --static-only: {:.2}s", took.as_secs_f64());
}

/// Makes a broken copy of the reference image in a folder.
type Breaker = fn(&Path) -> PathBuf;

/// A packed image is unpacked into the report's folder for the checks, and that copy is gone
/// after: it may hold the image's secrets.
#[test]
fn a_packed_image_is_checked_and_its_unpacked_copy_removed() {
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("reference.img.zst");
    zstd::stream::copy_encode(
        std::fs::File::open(common::reference_image()).unwrap(),
        std::fs::File::create(&packed).unwrap(),
        1,
    )
    .unwrap();
    let report = dir.path().join("report");
    let args = ["--machine", "qemux86-64", "--static-only", "--image"];
    let (out, took) = port_check(&[&args[..], &[packed.to_str().unwrap()]].concat(), &report);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = porting_json(&report);
    assert_eq!(doc["image"], packed.to_str().unwrap());
    assert_eq!(doc["verdict"]["status"], "passed", "{doc}");
    let left: Vec<_> = std::fs::read_dir(&report)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.len(),
        2,
        "only porting.json and porting.html stay: {left:?}"
    );
    eprintln!(
        "port-check --static-only of a .img.zst: {:.2}s",
        took.as_secs_f64()
    );
}

#[test]
fn broken_images_fail_without_a_boot_and_name_the_contract() {
    let scratch = tempfile::tempdir().unwrap();
    // (name, how the copy is broken, the contract section, the check, what it says)
    let cases: [(&str, Breaker, u64, &str, &str); 2] = [
        (
            "no-state",
            without_resin_state,
            1,
            "static/partitions",
            "no partition labelled resin-state",
        ),
        (
            "other-slug",
            with_slug_of_another_board,
            7,
            "static/os-release",
            "SLUG is \"raspberrypi4-64\", expected \"qemux86-64\" (the machine's slug)",
        ),
    ];
    for (name, make, section, id, why) in cases {
        let work = scratch.path().join(name);
        std::fs::create_dir_all(&work).unwrap();
        let image = make(&work);
        let out_dir = work.join("report");
        // The suites are asked for: a failed static check must keep the image from booting.
        let (out, took) = port_check(
            &[
                "--machine",
                "qemux86-64",
                "--image",
                image.to_str().unwrap(),
                "--suite",
                "suite/smoke",
            ],
            &out_dir,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with(&format!("FAIL: 1 of 8 contracts broken: {section}. ")),
            "{name}: {stdout}"
        );
        assert!(err.contains(why), "{name}: {err}");
        let doc = porting_json(&out_dir);
        assert_eq!(doc["booted"], false, "{name}");
        assert!(!out_dir.join("run").exists(), "{name}: something ran");
        assert!(qemu_pids_mentioning(out_dir.to_str().unwrap()).is_empty());
        let r = row(&doc, section);
        assert_eq!(r["status"], "failed", "{name}: {r}");
        assert!(r["why"].as_str().unwrap().contains(why), "{name}: {r}");
        assert_eq!(check(&doc, id)["status"], "failed");
        let failed: Vec<u64> = doc["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "failed")
            .map(|r| r["section"].as_u64().unwrap())
            .collect();
        assert_eq!(failed, [section], "{name}: only its contract fails");
        assert_eq!(
            check(&doc, "smoke/ssh")["why"],
            "not run: the image failed a static check, so it was not booted"
        );
        assert!(took < Duration::from_secs(60), "{name}: {took:?}");
        eprintln!("{name}: exit 1 in {:.2}s", took.as_secs_f64());
    }
}

#[test]
fn chromium_shows_the_porting_report() {
    let scratch = tempfile::tempdir().unwrap();
    let image = with_slug_of_another_board(scratch.path());
    let dir = scratch.path().join("report");
    let (out, _) = port_check(
        &[
            "--machine",
            "qemux86-64",
            "--image",
            image.to_str().unwrap(),
            "--static-only",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let page = dir.join("porting.html").canonicalize().unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    common::assert_self_contained(&html);

    let dom = common::chromium(&dir, &["--dump-dom".into()], &page);
    std::fs::write(dir.join("dom.html"), &dom).unwrap();
    assert!(dom.contains("<h1>Porting report: qemux86-64</h1>"), "{dom}");
    assert!(dom.contains(&format!("<code id=\"image\">{}</code>", image.display())));
    let date =
        regex::Regex::new(r#"<time id="date">20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>"#).unwrap();
    assert!(date.is_match(&dom), "{dom}");
    let verdict = element(&dom, "p", "id=\"verdict\"");
    assert!(verdict.contains("data-status=\"failed\""), "{verdict}");
    assert!(
        verdict
            .contains("FAIL (static checks only, no boot): 1 of 8 contracts broken: 7. os-release"),
        "{verdict}"
    );
    let r7 = element(&dom, "tr", "data-section=\"7\" data-status=\"failed\"");
    assert!(r7.contains(">failed</span>"), "{r7}");
    let os_release = element(&dom, "li", "data-check=\"static/os-release\"");
    assert!(
        os_release.contains("data-status=\"failed\""),
        "{os_release}"
    );
    assert!(
        os_release.contains("SLUG is \"raspberrypi4-64\", expected \"qemux86-64\""),
        "{os_release}"
    );
    let r1 = element(&dom, "tr", "data-section=\"1\" data-status=\"passed\"");
    assert!(
        r1.contains("Disk layout") && r1.contains("static/partitions"),
        "{r1}"
    );
    let skipped = element(&dom, "li", "data-check=\"os/hostname\"");
    assert!(skipped.contains(">skipped</span>") && skipped.contains("--static-only"));
    for n in 1..=8 {
        assert!(dom.contains(&format!("data-section=\"{n}\"")), "no row {n}");
    }

    common::screenshot(&dir, &page, "porting.png");
}

/// One boot: suite/smoke on QEMU; its tests' rows link to their logs, copied beside the page.
#[test]
fn a_short_run_boots_once_and_links_the_logs() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = port_check(
        &["--machine", "qemux86-64", "--suite", "suite/smoke"],
        dir.path(),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let doc = porting_json(dir.path());
    assert_eq!(doc["booted"], true);
    assert_eq!(doc["run_report"], "run/report.html");
    assert!(dir.path().join("run/report.html").is_file());
    for (id, section) in [
        ("smoke/ssh", 4),
        ("smoke/serial-console", 4),
        ("smoke/os-release", 7),
    ] {
        let c = check(&doc, id);
        assert_eq!(c["status"], "passed", "{c}");
        assert_eq!(row(&doc, section)["status"], "passed");
        let logs = c["logs"].as_array().unwrap();
        let labels: Vec<&str> = logs.iter().map(|l| l["label"].as_str().unwrap()).collect();
        assert!(
            labels.contains(&"serial log of qemux86-64"),
            "{id}: {labels:?}"
        );
        for l in logs {
            let href = l["href"].as_str().unwrap();
            assert!(href.starts_with("porting-logs/"), "{href}");
            assert!(dir.path().join(href).is_file(), "{id}: {href} is missing");
        }
    }
    let ssh = check(&doc, "smoke/os-release")["logs"][0]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let transcript = std::fs::read_to_string(dir.path().join(&ssh)).unwrap();
    assert!(transcript.contains("cat /etc/os-release"), "{transcript}");
    let serial =
        std::fs::read_to_string(dir.path().join("porting-logs/qemux86-64/serial.log")).unwrap();
    assert_eq!(
        serial.matches("Linux version").count(),
        1,
        "one boot for the whole run"
    );
    let html = std::fs::read_to_string(dir.path().join("porting.html")).unwrap();
    assert!(
        html.contains(&format!("href=\"{ssh}\"")),
        "the page links the transcript"
    );
    assert_eq!(row(&doc, 6)["status"], "skipped", "no engine test ran");
    eprintln!("port-check --suite suite/smoke: {:.1}s", took.as_secs_f64());
}

/// Bad input is refused in one line, exit 2, before anything is read or booted.
#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.img");
    for (args, want) in [
        (
            vec!["--machine", "nope"],
            "harness: error: unknown machine `nope` (known: ",
        ),
        (
            vec![
                "--machine",
                "qemux86-64",
                "--image",
                missing.to_str().unwrap(),
            ],
            "harness: error: image ",
        ),
        (
            vec!["--machine", "qemux86-64", "--filter", "no-such-test"],
            "harness: error: --filter /no-such-test/ selects no test",
        ),
        (
            vec!["--machine", "qemux86-64", "--rig", "pi4"],
            "harness: error: rig pi4 holds a raspberrypi4-64, not a qemux86-64",
        ),
    ] {
        let out_dir = dir.path().join("report");
        let (out, _) = port_check(&args, &out_dir);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!out_dir.exists(), "{args:?}: a report was written");
    }
}
