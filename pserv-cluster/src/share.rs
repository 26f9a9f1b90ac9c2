//! Which instance answers which clients: the 256 client buckets (RFC 3074 §5: a hash of the
//! client identifier) are spread over the live instances by rendezvous hashing, so when an
//! instance dies only its buckets move (each to the survivor that ranks next for it), and when
//! it comes back it gets the same buckets again. Every instance computes the same assignment
//! from the same member list.

use pserv_core::lease::Share;

/// The weight of instance `name` for bucket `b`: the highest weight owns the bucket.
fn weight(name: &str, b: u8) -> u64 {
    // FNV-1a over the name and the bucket, then a 64-bit finalizer (splitmix64) so that
    // similar names do not rank alike.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes().iter().chain(std::iter::once(&b)) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The instance among `members` that owns bucket `b` (none without members).
pub fn owner<'a>(members: impl IntoIterator<Item = &'a str>, b: u8) -> Option<&'a str> {
    members
        .into_iter()
        .max_by(|x, y| weight(x, b).cmp(&weight(y, b)).then_with(|| x.cmp(y)))
}

/// The buckets `me` owns among `members` (which it is counted in, whether or not listed).
pub fn buckets<'a>(me: &'a str, members: impl IntoIterator<Item = &'a str> + Clone) -> [u64; 4] {
    let mut share = Share::NONE;
    for b in 0..=255u8 {
        let all = members.clone().into_iter().chain(std::iter::once(me));
        share.set(b, owner(all, b) == Some(me));
    }
    share.buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(b: [u64; 4]) -> u32 {
        b.iter().map(|w| w.count_ones()).sum()
    }

    #[test]
    fn every_bucket_has_exactly_one_owner() {
        let names = ["pserv-a", "pserv-b", "pserv-c"];
        let mut total = 0;
        let mut seen = [0u8; 256];
        for me in names {
            let b = buckets(me, names);
            total += count(b);
            let s = Share {
                buckets: b,
                allocate: true,
                all_reserved: false,
                slot: (0, 1),
                busy: false,
            };
            for k in 0..=255u8 {
                if s.answers(k) {
                    seen[usize::from(k)] += 1;
                }
            }
            // Roughly a third each.
            assert!((50..=120).contains(&count(b)), "{me}: {}", count(b));
        }
        assert_eq!(total, 256);
        assert!(seen.iter().all(|n| *n == 1));
    }

    #[test]
    fn only_the_dead_instances_buckets_move() {
        let before = ["a", "b", "c"];
        let after = ["a", "c"];
        for k in 0..=255u8 {
            let was = owner(before, k);
            let now = owner(after, k);
            if was != Some("b") {
                assert_eq!(was, now, "bucket {k} moved without cause");
            } else {
                assert!(now.is_some());
            }
        }
        // A lone instance answers everything.
        assert_eq!(count(buckets("a", [])), 256);
    }
}
