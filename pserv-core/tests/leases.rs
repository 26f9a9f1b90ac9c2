//! Dynamic leases, scripted on virtual time.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use pserv_core::lease::{Change, LeaseState, Leases, OFFER_HOLD_SECONDS, Refusal};
use pserv_core::snapshot::Snapshot;
use pserv_core::{MacAddr, Table};

const T0: u64 = 1_700_000_000;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

/// A /24 with a pool of `pool` addresses from .100, and `nodes` as (mac, reservation).
fn table(generation: u64, pool: (u8, u8), nodes: &[(u8, Option<u8>)]) -> Table {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|(m, r)| {
            let ipv4 = r.map_or(String::new(), |r| format!(r#", "ipv4": "10.0.0.{r}""#));
            format!(
                r#"{{"id": "n{m}", "hostname": "n{m}", "domain": "lab",
                   "interfaces": [{{"mac": "{}"{ipv4}}}]}}"#,
                mac(*m)
            )
        })
        .collect();
    let json = format!(
        r#"{{"generation": {generation},
            "subnets": [{{"cidr": "10.0.0.0/24", "lease_seconds": 600, "decline_seconds": 900,
                          "dynamic": [{{"start": "10.0.0.{}", "end": "10.0.0.{}"}}]}}],
            "nodes": [{}]}}"#,
        pool.0,
        pool.1,
        nodes.join(",")
    );
    Table::compile(&Snapshot::from_json(json.as_bytes()).unwrap(), None).unwrap()
}

#[test]
fn offer_commit_renew_release() {
    let t = table(1, (100, 102), &[]);
    let s = &t.subnets()[0];
    let mut l = Leases::new();
    let a = l.offer(&t, s, mac(1), None, Some("box"), T0).unwrap();
    assert_eq!(a, ip(100));
    assert_eq!(l.lease(mac(1)).unwrap().state, LeaseState::Offered);
    let c = l.commit(&t, s, mac(1), a, Some("box"), T0 + 1).unwrap();
    assert_eq!(
        c,
        Change::Bound {
            mac: mac(1),
            client_id: None,
            ip: a,
            start: T0 + 1,
            expires: T0 + 601,
            hostname: Some("box".into())
        }
    );
    // Renewal keeps the address and extends the lease.
    l.commit(&t, s, mac(1), a, None, T0 + 300).unwrap();
    assert_eq!(l.bound(mac(1), T0 + 800).unwrap().expires, T0 + 900);
    // A rediscover of a bound client offers its address without downgrading the lease.
    assert_eq!(l.offer(&t, s, mac(1), None, None, T0 + 301), Some(a));
    assert_eq!(l.lease(mac(1)).unwrap().state, LeaseState::Bound);
    assert_eq!(
        l.release(mac(1), ip(101)),
        None,
        "release of an address it does not hold"
    );
    assert_eq!(
        l.release(mac(1), a),
        Some(Change::Released {
            mac: mac(1),
            client_id: None,
            ip: a
        })
    );
    assert!(l.holder(a, T0 + 302).is_none());
    // Next fit: the next client gets the next address, not the one just freed.
    assert_eq!(l.offer(&t, s, mac(2), None, None, T0 + 303), Some(ip(101)));
}

