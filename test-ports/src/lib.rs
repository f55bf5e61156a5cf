//! Loopback ports for end-to-end tests.
//!
//! A test picks ports first and starts the processes that listen on them later, often seconds
//! later (a node must be up before a bridge starts). Asking the OS for port 0 and releasing it
//! leaves that whole window open: the released port is in the ephemeral range, and every
//! outgoing connection of every test running in parallel draws from that range. CI once lost a
//! run that way ("MQTT front on 127.0.0.1:39733: Address already in use").
//!
//! So ports are handed out from just below the ephemeral range, which the OS never assigns to
//! outgoing connections or to `bind(0)`. The OS still decides: a port is handed out only if
//! binding it succeeds right now. A process-wide cursor keeps parallel tests in one binary from
//! receiving the same port, and each process starts at its own offset, so two test binaries
//! running side by side are unlikely to meet.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the kernel keeps the range it assigns ephemeral ports from.
const EPHEMERAL_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// The Linux default lower bound, used when the range cannot be read.
const DEFAULT_EPHEMERAL_LOW: u16 = 32768;
/// How many ports below the ephemeral range are used at most.
const SPAN: u16 = 16384;
/// Ports below this need privileges on most systems.
const FIRST_UNPRIVILEGED: u16 = 1024;

static CURSOR: AtomicU32 = AtomicU32::new(0);

/// A loopback port that was free when this returned and that no outgoing connection or
/// `bind(0)` on this machine will be given. Falls back to an OS-assigned port if the range
/// below the ephemeral ports is too small or full.
pub fn free_port() -> u16 {
    let (first, len) = stable_range(ephemeral_low());
    let start = u32::from(std::process::id() as u16);
    pick(first, len, start, &CURSOR).unwrap_or_else(|| {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("no loopback port is free")
    })
}

/// The next port of `first..first + len` after `start + cursor` that can be bound now.
fn pick(first: u16, len: u16, start: u32, cursor: &AtomicU32) -> Option<u16> {
    for _ in 0..len {
        let step = cursor.fetch_add(1, Ordering::Relaxed);
        let port = first + (start.wrapping_add(step) % u32::from(len)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Some(port);
        }
    }
    None
}

/// The lowest port the kernel assigns on its own.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string(EPHEMERAL_RANGE)
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW)
}

/// The first port and the length of the range handed out, below `ephemeral_low`.
fn stable_range(ephemeral_low: u16) -> (u16, u16) {
    let first = ephemeral_low.saturating_sub(SPAN).max(FIRST_UNPRIVILEGED);
    (first, ephemeral_low.saturating_sub(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_stay_below_the_ephemeral_range_and_are_not_repeated() {
        let low = ephemeral_low();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        if stable_range(low).1 > 200 {
            assert!(ports.iter().all(|&p| p < low), "{ports:?} reach {low}");
        }
    }

    #[test]
    fn a_range_without_room_below_it_is_empty() {
        assert_eq!(stable_range(1024).1, 0);
        assert_eq!(stable_range(32768), (16384, 16384));
        assert_eq!(stable_range(2000), (1024, 976));
    }

    #[test]
    fn a_port_something_listens_on_is_skipped() {
        let (first, len) = stable_range(ephemeral_low());
        if len < 2 {
            return;
        }
        let cursor = AtomicU32::new(0);
        let port = pick(first, len, 0, &cursor).expect("a free port");
        // Hold the port the next call would see first, as a started process would.
        let _listening = TcpListener::bind(("127.0.0.1", port)).expect("bind");
        cursor.store(0, Ordering::Relaxed);
        let next = pick(first, len, 0, &cursor).expect("a free port");
        assert_ne!(next, port, "a port in use was handed out");
    }
}
