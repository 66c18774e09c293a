//! Ctrl-C and SIGTERM: stop the run cleanly and still write the report.
//!
//! The first signal sets a flag and kills the harness's children (QEMU), so that whatever the
//! runner is waiting on fails at once; the runner then records the interruption and writes
//! its reports. A second signal exits at once. `kill -9` needs no handler: every child has
//! the kernel's parent-death signal set (see [`crate::process`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether a stop was asked for.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Installs the handlers: a small thread waits for the signals (signal-hook's self-pipe, so
/// nothing but a write happens inside the handler) and acts on each. Later calls do nothing.
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(watch);
}

fn watch() {
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::warn!("cannot watch SIGINT/SIGTERM: {e}");
            return;
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    crate::process::kill_all();
                    std::process::exit(crate::exit_code::INTERRUPTED);
                }
                eprintln!("harness: interrupted; stopping the devices and writing the report");
                crate::process::kill_all();
            }
        })
        .expect("spawning the signal thread");
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    #[test]
    #[ignore = "run as a child process by first_signal_stops_the_second_exits_130"]
    fn child_waiting_for_signals() {
        if std::env::var_os("INTERRUPT_TEST_CHILD").is_none() {
            return; // `cargo test -- --ignored` alone: nobody would send the signals
        }
        super::install();
        super::install(); // a second install must not make one signal count twice
        println!("ready");
        while !super::requested() {
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("stopping");
        std::thread::sleep(Duration::from_secs(30));
    }

    #[test]
    fn first_signal_stops_the_second_exits_130() {
        use rustix::process::{kill_process, Pid, Signal};
        for signal in [Signal::INT, Signal::TERM] {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "--nocapture"])
                .arg("interrupt::tests::child_waiting_for_signals")
                .env("INTERRUPT_TEST_CHILD", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut wait_for = |want: &str| {
                let mut line = String::new();
                while !line.contains(want) {
                    line.clear();
                    assert!(out.read_line(&mut line).unwrap() > 0, "no {want:?}");
                }
            };
            wait_for("ready");
            let pid = Pid::from_raw(child.id() as i32).expect("a child's pid");
            kill_process(pid, signal).unwrap();
            wait_for("stopping");
            assert!(child.try_wait().unwrap().is_none(), "one signal only stops");
            kill_process(pid, signal).unwrap();
            let status = child.wait().unwrap();
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert_eq!(status.code(), Some(crate::exit_code::INTERRUPTED), "{err}");
            assert!(
                err.contains("harness: interrupted; stopping the devices"),
                "{err}"
            );
        }
    }
}
