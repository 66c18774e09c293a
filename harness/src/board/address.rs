//! Finding a board's SSH address the way its rig says: a fixed address, its mDNS name, or
//! what the board itself prints on its console.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use crate::console::Console;
use crate::error::{Context, Error, Result};

/// The port balenaOS's SSH daemon listens on.
pub const SSH_PORT: u16 = 22222;

/// A fixed address: `IP`, `IP:PORT`, `NAME` or `NAME:PORT` (the port defaults to 22222).
pub fn fixed(spec: &str) -> Result<SocketAddr> {
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = spec.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, SSH_PORT));
    }
    let with_port = if spec.contains(':') {
        spec.to_string()
    } else {
        format!("{spec}:{SSH_PORT}")
    };
    with_port
        .to_socket_addrs()
        .input_ctx(|| format!("cannot resolve address `{spec}`"))?
        .next()
        .ok_or_else(|| Error::input(format!("address `{spec}` resolves to nothing")))
}

/// Whether a fixed address names its own port (then other services are not at their usual
/// ports on that address).
pub fn has_port(spec: &str) -> bool {
    spec.parse::<SocketAddr>().is_ok() || (spec.parse::<IpAddr>().is_err() && spec.contains(':'))
}

/// Resolves `host.local` over mDNS, waiting up to `timeout` for the board to announce it;
/// IPv4 first.
pub fn mdns(host: &str, timeout: Duration) -> Result<SocketAddr> {
    use mdns_sd::{HostnameResolutionEvent, ServiceDaemon};
    let fqdn = format!(
        "{}.local.",
        host.trim_end_matches('.').trim_end_matches(".local")
    );
    let daemon = ServiceDaemon::new().infra_ctx(|| "cannot start the mDNS resolver".into())?;
    let events = daemon
        .resolve_hostname(&fqdn, Some(timeout.as_millis() as u64))
        .infra_ctx(|| format!("cannot resolve {fqdn}"))?;
    let deadline = Instant::now() + timeout;
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(HostnameResolutionEvent::AddressesFound(_, addrs)) => {
                let mut ips: Vec<IpAddr> = addrs.iter().map(|a| a.to_ip_addr()).collect();
                ips.sort_by_key(|ip| !ip.is_ipv4());
                if let Some(ip) = ips.first() {
                    break Ok(SocketAddr::new(*ip, SSH_PORT));
                }
            }
            Ok(HostnameResolutionEvent::SearchTimeout(_)) | Err(_) => {
                break Err(Error::infra(format!(
                    "{fqdn} did not resolve by mDNS within {}s",
                    timeout.as_secs()
                )))
            }
            Ok(_) => {}
        }
    };
    let _ = daemon.shutdown();
    found
}

/// Logs in on the console and reads the board's first global IPv4 address, retrying until
/// `timeout` (DHCP may not have answered yet).
pub fn from_console(console: &Console, timeout: Duration) -> Result<SocketAddr> {
    let deadline = Instant::now() + timeout;
    console.login("root", timeout)?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, out) = console.run("ip -4 -o addr show scope global", left)?;
        if let Some(ip) = first_inet(&out) {
            return Ok(SocketAddr::new(ip, SSH_PORT));
        }
        if Instant::now() + Duration::from_secs(2) >= deadline {
            return Err(Error::infra(format!(
                "the board showed no IPv4 address on its console within {}s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The first `inet A.B.C.D/N` in `ip -o addr` output.
fn first_inet(out: &str) -> Option<IpAddr> {
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// The harness's own address on the route to `device` (what the device sees it as), unless
/// the device is this host.
pub fn local_towards(device: IpAddr) -> Option<IpAddr> {
    if device.is_loopback() {
        return None;
    }
    let any: SocketAddr = match device {
        IpAddr::V4(_) => "0.0.0.0:0".parse().ok()?,
        IpAddr::V6(_) => "[::]:0".parse().ok()?,
    };
    let sock = UdpSocket::bind(any).ok()?;
    sock.connect(SocketAddr::new(device, SSH_PORT)).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_addresses_default_to_the_ssh_port() {
        assert_eq!(
            fixed("192.168.50.13").unwrap().to_string(),
            "192.168.50.13:22222"
        );
        assert_eq!(
            fixed("127.0.0.1:40022").unwrap().to_string(),
            "127.0.0.1:40022"
        );
        assert_eq!(fixed("localhost").unwrap().port(), 22222);
        assert!(has_port("127.0.0.1:40022") && has_port("pi:22") && !has_port("10.0.0.1"));
        assert!(matches!(fixed("no such host!"), Err(Error::Input(_))));
    }

    #[test]
    fn reads_the_first_global_ipv4_from_ip_addr() {
        let out = "2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic eth0\\\n       valid_lft 86391sec\n3: wlan0    inet 192.168.1.9/24 scope global wlan0\n";
        assert_eq!(first_inet(out), Some("10.0.2.15".parse().unwrap()));
        assert_eq!(first_inet("nothing here"), None);
    }

    #[test]
    fn the_local_address_towards_a_loopback_device_is_none() {
        assert_eq!(local_towards("127.0.0.1".parse().unwrap()), None);
    }
}
