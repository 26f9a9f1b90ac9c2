//! The virtual tree: rendered configurations by loader name, only to their own machine, and
//! the boot directory for everything else.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use pserv_boot::tree::{BootDir, TreeError};
use pserv_boot::vtree::{ConfigServed, Content, Tree, Via};
use pserv_core::lease::{LeaseBoard, Leases};
use pserv_core::{MacAddr, Store};

const SNAP: &str = r#"{ "generation": 7,
  "boot_profiles": { "live": { "kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
                               "cmdline": "console=ttyS0 pserv.host={{ node.hostname }}" } },
  "subnets": [ { "cidr": "10.99.0.0/16", "dynamic": [ { "start": "10.99.1.1", "end": "10.99.1.9" } ],
                 "boot": { "unknown_profile": "live" } } ],
  "nodes": [
    { "id": "n1", "hostname": "node1", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:aa:00:01", "ipv4": "10.99.0.11" } ], "boot": { "profile": "live" } },
    { "id": "n2", "hostname": "node2", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:aa:00:02", "ipv4": "10.99.0.12" } ], "boot": { "mode": "local" } },
    { "id": "n3", "hostname": "node3", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:aa:00:03", "ipv4": "10.99.0.13" } ] } ] }"#;

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2));

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Fixture {
    tree: Tree,
    events: Arc<Mutex<Vec<ConfigServed>>>,
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
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let tree = Tree::new(
        Some(BootDir::new(dir.path()).unwrap()),
        store.clone(),
        board.clone(),
        5248,
        Arc::new(move |c: &ConfigServed| seen.lock().unwrap().push(c.clone())),
    );
    Fixture {
        tree,
        events,
        store,
        board,
        _dir: dir,
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
    let ev = f.events.lock().unwrap();
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
    assert!(f.events.lock().unwrap().is_empty(), "nothing was served");
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
    let table = f.store.load_full();
    let mut leases = Leases::new();
    leases
        .commit(
            &table,
            &table.subnets()[0],
            stranger,
            Ipv4Addr::new(10, 99, 1, 3),
            None,
            1_800_000_000,
        )
        .unwrap();
    leases.publish(&f.board);
    let script = text(
        f.tree
            .open(name, Via::Http, ip("10.99.1.3"), SERVER)
            .unwrap(),
    );
    assert!(script.contains("netboots profile live"), "{script}");
    let ev = f.events.lock().unwrap();
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
    assert_eq!(f.events.lock().unwrap()[0].mode, "local");
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
