//! The lease journal: recovery, torn tails, compaction, group commit, and `kill -9` mid-stream.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pserv_core::journal::{Journal, Options};
use pserv_core::lease::{Change, Leases};
use pserv_core::snapshot::Snapshot;
use pserv_core::{MacAddr, Table};
use rand::Rng;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mac(n: u16) -> MacAddr {
    let [a, b] = n.to_be_bytes();
    MacAddr([2, 0, 0, 0, a, b])
}

fn bound(n: u16, ip: Ipv4Addr, t: u64) -> Change {
    Change::Bound {
        mac: mac(n),
        client_id: None,
        ip,
        start: t,
        expires: t + 3600,
        hostname: Some(format!("h{n}").into()),
    }
}

fn sorted(mut v: Vec<Change>) -> Vec<Change> {
    v.sort_by_key(|c| format!("{c:?}"));
    v
}

#[test]
fn reopen_recovers_every_durable_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.journal");
    let t = now();
    let (j, r) = Journal::open(&path, Options::default(), t).unwrap();
    assert!(r.leases.is_empty());
    let mut expect = Leases::new();
    for n in 0..100u16 {
        let c = bound(n, Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8), t);
        expect.apply(&c);
        j.append(&c).unwrap();
    }
    let rel = Change::Released {
        mac: mac(5),
        client_id: None,
        ip: Ipv4Addr::new(10, 0, 0, 5),
    };
    expect.apply(&rel);
    let seq = j.append(&rel).unwrap();
    j.wait_durable(seq).unwrap();
    j.close().unwrap();
    let (_j, r) = Journal::open(&path, Options::default(), t).unwrap();
    assert_eq!(r.records, 101);
    assert_eq!(r.conflicts, 0);
    assert_eq!(
        sorted(r.leases.durable_changes(t)),
        sorted(expect.durable_changes(t))
    );
}

#[test]
fn torn_tail_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let t = now();
    let (j, _) = Journal::open(&path, Options::default(), t).unwrap();
    for n in 0..10u16 {
        j.append(&bound(n, Ipv4Addr::new(10, 0, 0, n as u8), t))
            .unwrap();
    }
    j.close().unwrap();
    let full = std::fs::metadata(&path).unwrap().len();
    // A crash mid-write: half a record, then garbage.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 2]).unwrap();
    drop(f);
    let (j, r) = Journal::open(&path, Options::default(), t).unwrap();
    assert_eq!(r.leases.durable_changes(t).len(), 10);
    assert_eq!(r.dropped_tail_bytes, 10);
    j.close().unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        full,
        "rewritten without the tail"
    );

    // A flipped bit inside the last record: its CRC fails, the nine before it survive.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let (_j, r) = Journal::open(&path, Options::default(), t).unwrap();
    assert_eq!(r.leases.durable_changes(t).len(), 9);
}

#[test]
fn refuses_a_file_that_is_not_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    std::fs::write(&path, b"precious data that is not ours").unwrap();
    let e = Journal::open(&path, Options::default(), now()).unwrap_err();
    assert!(e.to_string().contains("bad magic"), "{e}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"precious data that is not ours"
    );
}

/// Ten clients renew their leases (round `round` of the renewals); the last sequence number.
/// `owner` plays the lease set's owner: it applies each change, appends it, and asks for a
/// compaction when the journal wants one, as the DHCP service does.
fn renew_ten(j: &Journal, owner: &mut Leases, t: u64, round: u64) -> u64 {
    let mut last = 0;
    for n in 0..10u16 {
        let c = Change::Bound {
            mac: mac(n),
            client_id: None,
            ip: Ipv4Addr::new(10, 0, 0, n as u8 + 1),
            start: t + round,
            expires: t + round + 3600,
            hostname: None,
        };
        owner.apply(&c);
        last = j.append(&c).unwrap();
        if j.wants_compaction(owner.len(), t + round) {
            j.compact(owner.durable_changes(t + round), t + round);
        }
    }
    last
}

/// Reopening finds the ten leases as renewed in round `round`, and nothing else.
fn assert_ten_renewed_in(path: &Path, opts: Options, t: u64, round: u64) {
    let (_j, r) = Journal::open(path, opts, t).unwrap();
    let changes = r.leases.durable_changes(t);
    assert_eq!(changes.len(), 10);
    assert!(
        changes
            .iter()
            .all(|c| matches!(c, Change::Bound { expires, .. } if *expires == t + round + 3600))
    );
}

