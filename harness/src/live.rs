//! The live view of a run on a terminal: one line per target saying what it is doing, with
//! the log lines (test results, notes) printed above them. Off a terminal, just the lines.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::runner::Ui;

/// The terminal's view of a run.
pub struct Live {
    bars: Option<(MultiProgress, Mutex<BTreeMap<String, ProgressBar>>)>,
}

impl Live {
    /// A live view with a line per target when `tty`, else plain lines on stderr.
    pub fn new(tty: bool) -> Live {
        let bars = tty.then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(BTreeMap::new()),
            )
        });
        Live { bars }
    }

    /// Removes the live lines (the run is over).
    pub fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.lock().unwrap_or_else(|e| e.into_inner()).values() {
                bar.finish_and_clear();
            }
        }
    }
}

impl Ui for Live {
    fn line(&self, line: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn status(&self, target: &str, what: &str) {
        let Some((multi, bars)) = &self.bars else {
            return;
        };
        let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(target.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<20} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(target.to_string());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        bar.set_message(what.to_string());
        bar.reset_elapsed();
    }
}
