//! The syslog receiver's per-source limit: [`pserv_net::rate`]'s token buckets keyed by the
//! sender's address, with defaults for installers.
//!
//! The defaults ([`DEFAULT_LIMITS`]: 200 a second, bursts of 2,000, 65,536 sources) let an
//! installer through untouched (the Debian installer sends about 90 lines in its first 25 s, in
//! bursts of tens; a booting system forwarding its kernel log sends a thousand or two at once),
//! and stop one machine with a runaway logger from taking the receiver over.

pub use pserv_net::rate::{Limited, Limits, RateLimiter};

/// The receiver's limits unless configured.
pub const DEFAULT_LIMITS: Limits = Limits {
    rate: 200.0,
    burst: 2000,
    max_sources: 65_536,
};

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }
    #[test]
    fn the_default_lets_an_installers_first_minute_through() {
        // The Debian installer's pattern, generously: bursts of 50 every second for a minute,
        // then a 1,500-line burst (a booting system's kernel log).
        let mut l = RateLimiter::new(DEFAULT_LIMITS);
        let t0 = Instant::now();
        for s in 0..60 {
            let t = t0 + Duration::from_secs(s);
            for _ in 0..50 {
                assert_eq!(l.admit(t, ip(1)), Ok(()));
            }
        }
        let t = t0 + Duration::from_secs(61);
        for _ in 0..1500 {
            assert_eq!(l.admit(t, ip(1)), Ok(()));
        }
    }
}