#[test]
fn never_offers_an_address_someone_holds() {
    let t = table(1, (100, 102), &[]);
    let s = &t.subnets()[0];
    let mut l = Leases::new();
    for n in 1..=3 {
        let a = l.offer(&t, s, mac(n), None, None, T0).unwrap();
        l.commit(&t, s, mac(n), a, None, T0).unwrap();
    }
    // Pool exhausted: nobody else gets an address, and asking for a held one does not help.
    assert_eq!(l.offer(&t, s, mac(4), Some(ip(101)), None, T0 + 1), None);
    assert_eq!(
        l.commit(&t, s, mac(4), ip(101), None, T0 + 1),
        Err(Refusal::HeldByOther(ip(101)))
    );
    // Releasing one frees exactly that one.
    l.release(mac(2), ip(101)).unwrap();
    assert_eq!(l.offer(&t, s, mac(4), None, None, T0 + 2), Some(ip(101)));
    // Once a lease expires its address can go to someone else.
    assert_eq!(l.offer(&t, s, mac(5), None, None, T0 + 3), None);
    // (next fit: the cursor stands after .101, so .102, whose holder mac 3 has expired)
    assert_eq!(l.offer(&t, s, mac(5), None, None, T0 + 601), Some(ip(102)));
    l.commit(&t, s, mac(5), ip(102), None, T0 + 601).unwrap();
    assert_eq!(l.holder(ip(102), T0 + 602).unwrap().mac, mac(5));
    assert!(l.lease(mac(3)).is_none(), "the old holder's lease is gone");
}

#[test]
fn offers_are_held_briefly() {
    let t = table(1, (100, 100), &[]);
    let s = &t.subnets()[0];
    let mut l = Leases::new();
    assert_eq!(l.offer(&t, s, mac(1), None, None, T0), Some(ip(100)));
    assert_eq!(l.offer(&t, s, mac(2), None, None, T0 + 1), None);
    assert_eq!(
        l.offer(&t, s, mac(2), None, None, T0 + OFFER_HOLD_SECONDS),
        Some(ip(100))
    );
}

#[test]
fn requested_address_is_honoured_when_free() {
    let t = table(1, (100, 110), &[]);
    let s = &t.subnets()[0];
    let mut l = Leases::new();
    assert_eq!(
        l.offer(&t, s, mac(1), Some(ip(107)), None, T0),
        Some(ip(107))
    );
    // Outside the pool: ignored.
    assert_eq!(
        l.offer(&t, s, mac(2), Some(ip(50)), None, T0),
        Some(ip(100))
    );
}

#[test]
fn declined_address_is_quarantined() {
    let t = table(1, (100, 101), &[]);
    let s = &t.subnets()[0];
    let mut l = Leases::new();
    let a = l.offer(&t, s, mac(1), None, None, T0).unwrap();
    assert_eq!(
        l.decline(mac(2), a, 900, T0),
        None,
        "only its holder may decline it"
    );
    let c = l.decline(mac(1), a, 900, T0).unwrap();
    assert_eq!(
        c,
        Change::Declined {
            mac: mac(1),
            client_id: None,
            ip: a,
            until: T0 + 900
        }
    );
    assert_eq!(l.offer(&t, s, mac(1), None, None, T0 + 1), Some(ip(101)));
    assert_eq!(l.offer(&t, s, mac(3), None, None, T0 + 2), None);
    assert_eq!(
        l.commit(&t, s, mac(3), a, None, T0 + 2),
        Err(Refusal::Quarantined(a))
    );
    l.expire(T0 + 900);
    assert_eq!(l.offer(&t, s, mac(3), None, None, T0 + 900), Some(a));
}

#[test]
fn new_reservation_over_a_live_lease() {
    // Generation 1: .100-.102 dynamic; an unknown machine holds .100.
    let t1 = table(1, (100, 102), &[]);
    let mut l = Leases::new();
    l.commit(&t1, &t1.subnets()[0], mac(9), ip(100), None, T0)
        .unwrap();
    // Generation 2: the pool shrinks and .100 is reserved for node 1.
    let t2 = table(2, (101, 102), &[(1, Some(100))]);
    let s2 = &t2.subnets()[0];
    // The reserved node is not given .100 while the old lease lives: the responder sees a
    // holder and gives it a pool address instead.
    assert_eq!(l.holder(ip(100), T0 + 10).unwrap().mac, mac(9));
    assert_eq!(l.offer(&t2, s2, mac(1), None, None, T0 + 10), Some(ip(101)));
    // The old holder is NAKed at its next renewal.
    assert_eq!(
        l.commit(&t2, s2, mac(9), ip(100), None, T0 + 300),
        Err(Refusal::NotInPool(ip(100)))
    );
    // Once that lease ends, nobody holds .100 and the reservation can be served.
    assert!(l.holder(ip(100), T0 + 600).is_none());
}