#[test]
fn compaction_keeps_the_file_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let t = now();
    let opts = Options {
        compact_min_bytes: 16 << 10,
        ..Options::default()
    };
    let (j, r) = Journal::open(&path, opts.clone(), t).unwrap();
    let mut owner = r.leases;
    // Ten clients renewing over and over: 20,000 records, ten live leases.
    let mut last = 0;
    for round in 0..2000u64 {
        last = renew_ten(&j, &mut owner, t, round);
        if round % 100 == 0 {
            j.wait_durable(last).unwrap();
        }
    }
    j.wait_durable(last).unwrap();
    // The owner looks again after its last change (the DHCP loop does on every turn); a
    // compaction asked for then is done once a record after it is durable.
    if j.wants_compaction(owner.len(), t + 2000) {
        j.compact(owner.durable_changes(t + 2000), t + 2000);
        let c = Change::Released {
            mac: mac(99),
            client_id: None,
            ip: Ipv4Addr::new(10, 0, 0, 99),
        };
        j.wait_durable(j.append(&c).unwrap()).unwrap();
    }
    let stats = j.stats();
    j.close().unwrap();
    assert!(stats.compactions > 0, "{stats:?}");
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 2 * (16 << 10), "journal grew to {size} bytes");
    assert_ten_renewed_in(&path, opts, t, 1999);
}

/// A compaction that cannot start (here a directory squats on its temporary file; in the field,
/// descriptors exhausted by a connection flood, or a full disk) does not stop the journal: it
/// keeps acknowledging, counts the failure, and compacts once it can.
#[test]
fn a_compaction_that_cannot_start_is_retried_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let t = now();
    let opts = Options {
        compact_min_bytes: 4 << 10,
        ..Options::default()
    };
    let (j, r) = Journal::open(&path, opts.clone(), t).unwrap();
    let mut owner = r.leases;
    let squatter = path.with_extension("compacting");
    std::fs::create_dir(&squatter).unwrap();
    let mut renew = |round: u64| j.wait_durable(renew_ten(&j, &mut owner, t, round)).unwrap();
    for round in 0..300 {
        renew(round);
    }
    let blocked = j.stats();
    assert_eq!(blocked.compactions, 0, "{blocked:?}");
    assert!(blocked.compaction_failures >= 1, "{blocked:?}");
    assert!(blocked.bytes > 4 * (4 << 10), "{blocked:?}");
    std::fs::remove_dir(&squatter).unwrap();
    // The retry waits a second of the owner's clock (rounds here are seconds apart).
    renew(300);
    // The writer compacts right after it publishes a commit: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while j.stats().compactions == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = j.stats();
    assert!(stats.compactions >= 1, "{stats:?}");
    assert!(stats.bytes < blocked.bytes, "{stats:?}");
    j.close().unwrap();
    assert_ten_renewed_in(&path, opts, t, 300);
}

#[test]
fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let t = now();
    let (j, _) = Journal::open(&path, Options::default(), t).unwrap();
    let j = Arc::new(j);
    let threads: Vec<_> = (0..8u16)
        .map(|k| {
            let j = j.clone();
            std::thread::spawn(move || {
                for i in 0..200u16 {
                    let n = k * 1000 + i;
                    let seq = j
                        .append(&bound(n, Ipv4Addr::from(u32::from(n) + 1), t))
                        .unwrap();
                    j.wait_durable(seq).unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let s = j.stats();
    assert_eq!(s.records, 1600);
    assert!(
        s.flushes < s.records,
        "every record paid its own fsync: {s:?}"
    );
}

#[test]
fn each_commit_becomes_durable_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(&dir.path().join("j"), Options::default(), now()).unwrap();
    for n in 1..=3u16 {
        let seq = j
            .append(&bound(n, Ipv4Addr::new(10, 0, 0, n as u8), now()))
            .unwrap();
        // The writer thread syncs and publishes it: wait for it, bounded.
        assert!(j.wait_durable_for(seq, Duration::from_secs(10)).unwrap());
        assert!(j.durable() >= seq);
    }
}

// ---- kill -9 mid-stream ---------------------------------------------------------------------

const CHILD_ENV: &str = "PSERV_JOURNAL_CRASH_CHILD";
const MACS: u16 = 600;

fn crash_table() -> Table {
    let json = br#"{"generation": 1, "subnets": [{"cidr": "10.9.0.0/22", "lease_seconds": 3600,
        "dynamic": [{"start": "10.9.0.10", "end": "10.9.1.250"}]}]}"#;
    Table::compile(&Snapshot::from_json(json).unwrap(), None).unwrap()
}

