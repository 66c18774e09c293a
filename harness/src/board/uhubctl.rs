//! Power through a USB hub port that switches VBUS, driven by the `uhubctl` tool.
//!
//! uhubctl exits 0 even when the port did not switch (a hub that ignores the request) or when
//! it could not open the hub at all, so the driver reads the `New status` it prints and fails
//! unless the port's power bit is as asked, on every half of the hub (USB3 hubs have two).

use std::time::Duration;

use crate::device::Power;
use crate::error::{Error, Result};

use super::run::{CommandRunner, ProcessRunner};

/// The longest one `uhubctl` run may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A hub port switched with `uhubctl -l HUB -p PORT -a on|off`.
pub struct Uhubctl<R = ProcessRunner> {
    hub: String,
    port: u32,
    runner: R,
}

impl Uhubctl {
    /// The port `port` of the hub at USB location `hub` (e.g. `1-1.4`).
    pub fn new(hub: &str, port: u32) -> Self {
        Uhubctl::with_runner(hub, port, ProcessRunner::new(TIMEOUT))
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

    fn switch(&mut self, on: bool) -> Result<()> {
        let argv = self.argv(if on { "on" } else { "off" });
        let out = self.runner.run(&argv)?;
        check_switched(&out, &self.hub, self.port, on)
            .map_err(|why| Error::infra(format!("`{}` exited 0 but {why}", argv.join(" "))))
    }
}

/// One port line of a `New status` block: the hub's location, whether the port's power bit is
/// set, and the line as printed.
#[derive(Debug, PartialEq, Eq)]
struct PortStatus {
    hub: String,
    powered: bool,
    line: String,
}

/// The port lines for `port` in every `New status for hub` block of uhubctl's stdout.
fn new_status(out: &str, port: u32) -> Vec<PortStatus> {
    let prefix = format!("Port {port}:");
    let mut hub: Option<String> = None;
    let mut found = Vec::new();
    for line in out.lines() {
        if !line.starts_with(' ') {
            hub = line
                .strip_prefix("New status for hub ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(String::from);
            continue;
        }
        let (Some(h), Some(rest)) = (&hub, line.trim_start().strip_prefix(&prefix)) else {
            continue;
        };
        // `XXXX flag flag ... [attached device]`: the device's description may say "power".
        let flags = rest.split(" [").next().unwrap_or("");
        found.push(PortStatus {
            hub: h.clone(),
            powered: flags.split_whitespace().skip(1).any(|w| w == "power"),
            line: line.trim().to_string(),
        });
    }
    found
}

/// Why the output does not show `port` switched `on`/off, if it does not.
fn check_switched(out: &str, hub: &str, port: u32, on: bool) -> Result<(), String> {
    let found = new_status(out, port);
    if found.is_empty() {
        return Err(format!(
            "printed no new status for port {port} of hub {hub}: it could not open the hub \
             (permissions: see uhubctl's udev rules) or the hub has no such port"
        ));
    }
    match found.iter().find(|s| s.powered != on) {
        None => Ok(()),
        Some(s) => Err(format!(
            "port {port} of hub {} is still {} (`{}`): the hub did not switch it",
            s.hub,
            if on { "off" } else { "powered" },
            s.line
        )),
    }
}

impl<R: CommandRunner> Power for Uhubctl<R> {
    fn on(&mut self) -> Result<()> {
        self.switch(true)
    }

    fn off(&mut self) -> Result<()> {
        self.switch(false)
    }

    fn describe(&self) -> String {
        format!("uhubctl hub {} port {}", self.hub, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::board::run::FakeRunner;

    /// Sample stdout of uhubctl 2.6.0 (see `fixtures/uhubctl/README.md`).
    const OFF_SWITCHED: &str = include_str!("fixtures/uhubctl/off_switched.txt");
    const OFF_NOT_SWITCHED: &str = include_str!("fixtures/uhubctl/off_not_switched.txt");
    const ON_SWITCHED: &str = include_str!("fixtures/uhubctl/on_switched.txt");
    const ON_NOT_SWITCHED: &str = include_str!("fixtures/uhubctl/on_not_switched.txt");
    const USB3_OFF_SWITCHED: &str = include_str!("fixtures/uhubctl/usb3_off_switched.txt");
    const USB3_OFF_HALF: &str = include_str!("fixtures/uhubctl/usb3_off_half_switched.txt");
    const HUB_NOT_OPENED: &str = include_str!("fixtures/uhubctl/hub_not_opened.txt");

    fn uhubctl(outputs: &[&str]) -> Uhubctl<FakeRunner> {
        let runner = FakeRunner {
            outputs: outputs.iter().map(|o| Ok(o.to_string())).collect(),
            ..Default::default()
        };
        Uhubctl::with_runner("1-1.4", 2, runner)
    }

    #[test]
    fn uhubctl_fake_argv() {
        let mut u = uhubctl(&[OFF_SWITCHED, ON_SWITCHED]);
        u.cycle(Duration::from_millis(1)).unwrap();
        let want = |a: &str| -> Vec<String> {
            ["uhubctl", "-l", "1-1.4", "-p", "2", "-a", a]
                .map(String::from)
                .to_vec()
        };
        assert_eq!(u.runner.calls, vec![want("off"), want("on")]);
        assert_eq!(u.describe(), "uhubctl hub 1-1.4 port 2");
    }

    #[test]
    fn uhubctl_fake_a_port_that_switched_is_believed() {
        uhubctl(&[OFF_SWITCHED]).off().unwrap();
        uhubctl(&[ON_SWITCHED]).on().unwrap();
        uhubctl(&[USB3_OFF_SWITCHED]).off().unwrap();
    }

    #[test]
    fn uhubctl_fake_exit_0_with_the_port_still_powered_is_an_infra_error() {
        let err = uhubctl(&[OFF_NOT_SWITCHED]).off().unwrap_err();
        assert!(matches!(err, Error::Infra(_)));
        assert_eq!(
            err.to_string(),
            "`uhubctl -l 1-1.4 -p 2 -a off` exited 0 but port 2 of hub 1-1.4 is still powered \
             (`Port 2: 0503 power highspeed enable connect [0424:ec00 Power Board 0815]`): \
             the hub did not switch it"
        );
        let err = uhubctl(&[ON_NOT_SWITCHED]).on().unwrap_err();
        assert!(
            err.to_string()
                .contains("is still off (`Port 2: 0000 off`)"),
            "{err}"
        );
    }

    #[test]
    fn uhubctl_fake_one_half_of_a_usb3_hub_still_powered_is_an_error() {
        let err = uhubctl(&[USB3_OFF_HALF]).off().unwrap_err();
        assert!(
            err.to_string().contains("hub 2-1.4 is still powered"),
            "{err}"
        );
    }

    #[test]
    fn uhubctl_fake_no_new_status_is_an_error() {
        let err = uhubctl(&[HUB_NOT_OPENED]).off().unwrap_err();
        assert!(matches!(err, Error::Infra(_)));
        assert!(
            err.to_string().contains("printed no new status for port 2"),
            "{err}"
        );
        // The current status alone never counts, even when it shows the asked-for state.
        let current_only = OFF_SWITCHED.split("Sent power").next().unwrap_or("");
        assert!(uhubctl(&[current_only]).on().is_err());
    }

    #[test]
    fn uhubctl_fake_reads_power_from_the_flags_not_the_device_description() {
        // The attached device is called "Power Board": only the flag words count.
        let s = new_status(OFF_SWITCHED, 2);
        assert_eq!(s.len(), 1);
        assert!(!s[0].powered);
        let s = new_status(OFF_NOT_SWITCHED, 2);
        assert!(s[0].powered);
        let fake = "New status for hub 1-1.4 [x]\n  Port 2: 0000 off [0424:ec00 power brick]\n";
        assert!(!new_status(fake, 2)[0].powered);
        // Port 12 is not port 2.
        assert!(new_status("New status for hub 1-1 [x]\n  Port 12: 0100 power\n", 2).is_empty());
    }

    #[test]
    fn uhubctl_fake_a_failing_run_is_passed_on() {
        let mut u = uhubctl(&[]);
        u.runner
            .outputs
            .push_back(Err(Error::infra("`uhubctl` failed")));
        assert_eq!(u.off().unwrap_err().to_string(), "`uhubctl` failed");
    }
}
