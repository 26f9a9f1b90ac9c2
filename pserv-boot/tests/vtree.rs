//! The virtual tree: rendered configurations by loader name, only to their own machine, and
//! the boot directory for everything else.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use pserv_boot::tree::{BootDir, TreeError};
use pserv_boot::vtree::{ConfigServed, Content, FileServed, Served, Tree, Urls, Via};
use pserv_core::lease::{LeaseBoard, Leases};
use pserv_core::{MacAddr, Store};

const SNAP: &str = r##"{ "generation": 7,
  "boot_profiles": { "live": { "kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
                               "cmdline": "console=ttyS0 pserv.host={{ node.hostname }}",
                               "node_files": { "user-data": "#cloud-config\nhostname: {{ node.hostname or 'new' }}\nphone_home: {url: '{{ progress_url }}'}\n",
                                               "preseed.cfg": "d-i passwd/root-password password {{ vars.secret | default('s3cret') }}\n" } } },
  "subnets": [ { "cidr": "10.99.0.0/16", "dynamic": [ { "start": "10.99.1.1", "end": "10.99.1.9" } ],
                 "boot": { "unknown_profile": "live" } },
               { "cidr": "fd00:99::/64", "dynamic": [ { "start": "fd00:99::1:0", "end": "fd00:99::1:ff" } ],
                 "boot": { "unknown_profile": "live" } } ],
  "nodes": [
    { "id": "n1", "hostname": "node1", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:aa:00:01", "ipv4": "10.99.0.11", "ipv6": "fd00:99::11" } ], "boot": { "profile": "live" } },
    { "id": "n2", "hostname": "node2", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:aa:00:02", "ipv4": "10.99.0.12" } ], "boot": { "mode": "local" } },
    { "id": "n3", "hostname": "node3", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:aa:00:03", "ipv4": "10.99.0.13" } ] } ] }"##;

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2));

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Fixture {
    tree: Tree,
    events: Arc<Mutex<(Vec<ConfigServed>, Vec<FileServed>)>>,
    store: Arc<Store>,
    board: Arc<LeaseBoard>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pxelinux.cfg")).unwrap();
    std::fs::write(dir.path().join("pxelinux.cfg/default"), b"DEFAULT static\n").unwrap();
    std::fs::write(
        dir.path().join("pxelinux.cfg/01-52-54-00-aa-00-03"),
        b"DEFAULT operator\n",
    )
    .unwrap();
    let store = Arc::new(Store::new());
    store.publish_json(SNAP.as_bytes()).unwrap();
    let board = Arc::new(LeaseBoard::new());
    let events = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let seen = events.clone();
    let tree = Tree::new(
        Some(BootDir::new(dir.path()).unwrap()),
        store.clone(),
        board.clone(),
        Urls {
            http_port: 5248,
            syslog: None,
        },
        Arc::new(move |s: Served| {
            let mut seen = seen.lock().unwrap();
            match s {
                Served::Config(c) => seen.0.push(c),
                Served::File(f) => seen.1.push(f),
            }
        }),
    );
    Fixture {
        tree,
        events,
        store,
        board,
        _dir: dir,
    }
}

impl Fixture {
    /// A bound lease of `mac` on `ip` in the first subnet, published where the tree reads.
    fn lease(&self, mac: MacAddr, ip: Ipv4Addr) {
        let table = self.store.load_full();
        let mut leases = Leases::new();
        leases
            .commit(&table, &table.subnets()[0], mac, ip, None, 1_800_000_000)
            .unwrap();
        leases.publish(&self.board);
    }
}

impl Fixture {
    /// A bound DHCPv6 lease of `mac` (its DUID-LL) on `ip` in the IPv6 subnet.
    fn lease6(&self, mac: MacAddr, ip: std::net::Ipv6Addr) {
        let table = self.store.load_full();
        let mut duid = vec![0, 3, 0, 1];
        duid.extend_from_slice(&mac.0);
        let key = pserv_core::lease::Key6 {
            duid: pserv_core::lease::Duid::new(&duid).unwrap(),
            iaid: 1,
        };
        let mut leases = Leases::new();
        leases
            .v6_mut()
            .commit(
                &table,
                &table.subnets6()[0],
                &key,
                Some(mac),
                ip,
                None,
                1_800_000_000,
            )
            .unwrap();
        leases.publish(&self.board);
    }
}

fn text(c: Content) -> String {
    let mut b = vec![0u8; c.size() as usize];
    assert_eq!(c.read_at(0, &mut b).unwrap(), b.len());
    String::from_utf8(b).unwrap()
}

#[test]
fn each_loader_gets_its_rendered_file_from_the_machines_own_address() {
    let f = fixture();
    let from = ip("10.99.0.11");
    let pxe = text(
        f.tree
            .open("pxelinux.cfg/01-52-54-00-aa-00-01", Via::Tftp, from, SERVER)
            .unwrap(),
    );
    assert!(
        pxe.contains("APPEND console=ttyS0 pserv.host=node1"),
        "{pxe}"
    );
    let grub = text(
        f.tree
            .open(
                "/grub/grub.cfg-01-52-54-00-aa-00-01",
                Via::Tftp,
                from,
                SERVER,
            )
            .unwrap(),
    );
    assert!(
        grub.contains("linux /images/vmlinuz console=ttyS0"),
        "{grub}"
    );
    let ipxe = text(
        f.tree
            .open("/ipxe/52-54-00-aa-00-01", Via::Http, from, SERVER)
            .unwrap(),
    );
    assert!(
        ipxe.contains("kernel http://10.99.0.2:5248/images/vmlinuz"),
        "URLs name the address the request reached: {ipxe}"
    );
    let ev = f.events.lock().unwrap().0.clone();
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[2].loader, "ipxe");
    assert_eq!(ev[2].via, Via::Http);
    assert_eq!(ev[2].node.as_deref(), Some("n1"));
    assert_eq!(ev[2].profile.as_deref(), Some("live"));
    assert_eq!(ev[2].mode, "netboot");
    assert_eq!(ev[2].generation, 7);
    assert_eq!(ev[2].bytes, ipxe.len() as u64);
}

#[test]
fn another_machine_cannot_read_a_configuration() {
    let f = fixture();
    for from in ["10.99.0.12", "10.99.1.1", "192.0.2.9"] {
        let r = f
            .tree
            .open("ipxe/52-54-00-aa-00-01", Via::Http, ip(from), SERVER);
        assert!(matches!(r, Err(TreeError::NotYours)), "{from}: {r:?}");
    }
    assert!(f.events.lock().unwrap().0.is_empty(), "nothing was served");
    // The host itself (an operator with curl) is trusted.
    let ok = f
        .tree
        .open("ipxe/52-54-00-aa-00-01", Via::Http, ip("127.0.0.1"), SERVER);
    assert!(ok.is_ok());
}

#[test]
fn an_unknown_machine_is_served_at_its_leased_address() {
    let f = fixture();
    let stranger: MacAddr = "02:00:00:00:00:09".parse().unwrap();
    let name = "ipxe/02-00-00-00-00-09";
    assert!(matches!(
        f.tree.open(name, Via::Http, ip("10.99.1.3"), SERVER),
        Err(TreeError::NotYours)
    ));
    f.lease(stranger, Ipv4Addr::new(10, 99, 1, 3));
    let script = text(
        f.tree
            .open(name, Via::Http, ip("10.99.1.3"), SERVER)
            .unwrap(),
    );
    assert!(script.contains("netboots profile live"), "{script}");
    let ev = f.events.lock().unwrap().0.clone();
    assert_eq!(ev[0].node, None);
}

#[test]
fn local_renders_the_disk_form_and_no_intent_falls_back_to_the_directory() {
    let f = fixture();
    let local = text(
        f.tree
            .open(
                "pxelinux.cfg/01-52-54-00-aa-00-02",
                Via::Tftp,
                ip("10.99.0.12"),
                SERVER,
            )
            .unwrap(),
    );
    assert!(local.contains("LOCALBOOT 0"), "{local}");
    assert_eq!(f.events.lock().unwrap().0[0].mode, "local");
    // n3 has no boot intent: the operator's own file in the boot directory.
    let own = text(
        f.tree
            .open(
                "pxelinux.cfg/01-52-54-00-aa-00-03",
                Via::Tftp,
                ip("10.99.0.13"),
                SERVER,
            )
            .unwrap(),
    );
    assert_eq!(own, "DEFAULT operator\n");
    assert!(matches!(
        f.tree.open(
            "ipxe/52-54-00-aa-00-03",
            Via::Http,
            ip("10.99.0.13"),
            SERVER
        ),
        Err(TreeError::NotFound)
    ));
    let d = text(
        f.tree
            .open("pxelinux.cfg/default", Via::Tftp, ip("10.99.0.13"), SERVER)
            .unwrap(),
    );
    assert_eq!(d, "DEFAULT static\n");
}

#[test]
fn a_push_switching_netboot_to_local_takes_effect_at_the_next_fetch() {
    let f = fixture();
    let name = "ipxe/52-54-00-aa-00-01";
    let from = ip("10.99.0.11");
    assert!(text(f.tree.open(name, Via::Http, from, SERVER).unwrap()).contains("kernel "));
    let switched = SNAP
        .replace("\"generation\": 7", "\"generation\": 8")
        .replace(
            r#""boot": { "profile": "live" }"#,
            r#""boot": { "mode": "local", "profile": "live" }"#,
        );
    f.store.publish_json(switched.as_bytes()).unwrap();
    let now = text(f.tree.open(name, Via::Http, from, SERVER).unwrap());
    assert!(now.contains("sanboot") && !now.contains("kernel "), "{now}");
}

#[test]
fn node_files_go_to_their_own_machine_only_and_are_announced() {
    let f = fixture();
    let ud = text(
        f.tree
            .open(
                "/nodes/52-54-00-aa-00-01/user-data",
                Via::Http,
                ip("10.99.0.11"),
                SERVER,
            )
            .unwrap(),
    );
    assert_eq!(
        ud,
        "#cloud-config\nhostname: node1\nphone_home: {url: 'http://10.99.0.2:5248/nodes/52-54-00-aa-00-01/progress'}\n"
    );
    // Over TFTP too, the MAC in colon form.
    let preseed = text(
        f.tree
            .open(
                "nodes/52:54:00:aa:00:01/preseed.cfg",
                Via::Tftp,
                ip("10.99.0.11"),
                SERVER,
            )
            .unwrap(),
    );
    assert!(preseed.contains("s3cret"), "{preseed}");
    let files = f.events.lock().unwrap().1.clone();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].file, "user-data");
    assert_eq!(files[0].node.as_deref(), Some("n1"));
    assert_eq!(files[0].via, Via::Http);
    assert_eq!(files[0].bytes, ud.len() as u64);
    assert_eq!(files[0].generation, 7);
    assert_eq!(files[1].via, Via::Tftp);
    assert_eq!(
        serde_json::to_value(&files[0]).unwrap()["event"],
        serde_json::json!("node_file")
    );

    // From any other address: as if it did not exist (the secret stays), and nothing is
    // announced.
    for from in ["10.99.0.12", "10.99.1.1", "192.0.2.9"] {
        let r = f.tree.open(
            "nodes/52-54-00-aa-00-01/preseed.cfg",
            Via::Http,
            ip(from),
            SERVER,
        );
        assert!(matches!(r, Err(TreeError::Hidden)), "{from}: {r:?}");
    }
    assert_eq!(f.events.lock().unwrap().1.len(), 2);
    // A name the profile lacks (cloud-init asks for vendor-data), and a node with no profile.
    for name in [
        "nodes/52-54-00-aa-00-01/vendor-data",
        "nodes/52-54-00-aa-00-03/user-data",
        "nodes/52-54-00-aa-00-01/progress",
    ] {
        let r = f.tree.open(name, Via::Http, ip("10.99.0.11"), SERVER);
        assert!(matches!(r, Err(TreeError::NotFound)), "{name}: {r:?}");
    }
}