#[test]
fn reserved_address_inside_pool_cannot_be_committed() {
    // A table where the reservation sits in a pool cannot exist (validation); but an address
    // reserved for a node is refused by check_free even if asked for directly.
    let t = table(1, (100, 102), &[(1, Some(50))]);
    let s = &t.subnets()[0];
    let l = Leases::new();
    assert_eq!(
        l.check_commit(&t, s, mac(2), ip(50), T0),
        Err(Refusal::NotInPool(ip(50)))
    );
}

#[test]
fn restore_rebuilds_the_same_state() {
    let t = table(1, (100, 120), &[]);
    let s = &t.subnets()[0];
    let mut l = Leases::new();
    let mut journal = Vec::new();
    for n in 1..=10 {
        let a = l.offer(&t, s, mac(n), None, None, T0).unwrap();
        journal.push(
            l.commit(&t, s, mac(n), a, Some(&format!("h{n}")), T0)
                .unwrap(),
        );
    }
    journal.push(l.release(mac(3), ip(102)).unwrap());
    journal.push(l.decline(mac(4), ip(103), 900, T0).unwrap());
    let r = Leases::restore(&journal, T0 + 1);
    assert_eq!(r.replay_stats().conflicts, 0);
    let mut a: Vec<_> = l.durable_changes(T0 + 1);
    let mut b: Vec<_> = r.durable_changes(T0 + 1);
    let key = |c: &Change| format!("{c:?}");
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert_eq!(a, b);
    assert_eq!(r.len(), 8);
    // Everything has ended by then.
    assert!(Leases::restore(&journal, T0 + 10_000).is_empty());
}

#[test]
fn replay_counts_a_double_binding() {
    let bound = |m: u8, start: u64| Change::Bound {
        mac: mac(m),
        client_id: None,
        ip: ip(100),
        start,
        expires: start + 600,
        hostname: None,
    };
    let r = Leases::restore(&[bound(1, T0), bound(2, T0 + 600)], T0);
    assert_eq!(r.replay_stats().conflicts, 0, "the first lease had ended");
    let r = Leases::restore(&[bound(1, T0), bound(2, T0 + 10)], T0);
    assert_eq!(r.replay_stats().conflicts, 1);
    assert_eq!(r.holder(ip(100), T0 + 11).unwrap().mac, mac(2));
}

#[test]
fn poll_timeout_is_the_earliest_end() {
    let t = table(1, (100, 120), &[]);
    let s = &t.subnets()[0];
    let mut l = Leases::new();
    assert_eq!(l.poll_timeout(), None);
    l.commit(&t, s, mac(1), ip(100), None, T0).unwrap();
    l.offer(&t, s, mac(2), None, None, T0 + 5).unwrap();
    assert_eq!(l.poll_timeout(), Some(T0 + 5 + OFFER_HOLD_SECONDS));
    assert_eq!(l.expire(T0 + 5 + OFFER_HOLD_SECONDS).len(), 1);
    assert_eq!(l.poll_timeout(), Some(T0 + 600));
}

#[test]
fn hostname_index_follows_the_leases() {
    let t = table(1, (100, 120), &[]);
    let s = &t.subnets()[0];
    let mut l = Leases::new();
    l.commit(&t, s, mac(1), ip(100), Some("Laptop"), T0)
        .unwrap();
    assert_eq!(l.by_hostname("laptop", T0 + 1).unwrap().ip, ip(100));
    assert_eq!(l.by_hostname("LAPTOP", T0 + 1).unwrap().mac, mac(1));
    // Another client takes the name: latest wins.
    l.commit(&t, s, mac(2), ip(101), Some("laptop"), T0 + 2)
        .unwrap();
    assert_eq!(l.by_hostname("laptop", T0 + 3).unwrap().mac, mac(2));
    l.release(mac(2), ip(101)).unwrap();
    assert!(l.by_hostname("laptop", T0 + 4).is_none());
    // Expired leases do not answer.
    l.commit(&t, s, mac(3), ip(102), Some("box"), T0).unwrap();
    assert!(l.by_hostname("box", T0 + 600).is_none());
}

