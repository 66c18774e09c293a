//! A device under test, whatever plays it: the seam between the runner and QEMU or a board.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config::suite::Capability;
use crate::console::Console;
use crate::device::Power;
use crate::error::Result;
use crate::image::configure::Change;
use crate::image::partitions::Partition;

/// One device the runner drives.
pub trait Target {
    /// The target's name for reports (`qemux86-64`, `rig pi4-1`).
    fn name(&self) -> String;
    /// Its power switch.
    fn power(&mut self) -> &mut dyn Power;
    /// Its serial console.
    fn console(&self) -> &Console;
    /// Where its SSH daemon (port 22222) is reached from the harness.
    fn ssh_addr(&mut self, timeout: Duration) -> Result<SocketAddr>;
    /// Where its engine's TCP API (port 2375) is reached from the harness.
    fn engine_addr(&self) -> Option<SocketAddr>;
    /// The harness's own address as the device sees it (to serve it files).
    fn host_addr(&self) -> Option<IpAddr>;
    /// Where the harness binds servers the device should reach at [`Target::host_addr`].
    fn serve_addr(&self) -> IpAddr;
    /// What it can do beyond the basics.
    fn capabilities(&self) -> Vec<Capability>;
    /// Puts a fresh copy of the image on the device's storage (power must be off).
    fn fresh_image(&mut self) -> Result<()>;
    /// Changes files in the image's boot partition (power must be off).
    fn configure_image(&mut self, changes: &[Change]) -> Result<()>;
    /// Makes `image` (with its boot partition `boot`) the one the next
    /// [`Target::fresh_image`] puts on the device: the known-good image for a check of the
    /// target itself, then the image under test again.
    fn use_image(&mut self, image: &Path, boot: &Partition);
    /// Lines about the set-up for the report (accelerator, network).
    fn notes(&self) -> Vec<String>;
    /// Fails, as an infrastructure error naming why and with the console's last lines, when
    /// the device is gone while it should be running: its console transport closed or failed
    /// (a UART unplugged, QEMU exited). Cheap: called every fraction of a second in waits.
    fn alive(&mut self) -> Result<()> {
        match self.console().lost() {
            Some(why) => Err(crate::Error::infra(format!(
                "{why}: the device is gone (console: {})",
                self.console().last_lines(3)
            ))),
            None => Ok(()),
        }
    }
    /// What a snapshot of this target's freshly booted device depends on, as text the runner
    /// hashes into the snapshot's key with the image's changes (see `runner::snapshots`);
    /// `None` for a target that cannot save and restore itself (a board, the emulated rig):
    /// its fresh devices always boot.
    fn snapshot_identity(&self) -> Option<String> {
        None
    }
    /// Saves the running device into the folder `dir` (its state, disk layer and firmware
    /// variables); the device is off afterwards. Only for a target with a
    /// [`Target::snapshot_identity`].
    fn save_snapshot(&mut self, dir: &Path) -> Result<()> {
        let _ = dir;
        Err(crate::Error::infra(format!(
            "{} cannot save snapshots",
            self.name()
        )))
    }
    /// Starts the device from the snapshot in `dir`, running where it was saved, its disk a
    /// new layer over the saved one. Only for a target with a [`Target::snapshot_identity`].
    fn restore_snapshot(&mut self, dir: &Path) -> Result<()> {
        let _ = dir;
        Err(crate::Error::infra(format!(
            "{} cannot restore snapshots",
            self.name()
        )))
    }
    /// Ends the run: the device is powered off; `keep` keeps work files for a post-mortem.
    fn finish(&mut self, keep: bool) {
        let _ = keep;
        let _ = self.power().off();
    }
}
