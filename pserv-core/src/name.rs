//! RFC 1123 host names and domains, and the case-insensitive form the table indexes by.

/// The longest domain name in text form, without the trailing dot (RFC 1035: 255 octets on the
/// wire).
pub const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Checks one RFC 1123 label: 1 to 63 letters, digits and hyphens, not starting or ending with a
/// hyphen.
pub fn check_label(label: &str) -> Result<(), &'static str> {
    let b = label.as_bytes();
    if b.is_empty() {
        return Err("empty label");
    }
    if b.len() > MAX_LABEL_LEN {
        return Err("label longer than 63 characters");
    }
    if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
        return Err("only letters, digits and '-' are allowed");
    }
    if b[0] == b'-' || b[b.len() - 1] == b'-' {
        return Err("a label cannot start or end with '-'");
    }
    Ok(())
}

/// Checks a host name: exactly one label.
pub fn check_hostname(name: &str) -> Result<(), &'static str> {
    if name.contains('.') {
        return Err("a hostname is one label; put the rest in `domain`");
    }
    check_label(name)
}

/// Checks a domain: dot-separated labels, an optional trailing dot, at most 253 characters.
pub fn check_domain(name: &str) -> Result<(), &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty domain");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 253 characters");
    }
    name.split('.').try_for_each(check_label)
}

/// The form names are compared and indexed in: ASCII lower case, without a trailing dot.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(check_label("a").is_ok());
        assert!(check_label("node-01").is_ok());
        assert!(
            check_label("0node").is_ok(),
            "RFC 1123 allows a leading digit"
        );
        assert!(check_label(&"a".repeat(63)).is_ok());
        assert!(check_label(&"a".repeat(64)).is_err());
        assert!(check_label("-a").is_err());
        assert!(check_label("a-").is_err());
        assert!(check_label("a_b").is_err());
        assert!(check_label("").is_err());
        assert!(check_label("ä").is_err());
    }

    #[test]
    fn domains() {
        assert!(check_domain("maas").is_ok());
        assert!(check_domain("lab.example.").is_ok());
        assert!(check_domain("lab..example").is_err());
        assert!(check_domain(".").is_err());
        let long = ["a".repeat(63).as_str(); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(check_domain(&long).is_err());
        assert!(check_domain(&long[..253]).is_ok());
        assert!(check_hostname("a.b").is_err());
    }

    #[test]
    fn normalizing() {
        assert_eq!(normalize("AbC.Maas."), "abc.maas");
    }
}

/// Lower-cases the ASCII letters of eight bytes at once (other bytes are unchanged).
#[inline]
fn lower8(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let heptets = x & LOW7;
    // Bit 7 of each byte: set where the byte is above 'Z', and where it is at least 'A'.
    let above_z = heptets.wrapping_add(0x2525_2525_2525_2525);
    let from_a = heptets.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
    let upper = !x & HIGH & (from_a ^ above_z);
    x | (upper >> 2)
}

#[inline]
fn word(c: &[u8]) -> u64 {
    u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
}

/// Hashes a name ASCII case-insensitively, eight bytes at a time, without copying it. The name
/// must not carry a trailing dot (strip it first) so that `a.b` and `a.b.` hash alike.
///
/// A multiply-xorshift over lower-cased words with a murmur3 finalizer: a fraction of the cost
/// of a general-purpose streaming hasher for a typical name, with full avalanche so hashbrown's
/// bucket bits and tag bits are both well mixed. It needs no flood resistance: only the
/// controller's names are ever inserted; a query only probes. A name of eight bytes or more
/// ends with its *last* eight bytes (overlapping the previous word) instead of a copied,
/// zero-padded tail.
#[inline]
pub fn hash_folded(seed: u64, name: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let n = name.len();
    let mut h = seed ^ (n as u64).wrapping_mul(K);
    let mut mix = |w: u64| {
        h = (h ^ lower8(w)).wrapping_mul(K);
        h ^= h >> 29;
    };
    if n < 8 {
        let mut w = 0u64;
        for (i, b) in name.iter().enumerate() {
            w |= u64::from(*b) << (8 * i);
        }
        mix(w);
    } else {
        let mut at = 0;
        while at + 8 <= n {
            mix(word(&name[at..at + 8]));
            at += 8;
        }
        if at < n {
            mix(word(&name[n - 8..]));
        }
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether `lower` (already normalized) equals `name` compared ASCII case-insensitively.
#[inline]
pub fn eq_folded(lower: &[u8], name: &[u8]) -> bool {
    let n = name.len();
    if lower.len() != n {
        return false;
    }
    if n < 8 {
        return lower
            .iter()
            .zip(name)
            .all(|(a, b)| *a == b.to_ascii_lowercase());
    }
    let mut at = 0;
    while at + 8 <= n {
        if word(&lower[at..at + 8]) != lower8(word(&name[at..at + 8])) {
            return false;
        }
        at += 8;
    }
    at == n || word(&lower[n - 8..]) == lower8(word(&name[n - 8..]))
}

#[cfg(test)]
mod folded_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lower8_matches_std(bytes in any::<[u8; 8]>()) {
            let got = lower8(u64::from_le_bytes(bytes)).to_le_bytes();
            prop_assert_eq!(got, bytes.map(|b| b.to_ascii_lowercase()));
        }

        #[test]
        fn folded_hash_and_eq_ignore_ascii_case(name in "[a-zA-Z0-9.\\-]{0,40}", flip in any::<u64>()) {
            let s = 0x1234_5678_9abc_def0;
            let lower = name.to_ascii_lowercase();
            let mixed: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| if flip >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            prop_assert_eq!(hash_folded(s, lower.as_bytes()), hash_folded(s, mixed.as_bytes()));
            prop_assert!(eq_folded(lower.as_bytes(), mixed.as_bytes()));
            let longer = format!("{lower}x");
            prop_assert!(!eq_folded(longer.as_bytes(), mixed.as_bytes()));
        }
    }

    #[test]
    fn non_ascii_bytes_are_not_folded() {
        // 0xC1 would become 0xE1 if the high bit were ignored.
        assert!(!eq_folded(&[0xE1], &[0xC1]));
    }
}