/// What the owner publishes is always the lease set as it is: after any sequence of offers,
/// commits, releases, declines and ends, a board published to (at any points along the way)
/// lists the same leases, counts the same states, names the same holders, and answers DNS the
/// same way the set would.
mod board_follows_the_set {
    use super::*;
    use proptest::prelude::*;
    use pserv_core::lease::LeaseBoard;

    #[derive(Debug, Clone)]
    enum Op {
        Offer(u8),
        Commit(u8),
        Release(u8),
        Decline(u8),
        Tick(u16),
        Publish,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12).prop_map(Op::Offer),
            4 => (0u8..12).prop_map(Op::Commit),
            1 => (0u8..12).prop_map(Op::Release),
            1 => (0u8..12).prop_map(Op::Decline),
            2 => (1u16..400).prop_map(Op::Tick),
            2 => Just(Op::Publish),
        ]
    }

    fn same(l: &Leases, b: &LeaseBoard, now: u64) {
        let mut a: Vec<_> = l.iter().cloned().collect();
        let mut got: Vec<_> = b.leases().iter().map(|x| (**x).clone()).collect();
        a.sort_by_key(|x| x.mac);
        got.sort_by_key(|x| x.mac);
        assert_eq!(a, got);
        let bound = a.iter().filter(|x| x.state == LeaseState::Bound).count();
        assert_eq!(b.counts().bound, bound);
        assert_eq!(b.counts().offered, a.len() - bound);
        assert_eq!(b.counts().declined, l.declined().count());
        for x in &a {
            let held = b.holder(x.ip).map(|h| h.mac);
            assert_eq!(held, (x.state == LeaseState::Bound).then_some(x.mac));
            assert_eq!(b.address_of(x.mac), held.map(|_| x.ip));
            if let Some(h) = &x.hostname {
                let by_set = l.by_hostname(h, now).map(|y| y.mac);
                let name_holder = by_set.and_then(|m| b.lease(m)).map(|y| y.mac);
                assert_eq!(by_set, name_holder);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn at_every_step(ops in proptest::collection::vec(op(), 1..120)) {
            let t = table(1, (100, 107), &[(50, Some(20)), (51, None)]);
            let s = &t.subnets()[0];
            let mut l = Leases::new();
            let board = LeaseBoard::new();
            let mut now = T0;
            for o in ops {
                match o {
                    Op::Offer(m) => { let _ = l.offer(&t, s, mac(m), None, Some("h"), now); }
                    Op::Commit(m) => {
                        let want = l.lease(mac(m)).map_or(ip(100 + m % 8), |x| x.ip);
                        let _ = l.commit(&t, s, mac(m), want, Some(&format!("h{}", m % 3)), now);
                    }
                    Op::Release(m) => {
                        if let Some(x) = l.lease(mac(m)).map(|x| x.ip) { let _ = l.release(mac(m), x); }
                    }
                    Op::Decline(m) => {
                        if let Some(x) = l.lease(mac(m)).map(|x| x.ip) { let _ = l.decline(mac(m), x, 900, now); }
                    }
                    Op::Tick(d) => {
                        now += u64::from(d);
                        if l.poll_timeout().is_some_and(|at| at <= now) {
                            let ended = l.expire(now);
                            prop_assert!(!ended.is_empty());
                        }
                        prop_assert!(l.poll_timeout().is_none_or(|at| at > now));
                    }
                    Op::Publish => {
                        l.publish(&board);
                        prop_assert!(!l.has_unpublished());
                        same(&l, &board, now);
                    }
                }
            }
            l.publish(&board);
            same(&l, &board, now);
        }
    }
}
