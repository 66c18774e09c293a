//! A private LAN for QEMU devices: the harness moves into a network namespace of its own with
//! a bridge, a tap per NIC, dnsmasq for DHCP and DNS and an NTP server ([`crate::ntp`], UDP
//! 123 on the harness's address), so it is a peer on the device's LAN (mDNS, the device's own
//! address, files served to it, time, a second NIC).
//!
//! The namespace belongs to the harness's process: when the harness and its children (QEMU,
//! dnsmasq, all with a parent-death signal) are gone, the kernel frees it, so nothing of it
//! outlives a run, even after `kill -9`. Addresses never leave the namespace.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::process::Child;

/// The LAN's subnet is 10.77.0.0/24; the harness is .1.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// A device's primary NIC: its MAC (fixed, so dnsmasq hands it a fixed address) and address.
pub fn dut_mac(nic: u8) -> String {
    format!("52:54:00:77:{nic:02x}:10")
}

/// The bridge's MAC (the harness's side of the LAN), the same in every namespace: a device
/// restored from a snapshot saved on another target's LAN finds the harness's address at the
/// MAC its neighbour cache holds, instead of waiting ~55 s for the stale entry to go.
pub const BRIDGE_MAC: &str = "52:54:00:77:00:01";

/// The address dnsmasq gives the device's primary NIC.
pub const DUT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);

/// The LAN, alive while this value is.
pub struct Lan {
    _dnsmasq: Child,
    _ntp: crate::ntp::Server,
    taps: u32,
}

impl Lan {
    /// Moves the calling thread (and every thread and process it starts from now on) into a
    /// new network namespace and sets the LAN up. `Ok(None)` with the reason when the
    /// process may not (no CAP_NET_ADMIN): the caller falls back to user networking.
    pub fn create(dir: &Path) -> Result<std::result::Result<Lan, String>> {
        // Making the namespace takes CAP_SYS_ADMIN, setting it up CAP_NET_ADMIN: check the
        // latter first, or a half-made namespace would cut the harness off.
        if !has_net_admin() {
            return Ok(Err("no CAP_NET_ADMIN".into()));
        }
        // nix's unshare: rustix's has needed an unchecked call since 1.1, for CLONE_FILES.
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            let e = std::io::Error::from(e);
            return Ok(Err(format!(
                "cannot make a network namespace ({e}); no CAP_NET_ADMIN?"
            )));
        }
        let host = format!("{HOST_IP}/24");
        ip(&["link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", "br0", "address", BRIDGE_MAC, "type", "bridge",
        ])?;
        ip(&["addr", "add", &host, "dev", "br0"])?;
        ip(&["link", "set", "br0", "up"])?;
        let log = dir.join("dnsmasq.log");
        // dnsmasq changes its credentials, which clears its parent-death signal; a shell
        // that keeps it gets SIGTERM when the harness dies and takes dnsmasq with it.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "trap 'kill $d 2>/dev/null' TERM INT; dnsmasq \"$@\" & d=$!; wait $d",
            "sh",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--interface=br0",
            "--except-interface=lo",
            "--user=root",
            "--pid-file",
            "--dhcp-range=10.77.0.100,10.77.0.200,255.255.255.0,1h",
            "--dhcp-option=option:router,10.77.0.1",
            "--dhcp-option=option:dns-server,10.77.0.1",
            // A name only the LAN's DNS knows, to prove the device resolves through it.
            "--address=/harness.lan/10.77.0.1",
            "--dhcp-authoritative",
        ])
        .arg(format!("--dhcp-host={},{DUT_IP}", dut_mac(0)))
        .arg(format!(
            "--dhcp-leasefile={}",
            dir.join("dnsmasq.leases").display()
        ))
        .arg(format!("--log-facility={}", log.display()))
        .arg("--log-dhcp")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut dnsmasq = Child::spawn_with_death_signal(
            cmd,
            "dnsmasq (install Debian's dnsmasq-base)",
            rustix::process::Signal::TERM,
        )?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        if let Some(status) = dnsmasq.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(Error::infra(format!(
                "dnsmasq exited ({status}): {}",
                text.lines().last().unwrap_or("")
            )));
        }
        // Its thread is started from this one, so it answers inside the namespace.
        let ntp = crate::ntp::Server::start(std::net::SocketAddr::from((HOST_IP, 123)))?;
        Ok(Ok(Lan {
            _dnsmasq: dnsmasq,
            _ntp: ntp,
            taps: 0,
        }))
    }

    /// Adds a tap on the bridge for a QEMU NIC; returns its name.
    pub fn add_tap(&mut self) -> Result<String> {
        let name = format!("tap{}", self.taps);
        self.taps += 1;
        ip(&["tuntap", "add", "dev", &name, "mode", "tap"])?;
        ip(&["link", "set", &name, "master", "br0"])?;
        ip(&["link", "set", &name, "up"])?;
        Ok(name)
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::input(format!("cannot run `ip` (install Debian's iproute2): {e}")))?;
    if !out.status.success() {
        return Err(Error::infra(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// CAP_NET_ADMIN's bit in the capability sets (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process has CAP_NET_ADMIN in its effective set (`CapEff`).
fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real SNTP client (Debian's `sntp`) inside the LAN's namespace gets the host's time
    /// from the harness's address, and the server goes with the LAN.
    #[test]
    fn the_lan_serves_ntp_on_the_harness_address() {
        if !has_net_admin() {
            return crate::testing::missing("CAP_NET_ADMIN, to make a network namespace");
        }
        if Command::new("sntp").arg("--version").output().is_err() {
            return crate::testing::missing("sntp (Debian's sntp)");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        // The namespace is the thread's: a thread of its own leaves the test runner's alone.
        let (out, freed) = std::thread::spawn(move || {
            let lan = Lan::create(&path).unwrap().unwrap();
            let out = Command::new("timeout")
                .args(["20", "sntp", "-t", "3", &HOST_IP.to_string()])
                .output()
                .unwrap();
            drop(lan);
            // The bridge stays while this thread lives; the server's socket went with the LAN.
            let freed = std::net::UdpSocket::bind((HOST_IP, 123)).is_ok();
            (out, freed)
        })
        .join()
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        // e.g. `2026-01-01 12:00:00.000 (+0000) +0.000012 +/- 0.000102 10.77.0.1 s2 no-leap`
        let line = text
            .lines()
            .find(|l| l.contains("10.77.0.1 s2"))
            .unwrap_or_else(|| panic!("{text}"));
        let offset: f64 = line
            .split_whitespace()
            .find_map(|w| w.parse().ok().filter(|_| w.starts_with(['+', '-'])))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(offset.abs() < 0.5, "{line}");
        assert!(line.contains("no-leap"), "{line}");
        assert!(freed, "the NTP server outlived its LAN");
        eprintln!("{line}");
    }
}
