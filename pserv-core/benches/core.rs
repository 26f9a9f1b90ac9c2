//! pserv-core benchmarks (a plain binary, not criterion: it needs a fresh process per snapshot
//! size to read an honest peak RSS).
//!
//! `cargo bench -p pserv-core --bench core` runs all of:
//! - publish: JSON bytes -> parsed -> validated + compiled -> swapped, for 1k, 10k, 100k and 1M
//!   generated nodes (two interfaces each, one reserved), with retained table bytes per node and
//!   peak RSS growth per node;
//! - provision: the same publish for 100k netbooting nodes (issue 21's target: at most 2 s),
//!   each with a profile whose three loader configurations and three node files (a preseed,
//!   cloud-init `user-data` and `meta-data`, the two YAML ones format-checked) are all rendered
//!   for every node at validation;
//! - lookup: ns per lookup by MAC, by name (mixed case, trailing dot), by address, and misses,
//!   on the 1M-node table, keys in random order;
//! - journal: durable (fdatasync before acknowledge) lease commits per second, group-committed,
//!   with the full offer + commit + append path.
//!
//! `-- publish|provision|lookup|journal` runs one part; `-- --sizes 1000,10000` picks sizes.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pserv_core::journal::{Journal, Options};
use pserv_core::lease::Leases;
use pserv_core::snapshot::Snapshot;
use pserv_core::{MacAddr, Store, Table};

/// The binary's allocator (pserv-bin's default `jemalloc` feature): a publish allocates per
/// node, and is measured as the server runs it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn mac(i: u32, nic: u8) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x52, nic, b[0], b[1], b[2], b[3]])
}

/// Host number `k` -> an address in 10.0.0.0/8 that is never .0 or .255.
fn host_ip(k: u32) -> Ipv4Addr {
    let block = k / 254;
    Ipv4Addr::new(10, (block >> 8) as u8, block as u8, (k % 254) as u8 + 1)
}

fn node_id(i: u32) -> String {
    // Six base-36 characters, like the controller's ids.
    let mut x = i.wrapping_mul(2_654_435_761) ^ 0x5bd1_e995;
    (0..6)
        .map(|_| {
            let c = b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize];
            x /= 36;
            c as char
        })
        .collect::<String>()
        + &format!("{i:x}")
}

/// A Debian-installer profile with three node files, as an operator would write it.
const PROVISION_PROFILES: &str = r##""boot_profiles": {"bookworm": {"kernel": "debian/linux", "initrd": ["debian/initrd.gz"],
  "cmdline": "auto=true priority=critical url={{ node_files_url }}preseed.cfg hostname={{ node.hostname }} domain={{ node.domain }} log_host={{ syslog_host }} log_port={{ syslog_port }} console=ttyS0,115200",
  "vars": {"mirror": "deb.debian.org", "tz": "UTC"},
  "node_files": {
    "preseed.cfg": "d-i debian-installer/locale string en_US.UTF-8\nd-i keyboard-configuration/xkb-keymap select us\nd-i netcfg/choose_interface select auto\nd-i netcfg/get_hostname string {{ node.hostname }}\nd-i netcfg/get_domain string {{ node.domain }}\nd-i mirror/http/hostname string {{ vars.mirror }}\nd-i mirror/http/directory string /debian\nd-i time/zone string {{ vars.tz }}\nd-i preseed/early_command string wget -q -O /dev/null '{{ progress_url }}?stage=early'\nd-i preseed/late_command string wget -q -O /dev/null '{{ progress_url }}?stage=late'\n",
    "user-data": "#cloud-config\nhostname: {{ node.hostname }}\nfqdn: {{ node.fqdn }}\nusers:\n  - name: ops\n    ssh_authorized_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@site\"]\nphone_home:\n  url: {{ progress_url }}?stage=cloud-init\n  post: [instance_id]\n",
    "meta-data": "instance-id: {{ node.id }}\nlocal-hostname: {{ node.hostname }}\n"}}},
"##;

fn generate(n: u32) -> Vec<u8> {
    generate_with(n, false)
}