#[test]
fn an_unknown_machine_gets_its_subnets_profile_files_at_its_leased_address() {
    let f = fixture();
    let stranger: MacAddr = "02:00:00:00:00:09".parse().unwrap();
    let name = "nodes/02-00-00-00-00-09/user-data";
    assert!(matches!(
        f.tree.open(name, Via::Http, ip("10.99.1.3"), SERVER),
        Err(TreeError::Hidden)
    ));
    f.lease(stranger, Ipv4Addr::new(10, 99, 1, 3));
    let ud = text(
        f.tree
            .open(name, Via::Http, ip("10.99.1.3"), SERVER)
            .unwrap(),
    );
    assert!(ud.starts_with("#cloud-config\nhostname: new\n"), "{ud}");
    assert_eq!(f.events.lock().unwrap().1[0].node, None);
    // The progress endpoint's view of it: its lease's address is its own.
    let m = f.tree.machine(stranger, ip("10.99.1.3")).unwrap();
    assert_eq!((m.node, m.generation), (None, 7));
    assert!(matches!(
        f.tree.machine(stranger, ip("10.99.1.4")),
        Err(TreeError::Hidden)
    ));
    let nobody: MacAddr = "02:00:00:00:00:0a".parse().unwrap();
    assert!(matches!(
        f.tree.machine(nobody, ip("10.99.1.4")),
        Err(TreeError::NotFound)
    ));
    let n1: MacAddr = "52:54:00:aa:00:01".parse().unwrap();
    assert_eq!(
        f.tree
            .machine(n1, ip("10.99.0.11"))
            .unwrap()
            .node
            .as_deref(),
        Some("n1")
    );
}

