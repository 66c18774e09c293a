//! Power through a USB hub port that switches VBUS, driven by the `uhubctl` tool.

use crate::device::Power;
use crate::error::Result;

use super::run::{CommandRunner, ProcessRunner};

/// A hub port switched with `uhubctl -l HUB -p PORT -a on|off`.
pub struct Uhubctl<R = ProcessRunner> {
    hub: String,
    port: u32,
    runner: R,
}

impl Uhubctl {
    /// The port `port` of the hub at USB location `hub` (e.g. `1-1.4`).
    pub fn new(hub: &str, port: u32) -> Self {
        Uhubctl::with_runner(hub, port, ProcessRunner)
    }
}

impl<R: CommandRunner> Uhubctl<R> {
    /// As [`Uhubctl::new`], running commands through `runner`.
    pub fn with_runner(hub: &str, port: u32, runner: R) -> Self {
        Uhubctl {
            hub: hub.to_string(),
            port,
            runner,
        }
    }

    fn argv(&self, action: &str) -> Vec<String> {
        [
            "uhubctl",
            "-l",
            &self.hub,
            "-p",
            &self.port.to_string(),
            "-a",
            action,
        ]
        .map(String::from)
        .to_vec()
    }
}

impl<R: CommandRunner> Power for Uhubctl<R> {
    fn on(&mut self) -> Result<()> {
        let argv = self.argv("on");
        self.runner.run(&argv)
    }

    fn off(&mut self) -> Result<()> {
        let argv = self.argv("off");
        self.runner.run(&argv)
    }

    fn describe(&self) -> String {
        format!("uhubctl hub {} port {}", self.hub, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::board::run::FakeRunner;

    #[test]
    fn uhubctl_fake_argv() {
        let mut u = Uhubctl::with_runner("1-1.4", 2, FakeRunner::default());
        u.cycle(Duration::from_millis(1)).unwrap();
        let want = |a: &str| -> Vec<String> {
            ["uhubctl", "-l", "1-1.4", "-p", "2", "-a", a]
                .map(String::from)
                .to_vec()
        };
        assert_eq!(u.runner.calls, vec![want("off"), want("on")]);
        assert_eq!(u.describe(), "uhubctl hub 1-1.4 port 2");
    }
}
