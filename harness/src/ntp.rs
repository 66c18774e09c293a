//! A small SNTP server (RFC 4330, the server side of RFC 5905): mode 4 replies from the host's
//! clock, so a device on the private LAN can set its time from the harness. It answers client
//! (mode 3) requests only, on a thread of its own, and stops when its [`Server`] is dropped.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Context, Result};

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// An NTP packet without extensions.
const LEN: usize = 48;

/// The stratum the harness claims: one below a reference clock, as a host synchronised to one.
pub const STRATUM: u8 = 2;

/// The reference id: `LOCL`, the host's own clock.
pub const REFID: [u8; 4] = *b"LOCL";

/// How often the server looks up from its socket to see whether it must stop.
const SLICE: Duration = Duration::from_millis(200);

/// `t` as an NTP timestamp: seconds since 1900 in the high 32 bits, the fraction in the low 32
/// (era 0 wraps in 2036, as on the wire).
pub fn timestamp(t: SystemTime) -> u64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = (since.as_secs() + NTP_UNIX_OFFSET) & 0xffff_ffff;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The Unix time an NTP timestamp of era 0 stands for.
pub fn to_system_time(ts: u64) -> SystemTime {
    let secs = (ts >> 32).saturating_sub(NTP_UNIX_OFFSET);
    let nanos = ((ts & 0xffff_ffff) * 1_000_000_000) >> 32;
    UNIX_EPOCH + Duration::new(secs, nanos as u32)
}

/// A 16.16 fixed-point number of seconds (root delay, root dispersion).
fn short(d: Duration) -> u32 {
    let v = (d.as_nanos() << 16) / 1_000_000_000;
    v.min(u128::from(u32::MAX)) as u32
}

/// The reply to `request`, received at `received`, to be sent at `transmit`; `None` when
/// `request` is no client request (too short, or a mode other than 3).
pub fn answer(request: &[u8], received: SystemTime, transmit: SystemTime) -> Option<[u8; LEN]> {
    if request.len() < LEN {
        return None;
    }
    let version = (request[0] >> 3) & 0x7;
    let mode = request[0] & 0x7;
    if mode != 3 || !(1..=4).contains(&version) {
        return None;
    }
    let mut out = [0u8; LEN];
    // Leap indicator 0 (no warning), the client's version, mode 4 (server).
    out[0] = (version << 3) | 4;
    out[1] = STRATUM;
    out[2] = request[2]; // poll: the client's
    out[3] = (-20i8) as u8; // precision: about a microsecond
    out[4..8].copy_from_slice(&short(Duration::from_micros(100)).to_be_bytes());
    out[8..12].copy_from_slice(&short(Duration::from_millis(1)).to_be_bytes());
    out[12..16].copy_from_slice(&REFID);
    // The reference time: when the host's clock was last "set", a moment before this request.
    let reference = received
        .checked_sub(Duration::from_secs(1))
        .unwrap_or(received);
    out[16..24].copy_from_slice(&timestamp(reference).to_be_bytes());
    // Originate: the client's transmit timestamp, echoed.
    out[24..32].copy_from_slice(&request[40..48]);
    out[32..40].copy_from_slice(&timestamp(received).to_be_bytes());
    out[40..48].copy_from_slice(&timestamp(transmit).to_be_bytes());
    Some(out)
}