#[test]
fn plain_grub_cfg_under_any_prefix_is_the_asking_machines_configuration() {
    let f = fixture();
    // An operator's own grub.cfg in the directory: what loopback and strangers get.
    std::fs::create_dir_all(f._dir.path().join("grub")).unwrap();
    std::fs::write(f._dir.path().join("grub/grub.cfg"), b"# operator's\n").unwrap();
    for prefix in ["grub", "debian-installer/amd64/grub", "boot/grub"] {
        let name = format!("/{prefix}/grub.cfg");
        let cfg = text(
            f.tree
                .open(&name, Via::Tftp, ip("10.99.0.11"), SERVER)
                .unwrap(),
        );
        assert!(
            cfg.contains("netboots profile live") && cfg.contains("pserv.host=node1"),
            "{name}: {cfg}"
        );
        let local = text(
            f.tree
                .open(&name, Via::Http, ip("10.99.0.12"), SERVER)
                .unwrap(),
        );
        assert!(local.contains("chainloader"), "{name}: {local}");
    }
    let ev = f.events.lock().unwrap().0.clone();
    assert_eq!(ev.len(), 6);
    assert!(ev.iter().all(|e| e.loader == "grub"));
    assert_eq!(ev[0].node.as_deref(), Some("n1"));
    assert_eq!(ev[1].mode, "local");
    // No machine at the address, loopback, or a node with nothing to render: the directory.
    for from in ["10.99.0.99", "127.0.0.1", "10.99.0.13"] {
        let cfg = text(
            f.tree
                .open("grub/grub.cfg", Via::Tftp, ip(from), SERVER)
                .unwrap(),
        );
        assert_eq!(cfg, "# operator's\n", "from {from}");
    }
    assert!(matches!(
        f.tree
            .open("other/grub.cfg", Via::Tftp, ip("10.99.0.99"), SERVER),
        Err(TreeError::NotFound)
    ));
    // A live lease is the machine too (an unknown MAC with the subnet's profile).
    f.lease(
        "02:00:00:00:00:09".parse().unwrap(),
        Ipv4Addr::new(10, 99, 1, 4),
    );
    let cfg = text(
        f.tree
            .open("x/grub.cfg", Via::Tftp, ip("10.99.1.4"), SERVER)
            .unwrap(),
    );
    assert!(cfg.contains("netboots profile live"), "{cfg}");
}