/// `n` nodes; with `netboot`, each netboots [`PROVISION_PROFILES`].
fn generate_with(n: u32, netboot: bool) -> Vec<u8> {
    use std::fmt::Write;
    let mut s = String::with_capacity(n as usize * 230 + 4096);
    s.push_str(r#"{"generation": 7, "#);
    if netboot {
        s.push_str(PROVISION_PROFILES);
    }
    s.push_str(
        r#""dns": {"ttl": 30, "soa_mname": "pserv.maas.", "soa_rname": "admin.maas."},
"subnets": [{"cidr": "10.0.0.0/8", "router": "10.0.0.1", "dns_servers": ["10.0.0.2"], "domain": "maas",
  "lease_seconds": 3600, "dynamic": [{"start": "10.200.0.1", "end": "10.200.255.254"}],
  "boot": {"next_server": "10.0.0.2", "files": {"x86_64-bios": "lpxelinux.0", "x86_64-uefi": "bootx64.efi"},
           "ipxe_url": "http://10.0.0.2:5248/ipxe.cfg"}}],
"nodes": ["#,
    );
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        write!(
            s,
            r#"{{"id": "{}", "hostname": "node-{i:07}", "domain": "maas", "interfaces": [{{"mac": "{}", "ipv4": "{}", "primary": true}}, {{"mac": "{}"}}], "boot": {}, "options": []}}"#,
            node_id(i),
            mac(i, 0),
            host_ip(i + 10),
            mac(i, 1),
            if netboot {
                r#"{"profile": "bookworm"}"#
            } else {
                r#"{"file": null}"#
            }
        )
        .unwrap();
        s.push('\n');
    }
    s.push_str("]}");
    s.into_bytes()
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One size, in this (fresh) process: prints one result line.
fn publish_one(n: u32, netboot: bool) {
    let json = generate_with(n, netboot);
    // Baseline: the JSON body is already in memory, as it is when a push arrives.
    let base = rss_kib("VmRSS:");
    let store = Store::new();
    let t0 = Instant::now();
    let snap = Snapshot::from_json(&json).unwrap();
    let parse = t0.elapsed();
    let p = store.publish(&snap).unwrap();
    let total = t0.elapsed();
    drop(snap);
    let peak = rss_kib("VmHWM:").saturating_sub(base) * 1024;
    let table = store.load_full();
    assert_eq!(table.node_count(), n as usize);
    println!(
        "publish {n:>8} {} | JSON {:>7.1} MB | parse {:>8.1} ms | compile {:>8.1} ms | swap {:>6} ns | total {:>8.1} ms | table {:>4} B/node | peak RSS +{:>4} B/node",
        if netboot {
            "netbooting nodes (3 configs + 3 files each)"
        } else {
            "nodes"
        },
        json.len() as f64 / 1e6,
        ms(parse),
        ms(p.compile),
        p.swap.as_nanos(),
        ms(total),
        table.heap_bytes() / n as usize,
        peak / u64::from(n),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn publish(sizes: &[u32], netboot: bool) {
    let exe = std::env::current_exe().unwrap();
    for &n in sizes {
        // A fresh process per size, so VmHWM is this size's peak alone.
        let out = Command::new(&exe)
            .args([
                if netboot {
                    "--provision-one"
                } else {
                    "--publish-one"
                },
                &n.to_string(),
            ])
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
    }
}

fn per_op(label: &str, ops: usize, f: impl FnOnce() -> usize) {
    let t0 = Instant::now();
    let hits = f();
    let dt = t0.elapsed();
    println!(
        "lookup {label:<28} {:>6.1} ns/op ({hits} hits of {ops})",
        dt.as_nanos() as f64 / ops as f64
    );
}

fn lookup(n: u32) {
    let table = Table::compile(&Snapshot::from_json(&generate(n)).unwrap(), None).unwrap();
    const OPS: usize = 4_000_000;
    // Keys in a random order, so the table is read the way a busy network reads it.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % u64::from(n)) as u32
    };
    let idx: Vec<u32> = (0..OPS).map(|_| next()).collect();
    let macs: Vec<MacAddr> = idx.iter().map(|&i| mac(i, 0)).collect();
    // Names packed back to back, as query names sit in a ring of packet buffers (a Vec<String>
    // would add a pointer chase per key that no server pays).
    let names: Vec<(u8, [u8; 31])> = idx
        .iter()
        .map(|&i| {
            let s = format!("Node-{i:07}.MAAS.");
            let mut b = [0u8; 31];
            b[..s.len()].copy_from_slice(s.as_bytes());
            (s.len() as u8, b)
        })
        .collect();
    let ips: Vec<Ipv4Addr> = idx.iter().map(|&i| host_ip(i + 10)).collect();
    let missing: Vec<MacAddr> = idx.iter().map(|&i| mac(i, 9)).collect();
    println!("lookup on a {n}-node table, {OPS} random keys each:");
    per_op("by MAC", OPS, || {
        macs.iter()
            .filter(|m| black_box(table.by_mac(**m)).is_some())
            .count()
    });
    per_op("by name (mixed case, dot)", OPS, || {
        names
            .iter()
            .filter(|(len, b)| black_box(table.by_name_bytes(&b[..usize::from(*len)])).is_some())
            .count()
    });
    per_op("by IPv4 (PTR)", OPS, || {
        ips.iter()
            .filter(|ip| black_box(table.by_ipv4(**ip)).is_some())
            .count()
    });
    per_op("by MAC, miss", OPS, || {
        missing
            .iter()
            .filter(|m| black_box(table.by_mac(**m)).is_some())
            .count()
    });
    per_op("subnet for address", OPS, || {
        ips.iter()
            .filter(|ip| black_box(table.subnet_for(**ip)).is_some())
            .count()
    });
}

fn journal() {
    let dir = std::env::temp_dir().join(format!("pserv-bench-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("leases.journal");
    let now = 1_800_000_000;
    let json = br#"{"generation": 1, "subnets": [{"cidr": "10.0.0.0/8", "lease_seconds": 3600,
        "dynamic": [{"start": "10.0.0.1", "end": "10.255.255.254"}]}]}"#;
    let table = Arc::new(Table::compile(&Snapshot::from_json(json).unwrap(), None).unwrap());
    let (j, _) = Journal::open(&path, Options::default(), now).unwrap();
    let j = Arc::new(j);
    let leases = Arc::new(Mutex::new(Leases::new()));
    const THREADS: u32 = 4;
    const WINDOW: u32 = 512; // clients in flight per thread
    const PER_THREAD: u32 = 100_000;
    let t0 = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|k| {
            let (j, leases, table) = (j.clone(), leases.clone(), table.clone());
            std::thread::spawn(move || {
                let subnet = &table.subnets()[0];
                let mut i = 0;
                while i < PER_THREAD {
                    let mut last = 0;
                    for _ in 0..WINDOW.min(PER_THREAD - i) {
                        let m = mac(k * PER_THREAD + i, 7);
                        let mut l = leases.lock();
                        let ip = l.offer(&table, subnet, m, None, None, now).unwrap();
                        let c = l
                            .commit(&table, subnet, m, ip, Some("client"), now)
                            .unwrap();
                        last = j.append(&c).unwrap();
                        i += 1;
                    }
                    // Acknowledge the window only once it is durable.
                    j.wait_durable(last).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let dt = t0.elapsed();
    let s = j.stats();
    let total = THREADS * PER_THREAD;
    println!(
        "journal: {total} durable lease commits (offer+commit+append+fdatasync) in {:.2} s = {:.0} commits/s; {} fdatasyncs ({:.0}/s), {:.0} records per sync, {} compactions, file {} KiB",
        dt.as_secs_f64(),
        f64::from(total) / dt.as_secs_f64(),
        s.flushes,
        s.flushes as f64 / dt.as_secs_f64(),
        s.records as f64 / s.flushes.max(1) as f64,
        s.compactions,
        s.bytes / 1024
    );
    drop(j);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == "--publish-one") {
        publish_one(args[pos + 1].parse().unwrap(), false);
        return;
    }
    if let Some(pos) = args.iter().position(|a| a == "--provision-one") {
        publish_one(args[pos + 1].parse().unwrap(), true);
        return;
    }
    let sizes: Vec<u32> = args
        .iter()
        .position(|a| a == "--sizes")
        .map(|p| args[p + 1].split(',').map(|s| s.parse().unwrap()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000, 1_000_000]);
    let parts: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["publish", "provision", "lookup", "journal"].contains(a))
        .collect();
    let want = |p: &str| parts.is_empty() || parts.contains(&p);
    if want("publish") {
        publish(&sizes, false);
    }
    if want("provision") {
        publish(&[100_000], true);
    }
    if want("lookup") {
        lookup(*sizes.iter().max().unwrap());
    }
    if want("journal") {
        journal();
    }
}
