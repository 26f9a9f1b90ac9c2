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

/// Writes the normalized form of `name` into `buf` and returns it, without allocating; `None`
/// when the name cannot be a valid domain name (too long).
pub fn normalize_into<'b>(name: &[u8], buf: &'b mut [u8; MAX_NAME_LEN]) -> Option<&'b [u8]> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, c) in out.iter_mut().zip(name) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
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
    fn normalizing_without_allocation() {
        let mut buf = [0u8; MAX_NAME_LEN];
        assert_eq!(
            normalize_into(b"AbC.Maas.", &mut buf),
            Some(&b"abc.maas"[..])
        );
        assert_eq!(normalize("AbC.Maas."), "abc.maas");
        assert_eq!(normalize_into(&[b'a'; 254], &mut buf), None);
    }
}