#[test]
fn a_sighting_is_the_address_of_a_machine_without_a_reservation_only() {
    let f = fixture();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // n3 has no boot intent here; n1 is reserved on 10.99.0.11. An unknown machine, seen at
    // 10.99.1.7 in its PXE exchange (proxyDHCP), is served its subnet's profile there.
    let stranger: MacAddr = "02:00:00:00:00:07".parse().unwrap();
    assert!(f.board.sight(stranger, Ipv4Addr::new(10, 99, 1, 7), now));
    let script = text(
        f.tree
            .open("ipxe/02-00-00-00-00-07", Via::Http, ip("10.99.1.7"), SERVER)
            .unwrap(),
    );
    assert!(script.contains("netboots profile live"), "{script}");
    let grub = text(
        f.tree
            .open("grub/grub.cfg", Via::Tftp, ip("10.99.1.7"), SERVER)
            .unwrap(),
    );
    assert!(grub.contains("netboots profile live"), "{grub}");
    // A reserved node's MAC claimed from another address: its reservation alone counts.
    let n1: MacAddr = "52:54:00:aa:00:01".parse().unwrap();
    assert!(f.board.sight(n1, Ipv4Addr::new(10, 99, 1, 8), now));
    assert!(matches!(
        f.tree
            .open("ipxe/52-54-00-aa-00-01", Via::Http, ip("10.99.1.8"), SERVER),
        Err(TreeError::NotYours)
    ));
    assert!(matches!(
        f.tree.open(
            "nodes/52-54-00-aa-00-01/user-data",
            Via::Http,
            ip("10.99.1.8"),
            SERVER
        ),
        Err(TreeError::Hidden)
    ));
    let fallback = f
        .tree
        .open("grub/grub.cfg", Via::Tftp, ip("10.99.1.8"), SERVER);
    match fallback {
        Ok(c) => assert!(
            !text(c).contains("node1"),
            "a claimed address is not node1's"
        ),
        Err(e) => assert!(matches!(e, TreeError::NotFound), "{e:?}"),
    }
    // An expired sighting is no one's address.
    let old: MacAddr = "02:00:00:00:00:06".parse().unwrap();
    assert!(f.board.sight(old, Ipv4Addr::new(10, 99, 1, 6), now - 7200));
    assert!(matches!(
        f.tree
            .open("ipxe/02-00-00-00-00-06", Via::Http, ip("10.99.1.6"), SERVER),
        Err(TreeError::NotYours)
    ));
}

