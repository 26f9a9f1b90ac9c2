//! Option-length checks before dhcproto decodes a packet.
//!
//! dhcproto 0.15 asserts option lengths with `debug_assert!` for a few codes (found by fuzzing
//! it): a malformed packet would panic wherever debug assertions are on (tests, fuzzing). This
//! walk of the raw options rejects those packets first, so the decoder only ever sees lengths
//! it handles. It never panics and never allocates.

/// The first byte of the options area: 236 bytes of BOOTP header, then the magic cookie.
const OPTIONS_AT: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// A length dhcproto would assert on: `(code, the allowed length)`.
fn allowed(code: u8, len: usize) -> bool {
    match code {
        // Rapid Commit: no data.
        80 => len == 0,
        // Client FQDN: flags and two rcodes, then the name.
        81 => len >= 3,
        // Client Network Interface Identifier (RFC 4578): type, major, minor.
        94 => len == 3,
        // Bulk leasequery times.
        152..=155 => len == 4,
        _ => true,
    }
}

/// Why a packet is refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a BOOTP header plus the magic cookie, or without the cookie.
    Header,
    /// A hardware address length over the 16 bytes of `chaddr` (dhcproto's `chaddr()` would
    /// slice out of bounds: found by this crate's property test).
    HardwareLength,
    /// An option runs past the end of the packet.
    Truncated,
    /// An option's length is not one its code allows.
    OptionLength(u8),
}

/// Checks the framing of every option and the lengths of the codes listed in [`allowed`].
pub fn check(packet: &[u8]) -> Result<(), Malformed> {
    if packet.len() < OPTIONS_AT || packet[236..240] != MAGIC {
        return Err(Malformed::Header);
    }
    if packet[2] > 16 {
        return Err(Malformed::HardwareLength);
    }
    let mut at = OPTIONS_AT;
    while at < packet.len() {
        match packet[at] {
            0 => at += 1,
            255 => return Ok(()),
            code => {
                let len = usize::from(*packet.get(at + 1).ok_or(Malformed::Truncated)?);
                if at + 2 + len > packet.len() {
                    return Err(Malformed::Truncated);
                }
                if !allowed(code, len) {
                    return Err(Malformed::OptionLength(code));
                }
                at += 2 + len;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(options: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 236];
        p[0] = 1;
        p.extend_from_slice(&MAGIC);
        p.extend_from_slice(options);
        p
    }

    /// Regression inputs: each made dhcproto 0.15 panic under debug assertions.
    #[test]
    fn option_94_152_to_155_and_80_81_lengths_rejected() {
        for (opts, code) in [
            (&[53, 1, 1, 94, 2, 1, 2, 255][..], 94),
            (&[53, 1, 1, 152, 3, 0, 0, 0, 255][..], 152),
            (&[53, 1, 1, 155, 5, 0, 0, 0, 0, 0, 255][..], 155),
            (&[80, 1, 0, 255][..], 80),
            (&[81, 2, 0, 0, 255][..], 81),
        ] {
            assert_eq!(check(&packet(opts)), Err(Malformed::OptionLength(code)));
        }
        assert_eq!(check(&packet(&[53, 1, 1, 94, 3, 1, 2, 3, 255])), Ok(()));
        assert_eq!(
            check(&packet(&[53, 1, 1, 61, 7, 1])),
            Err(Malformed::Truncated)
        );
        assert_eq!(check(&packet(&[53])), Err(Malformed::Truncated));
        assert_eq!(check(&[0u8; 100]), Err(Malformed::Header));
        let mut long_hlen = packet(&[53, 1, 1, 255]);
        long_hlen[2] = 92;
        assert_eq!(check(&long_hlen), Err(Malformed::HardwareLength));
    }

    /// With the guard in front, dhcproto's decoder survives the inputs that made it panic.
    #[test]
    fn decoder_never_sees_the_panicking_lengths() {
        use dhcproto::{Decodable, v4};
        for opts in [&[53, 1, 1, 94, 0, 255][..], &[53, 1, 1, 153, 1, 7, 255][..]] {
            let p = packet(opts);
            if check(&p).is_ok() {
                let _ = v4::Message::from_bytes(&p);
            }
        }
    }
}
