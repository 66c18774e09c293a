//! Ctrl-C and SIGTERM: stop the run cleanly and still write the report.
//!
//! The first signal sets a flag and kills the harness's children (QEMU), so that whatever the
//! runner is waiting on fails at once; the runner then records the interruption and writes
//! its reports. A second signal exits at once. `kill -9` needs no handler: every child has
//! the kernel's parent-death signal set (see [`crate::process`]).

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether a stop was asked for.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Installs the handlers (on a small thread of their own).
pub fn install() {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    if INTERRUPTED.swap(true, Ordering::SeqCst) {
                        crate::process::kill_all();
                        std::process::exit(crate::exit_code::INTERRUPTED);
                    }
                    eprintln!("harness: interrupted; stopping the devices and writing the report");
                    crate::process::kill_all();
                }
            });
        })
        .expect("spawning the signal thread");
}