/// Issue 27: a machine booting over IPv6 is known by its IPv6 reservation or DHCPv6 lease,
/// and its URLs name the IPv6 address it reached.
#[test]
fn a_machine_is_served_at_its_ipv6_reservation_and_lease() {
    let f = fixture();
    let server6 = ip("fd00:99::2");
    let cfg = text(
        f.tree
            .open(
                "/debian-installer/amd64/grub/grub.cfg",
                Via::Tftp,
                ip("fd00:99::11"),
                server6,
            )
            .unwrap(),
    );
    assert!(
        cfg.contains("netboots profile live") && cfg.contains("pserv.host=node1"),
        "{cfg}"
    );
    let ipxe = text(
        f.tree
            .open(
                "ipxe/52-54-00-aa-00-01",
                Via::Http,
                ip("fd00:99::11"),
                server6,
            )
            .unwrap(),
    );
    assert!(ipxe.contains("http://[fd00:99::2]:5248/"), "{ipxe}");
    // Another IPv6 address is not the machine's.
    assert!(matches!(
        f.tree.open(
            "ipxe/52-54-00-aa-00-01",
            Via::Http,
            ip("fd00:99::12"),
            server6
        ),
        Err(TreeError::NotYours)
    ));
    assert!(matches!(
        f.tree.open(
            "nodes/52-54-00-aa-00-01/user-data",
            Via::Http,
            ip("fd00:99::12"),
            server6
        ),
        Err(TreeError::Hidden)
    ));
    let data = text(
        f.tree
            .open(
                "nodes/52-54-00-aa-00-01/user-data",
                Via::Http,
                ip("fd00:99::11"),
                server6,
            )
            .unwrap(),
    );
    assert!(
        data.contains("http://[fd00:99::2]:5248/nodes/52-54-00-aa-00-01/progress"),
        "{data}"
    );
    // An IPv4 peer of a dual-stack socket (IPv4-mapped) is an IPv4 peer.
    let mapped = text(
        f.tree
            .open(
                "grub/grub.cfg",
                Via::Tftp,
                ip("::ffff:10.99.0.11"),
                ip("::ffff:10.99.0.2"),
            )
            .unwrap(),
    );
    assert!(mapped.contains("pserv.host=node1"), "{mapped}");

    // An unknown machine on a DHCPv6 lease: its subnet's profile, at that address only.
    let stranger: MacAddr = "02:00:00:00:00:0a".parse().unwrap();
    let name = "ipxe/02-00-00-00-00-0a";
    assert!(matches!(
        f.tree.open(name, Via::Http, ip("fd00:99::1:7"), server6),
        Err(TreeError::NotYours)
    ));
    f.lease6(stranger, "fd00:99::1:7".parse().unwrap());
    let script = text(
        f.tree
            .open(name, Via::Http, ip("fd00:99::1:7"), server6)
            .unwrap(),
    );
    assert!(script.contains("netboots profile live"), "{script}");
    let plain = text(
        f.tree
            .open("grub/grub.cfg", Via::Tftp, ip("fd00:99::1:7"), server6)
            .unwrap(),
    );
    assert!(plain.contains("netboots profile live"), "{plain}");
    assert!(f.tree.machine(stranger, ip("fd00:99::1:7")).is_ok());
    // A host claiming a reserved machine's MAC in DHCPv6 (its DUID or link-local address)
    // gets a lease of its own: that address is not the machine's.
    let n1: MacAddr = "52:54:00:aa:00:01".parse().unwrap();
    f.lease6(n1, "fd00:99::1:9".parse().unwrap());
    assert!(matches!(
        f.tree.open(
            "ipxe/52-54-00-aa-00-01",
            Via::Http,
            ip("fd00:99::1:9"),
            server6
        ),
        Err(TreeError::NotYours)
    ));
    assert!(matches!(
        f.tree.machine(n1, ip("fd00:99::1:9")),
        Err(TreeError::Hidden)
    ));
    assert!(matches!(
        f.tree.machine(stranger, ip("fd00:99::1:8")),
        Err(TreeError::Hidden)
    ));
}
