//! Power through a relay on a GPIO line, driven through the kernel's GPIO character device
//! (`/dev/gpiochipN`, the libgpiod protocol); the deprecated sysfs interface is not used.

use std::path::{Path, PathBuf};

use crate::device::Power;
use crate::error::{Error, Result};

/// Drives one output line to a physical level: the seam the relay logic is tested through.
pub trait OutputLine: Send {
    /// Sets the line's physical level (`true` = high).
    fn set_level(&mut self, high: bool) -> Result<()>;
}

/// A GPIO line requested through the character device with the `gpiod` crate.
pub struct GpiodLine {
    chip: gpiod::Chip,
    path: PathBuf,
    offset: u32,
    lines: Option<gpiod::Lines<gpiod::Output>>,
}

impl GpiodLine {
    /// Opens line `offset` of `chip` (a path like `/dev/gpiochip0`, a name like `gpiochip0`,
    /// or a label like `pinctrl-bcm2711`). The line is requested on first use, at the level
    /// asked for, so opening never toggles the relay.
    pub fn open(chip: &str, offset: u32) -> Result<GpiodLine> {
        let path = match chip_path(chip)? {
            Some(path) => path,
            None => chip_by_label(chip)
                .ok_or_else(|| Error::input(format!("gpio chip {chip} does not exist")))?,
        };
        let chip_dev = gpiod::Chip::new(&path)
            .map_err(|e| Error::input(format!("cannot open gpio chip {chip}: {e}")))?;
        let count = chip_dev.num_lines();
        if offset >= count {
            return Err(Error::input(format!(
                "gpio chip {chip} has {count} lines: there is no line {offset}"
            )));
        }
        Ok(GpiodLine {
            chip: chip_dev,
            path,
            offset,
            lines: None,
        })
    }
}

/// The device `chip` names (a path, or a name under `/dev`) with symlinks resolved, since
/// the `gpiod` crate refuses a link (a udev alias such as `/dev/gpio-relays`); `None` if there
/// is no such file.
fn chip_path(chip: &str) -> Result<Option<PathBuf>> {
    let path = if chip.starts_with('/') {
        PathBuf::from(chip)
    } else {
        Path::new("/dev").join(chip)
    };
    if !path.exists() {
        return Ok(None);
    }
    std::fs::canonicalize(&path)
        .map(Some)
        .map_err(|e| Error::input(format!("cannot resolve gpio chip {chip}: {e}")))
}

/// The chip whose label is `label`.
fn chip_by_label(label: &str) -> Option<PathBuf> {
    gpiod::Chip::list_devices()
        .ok()?
        .into_iter()
        .find(|p| gpiod::Chip::new(p).is_ok_and(|c| c.label() == label))
}

impl OutputLine for GpiodLine {
    fn set_level(&mut self, high: bool) -> Result<()> {
        let fail = |e: std::io::Error| {
            Error::infra(format!("gpio {}:{}: {e}", self.path.display(), self.offset))
        };
        match &self.lines {
            Some(lines) => lines.set_values([high]).map_err(fail),
            None => {
                let opts = gpiod::Options::output([self.offset])
                    .values([high])
                    .consumer("harness");
                self.lines = Some(self.chip.request_lines(opts).map_err(fail)?);
                Ok(())
            }
        }
    }
}

/// A relay on a GPIO line, as a [`Power`] switch.
pub struct Relay<L> {
    line: L,
    active_low: bool,
    name: String,
}

impl Relay<GpiodLine> {
    /// Opens the relay on `chip` line `offset`; `active_low` when a low level closes it.
    pub fn open(chip: &str, offset: u32, active_low: bool) -> Result<Self> {
        let line = GpiodLine::open(chip, offset)?;
        Ok(Relay::with_line(
            line,
            &format!("{chip}:{offset}"),
            active_low,
        ))
    }
}

impl<L: OutputLine> Relay<L> {
    /// A relay over any output line; `name` identifies it in logs.
    pub fn with_line(line: L, name: &str, active_low: bool) -> Self {
        Relay {
            line,
            active_low,
            name: name.to_string(),
        }
    }

    /// The physical level that means "power on".
    fn level(&self, on: bool) -> bool {
        on != self.active_low
    }
}

impl<L: OutputLine> Power for Relay<L> {
    fn on(&mut self) -> Result<()> {
        let level = self.level(true);
        self.line.set_level(level)
    }

    fn off(&mut self) -> Result<()> {
        let level = self.level(false);
        self.line.set_level(level)
    }

    fn describe(&self) -> String {
        let low = if self.active_low { ", active-low" } else { "" };
        format!("gpio relay {}{low}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Default)]
    struct FakeLine {
        levels: Vec<bool>,
    }

    impl OutputLine for FakeLine {
        fn set_level(&mut self, high: bool) -> Result<()> {
            self.levels.push(high);
            Ok(())
        }
    }

    #[test]
    fn relay_fake_active_high() {
        let mut r = Relay::with_line(FakeLine::default(), "gpiochip0:17", false);
        r.on().unwrap();
        r.off().unwrap();
        assert_eq!(r.line.levels, vec![true, false]);
        assert_eq!(r.describe(), "gpio relay gpiochip0:17");
    }

    #[test]
    fn relay_fake_active_low_inverts() {
        let mut r = Relay::with_line(FakeLine::default(), "gpiochip0:17", true);
        r.on().unwrap();
        r.off().unwrap();
        assert_eq!(r.line.levels, vec![false, true]);
        assert_eq!(r.describe(), "gpio relay gpiochip0:17, active-low");
    }

    #[test]
    fn relay_fake_cycle_is_off_then_on() {
        let mut r = Relay::with_line(FakeLine::default(), "x:1", true);
        r.cycle(Duration::from_millis(1)).unwrap();
        assert_eq!(r.line.levels, vec![true, false]);
    }

    #[test]
    fn a_chip_named_by_a_symlink_is_resolved_to_its_device() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("gpiochip4");
        std::fs::write(&dev, "").unwrap();
        let link = dir.path().join("gpio-relays");
        std::os::unix::fs::symlink("gpiochip4", &link).unwrap();
        let got = chip_path(&link.display().to_string()).unwrap().unwrap();
        assert_eq!(got, std::fs::canonicalize(&dev).unwrap());
        assert!(!std::fs::symlink_metadata(&got).unwrap().is_symlink());
        assert_eq!(chip_path("/nonexistent/gpiochip9").unwrap(), None);
    }

    #[test]
    fn a_symlink_reaches_the_gpio_check_instead_of_being_refused() {
        // /dev/null is a character device but not a GPIO chip: through a link, the error must
        // come from the GPIO check, not from the link not being a character device.
        if !Path::new("/sys/dev/char").is_dir() {
            return crate::testing::missing("/sys/dev/char (sysfs)");
        }
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("gpiochip-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let err = GpiodLine::open(&link.display().to_string(), 0)
            .err()
            .unwrap();
        assert!(matches!(err, Error::Input(_)));
        let msg = err.to_string();
        assert!(msg.contains("not a GPIO"), "{msg}");
        assert!(!msg.contains("not character device"), "{msg}");
    }

    #[test]
    fn a_missing_chip_is_one_input_line() {
        let err = Relay::open("gpiochip99", 3, false).err().unwrap();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(err.to_string(), "gpio chip gpiochip99 does not exist");
    }
}