/// The writer process: allocates and releases leases from four threads, printing an intent line
/// before each change is queued and an ack line once it is durable. Runs until killed.
#[test]
#[ignore = "child process of crash_recovery_keeps_every_acknowledged_lease"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (journal, rec) = Journal::open(Path::new(&path), Options::default(), now()).unwrap();
    let journal = Arc::new(journal);
    let leases = Arc::new(Mutex::new(rec.leases));
    let table = Arc::new(crash_table());
    let out = Arc::new(Mutex::new(std::io::stdout()));
    // The harness printed "test crash_child ... " without a newline: end that line.
    writeln!(out.lock().unwrap()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (journal, leases, table, out) =
                (journal.clone(), leases.clone(), table.clone(), out.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rng();
                let subnet = &table.subnets()[0];
                loop {
                    let n = rng.random_range(0..MACS);
                    let m = mac(n);
                    let t = now();
                    let (line, seq) = {
                        let mut l = leases.lock().unwrap();
                        let change = if rng.random_bool(0.3) {
                            l.bound(m, t).map(|b| b.ip).and_then(|ip| l.release(m, ip))
                        } else {
                            l.offer(&table, subnet, m, None, None, t)
                                .and_then(|ip| l.commit(&table, subnet, m, ip, None, t).ok())
                        };
                        let Some(change) = change else { continue };
                        let line = match &change {
                            Change::Bound { ip, .. } => format!("{n} B {ip}"),
                            Change::Released { ip, .. } => format!("{n} R {ip}"),
                            _ => unreachable!(),
                        };
                        // Intent first, under the same lock as the append: stdout order is
                        // journal order, and nothing becomes durable unannounced.
                        writeln!(out.lock().unwrap(), "I {line}").unwrap();
                        (line, journal.append(&change).unwrap())
                    };
                    journal.wait_durable(seq).unwrap();
                    writeln!(out.lock().unwrap(), "A {line}").unwrap();
                }
            })
        })
        .collect();
    // The writers run until the parent kills this process.
    drop(threads);
    loop {
        std::thread::park();
    }
}

/// State per MAC index: its bound address, if any.
type Model = HashMap<u16, Ipv4Addr>;

fn apply(model: &mut Model, line: &str) {
    let mut it = line.split(' ');
    let n: u16 = it.next().unwrap().parse().unwrap();
    let op = it.next().unwrap();
    let ip: Ipv4Addr = it.next().unwrap().parse().unwrap();
    match op {
        "B" => {
            model.insert(n, ip);
        }
        "R" => {
            assert_eq!(
                model.remove(&n),
                Some(ip),
                "release of a lease the model lacks"
            );
        }
        _ => unreachable!(),
    }
}

fn recovered_model(changes: &[Change]) -> Model {
    let mut by_ip: HashMap<Ipv4Addr, MacAddr> = HashMap::new();
    let mut model = Model::new();
    for c in changes {
        let Change::Bound { mac: m, ip, .. } = c else {
            continue;
        };
        if let Some(other) = by_ip.insert(*ip, *m) {
            panic!("recovery gave {ip} to both {other} and {m}");
        }
        let n = u16::from_be_bytes([m.0[4], m.0[5]]);
        assert!(model.insert(n, *ip).is_none(), "{m} has two leases");
    }
    model
}

#[test]
fn crash_recovery_keeps_every_acknowledged_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.journal");
    let mut model = Model::new();
    let mut rng = rand::rng();
    for round in 0..4 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let target_acks = rng.random_range(300..1500);
        let mut intents: Vec<String> = Vec::new();
        let mut acked_upto = 0usize; // how many intents are known durable
        let mut acks = 0;
        let mut lines = stdout.lines();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while acks < target_acks && std::time::Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.strip_prefix("I ") {
                intents.push(rest.to_owned());
            } else if let Some(rest) = line.strip_prefix("A ") {
                acks += 1;
                // Durability is a prefix of the journal: this ack covers every earlier intent.
                let at = intents
                    .iter()
                    .rposition(|i| i == rest)
                    .expect("ack without intent");
                acked_upto = acked_upto.max(at + 1);
            }
        }
        // SIGKILL: no destructor, no flush.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            acks >= target_acks,
            "round {round}: child made only {acks} acks"
        );
        // Anything printed after our last read may also be durable: read the rest.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("I ") {
                intents.push(rest.to_owned());
            }
        }

        let (j, rec) = Journal::open(&path, Options::default(), now()).unwrap();
        drop(j);
        assert_eq!(
            rec.conflicts, 0,
            "round {round}: replay found an address bound twice"
        );
        let got = recovered_model(&rec.leases.durable_changes(now()));
        // The recovered state must be the model after some durable prefix that includes every
        // acknowledged change.
        let mut m = model.clone();
        for i in &intents[..acked_upto] {
            apply(&mut m, i);
        }
        let mut matched = m == got;
        for i in &intents[acked_upto..] {
            if matched {
                break;
            }
            apply(&mut m, i);
            matched = m == got;
        }
        assert!(
            matched,
            "round {round}: recovered {} leases matching no durable prefix (acked {acked_upto} of {} intents)",
            got.len(),
            intents.len()
        );
        model = got;
    }
}