/// The server: its thread answers until this value is dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (UDP) and answers there on a new thread; the thread is in the calling
    /// thread's network namespace.
    pub fn start(addr: SocketAddr) -> Result<Server> {
        let socket = UdpSocket::bind(addr).infra_ctx(|| format!("cannot bind NTP on {addr}"))?;
        socket
            .set_read_timeout(Some(SLICE))
            .infra_ctx(|| "cannot set the NTP socket's timeout".into())?;
        let addr = socket
            .local_addr()
            .infra_ctx(|| "cannot read the NTP socket's address".into())?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ntp".into())
            .spawn(move || serve(&socket, &flag))
            .infra_ctx(|| "cannot start the NTP thread".into())?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    /// Stops the thread: it sees the flag within [`SLICE`].
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, stop: &AtomicBool) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let received = SystemTime::now();
        if let Some(reply) = answer(&buf[..n], received, SystemTime::now()) {
            let _ = socket.send_to(&reply, peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: u8, mode: u8, transmit: u64) -> [u8; LEN] {
        let mut r = [0u8; LEN];
        r[0] = (version << 3) | mode;
        r[2] = 6;
        r[40..48].copy_from_slice(&transmit.to_be_bytes());
        r
    }

    #[test]
    fn timestamps_count_from_1900_in_32_32_fixed_point() {
        assert_eq!(timestamp(UNIX_EPOCH), 2_208_988_800 << 32);
        let half = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(timestamp(half), ((2_208_988_801) << 32) | 0x8000_0000);
        // 2026-01-01T00:00:00Z, as `ntpq` would print it: 0xed0... seconds.
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(timestamp(t) >> 32, 1_767_225_600 + 2_208_988_800);
        let now = SystemTime::now();
        let back = to_system_time(timestamp(now));
        let diff = now.duration_since(back).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_micros(1), "{diff:?}");
    }

    #[test]
    fn a_client_request_gets_a_server_reply_that_echoes_its_transmit_time() {
        let rx = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let tx = rx + Duration::from_millis(2);
        let reply = answer(&request(4, 3, 0x1122_3344_5566_7788), rx, tx).unwrap();
        assert_eq!(reply[0], (4 << 3) | 4, "leap 0, version 4, mode 4");
        assert_eq!(reply[1], STRATUM);
        assert_eq!(reply[2], 6, "the client's poll");
        assert_eq!(reply[3] as i8, -20);
        let root_delay = u32::from_be_bytes(reply[4..8].try_into().unwrap());
        let root_disp = u32::from_be_bytes(reply[8..12].try_into().unwrap());
        assert!(
            root_delay > 0 && root_delay < 0x0000_0100,
            "{root_delay:#x}"
        );
        assert!(root_disp > 0 && root_disp < 0x0000_1000, "{root_disp:#x}");
        assert_eq!(&reply[12..16], b"LOCL");
        let at = |i: usize| u64::from_be_bytes(reply[i..i + 8].try_into().unwrap());
        assert_eq!(
            at(24),
            0x1122_3344_5566_7788,
            "originate = the client's transmit"
        );
        assert_eq!(at(32), timestamp(rx));
        assert_eq!(at(40), timestamp(tx));
        assert!(at(16) < at(32) && at(16) != 0, "reference before receive");
        // Version 3 clients get version 3.
        assert_eq!(answer(&request(3, 3, 1), rx, tx).unwrap()[0], (3 << 3) | 4);
    }

    #[test]
    fn anything_but_a_client_request_is_ignored() {
        let now = SystemTime::now();
        assert!(
            answer(&request(4, 4, 1), now, now).is_none(),
            "a server reply"
        );
        assert!(
            answer(&request(4, 6, 1), now, now).is_none(),
            "a control message"
        );
        assert!(answer(&request(0, 3, 1), now, now).is_none(), "version 0");
        assert!(answer(&[0x23; 20], now, now).is_none(), "too short");
    }

    #[test]
    fn the_server_answers_on_its_socket_and_stops_when_dropped() {
        let server = Server::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let sent = timestamp(SystemTime::now());
        client.send_to(&request(4, 3, sent), server.addr()).unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(n, LEN);
        assert_eq!(buf[0] & 7, 4);
        assert_eq!(u64::from_be_bytes(buf[24..32].try_into().unwrap()), sent);
        let served = to_system_time(u64::from_be_bytes(buf[40..48].try_into().unwrap()));
        let off = SystemTime::now()
            .duration_since(served)
            .unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(1), "{off:?}");
        let began = std::time::Instant::now();
        let addr = server.addr();
        drop(server);
        assert!(began.elapsed() < Duration::from_secs(1));
        // The port is free again: the thread and its socket are gone.
        UdpSocket::bind(addr).unwrap();
    }
}
