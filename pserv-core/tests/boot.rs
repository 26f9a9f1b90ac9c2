//! Boot profiles, intent and templates (issue 11): what the table renders per node, and every
//! way a push with boot settings is refused.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use pserv_core::table::{Endpoint, Intent, Loader, RenderError};
use pserv_core::{MacAddr, Problem, Snapshot, Table};

const AT: Endpoint = Endpoint {
    server: std::net::IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)),
    http_port: 5248,
    syslog: None,
};

fn snapshot(extra: serde_json::Value) -> Snapshot {
    let mut base = serde_json::json!({
        "generation": 1,
        "boot_profiles": {
            "live": { "kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
                      "cmdline": "console=ttyS0 hostname={{ node.hostname }} {{ vars.extra }}",
                      "vars": { "extra": "quiet" } },
            "enlist": { "kernel": "http://10.99.0.9/k", "cmdline": "enlist mac={{ node.mac }}" }
        },
        "subnets": [ { "cidr": "10.99.0.0/16", "domain": "lab",
                       "dynamic": [ { "start": "10.99.1.1", "end": "10.99.1.50" } ],
                       "boot": { "unknown_profile": "enlist" } } ],
        "nodes": [
            { "id": "n1", "hostname": "Node1", "domain": "lab",
              "interfaces": [ { "mac": "52:54:00:aa:00:01", "ipv4": "10.99.0.11" } ],
              "boot": { "profile": "live", "vars": { "extra": "pserv.marker=yes" } } },
            { "id": "n2", "hostname": "node2", "domain": "lab",
              "interfaces": [ { "mac": "52:54:00:aa:00:02", "ipv4": "10.99.0.12" } ],
              "boot": { "mode": "local", "profile": "live" } },
            { "id": "n3", "hostname": "node3", "domain": "lab",
              "interfaces": [ { "mac": "52:54:00:aa:00:03", "ipv4": "10.99.0.13" } ],
              "boot": { "mode": "ignore", "profile": "live" } },
            { "id": "n4", "hostname": "node4", "domain": "lab",
              "interfaces": [ { "mac": "52:54:00:aa:00:04", "ipv4": "10.99.0.14" } ] }
        ]
    });
    merge(&mut base, extra);
    serde_json::from_value(base).unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn problems(snap: &Snapshot) -> Vec<Problem> {
    Table::compile(snap, None).unwrap_err()
}

#[test]
fn netboot_node_gets_its_profile_rendered_for_every_loader() {
    let t = Table::compile(&snapshot(serde_json::json!({})), None).unwrap();
    let m = mac("52:54:00:aa:00:01");
    assert_eq!(
        t.boot_intent(m, None),
        Intent::Netboot(t.boot_plan().profile_index("live").unwrap())
    );
    let ipxe = t.render_boot(Loader::Ipxe, m, None, AT).unwrap();
    assert!(ipxe.text.starts_with("#!ipxe\n"), "{}", ipxe.text);
    assert!(
        ipxe.text.contains(
            "kernel http://10.99.0.2:5248/images/vmlinuz initrd=initrd.img console=ttyS0 hostname=node1 pserv.marker=yes\n"
        ),
        "node vars win over the profile's, hostname is lower case:\n{}",
        ipxe.text
    );
    assert!(
        ipxe.text
            .contains("initrd http://10.99.0.2:5248/images/initrd.img\n")
    );
    assert!(ipxe.text.ends_with("boot\n"));
    assert_eq!(ipxe.profile.as_deref(), Some("live"));
    assert_eq!(ipxe.node.as_deref(), Some("n1"));

    let pxe = t.render_boot(Loader::Pxelinux, m, None, AT).unwrap().text;
    assert!(pxe.contains("KERNEL /images/vmlinuz\n"), "{pxe}");
    assert!(pxe.contains("INITRD /images/initrd.img\n"), "{pxe}");
    assert!(pxe.contains("APPEND console=ttyS0 hostname=node1 pserv.marker=yes\n"));

    let grub = t.render_boot(Loader::Grub, m, None, AT).unwrap().text;
    assert!(
        grub.contains("linux /images/vmlinuz console=ttyS0 hostname=node1"),
        "{grub}"
    );
    assert!(grub.contains("initrd /images/initrd.img\n"), "{grub}");

    assert!(
        !grub.contains("(http,"),
        "HTTP boot is not on port 80:\n{grub}"
    );

    // GRUB 2.06 cannot name a port: HTTP is tried first only when HTTP boot is on port 80,
    // then TFTP (Debian's signed GRUB has no HTTP); an http URL keeps its host, without a
    // port of 80.
    let at80 = Endpoint {
        http_port: 80,
        ..AT
    };
    let grub = t.render_boot(Loader::Grub, m, None, at80).unwrap().text;
    assert!(
        grub.contains(
            "  if linux (http,10.99.0.2)/images/vmlinuz console=ttyS0 hostname=node1 pserv.marker=yes; then\n    initrd (http,10.99.0.2)/images/initrd.img\n  else\n    linux /images/vmlinuz console=ttyS0 hostname=node1 pserv.marker=yes\n    initrd /images/initrd.img\n  fi\n"
        ),
        "{grub}"
    );
    // A boot-directory kernel with a URL initrd: the HTTP branch keeps its initrd.
    let mixed = Table::compile(
        &snapshot(serde_json::json!({ "boot_profiles": { "live": {
            "initrd": ["http://10.99.0.9/extra.img"] } } })),
        None,
    )
    .unwrap();
    let grub = mixed.render_boot(Loader::Grub, m, None, at80).unwrap().text;
    assert!(
        grub.contains("    initrd (http,10.99.0.9)/extra.img\n  else\n"),
        "{grub}"
    );
    let unknown = mac("52:54:00:bb:00:09");
    let grub = t
        .render_boot(
            Loader::Grub,
            unknown,
            Some(Ipv4Addr::new(10, 99, 1, 9).into()),
            at80,
        )
        .unwrap()
        .text;
    assert!(grub.contains("linux (http,10.99.0.9)/k enlist"), "{grub}");
}

#[test]
fn boot_chain_is_read_from_subnets_and_nodes_and_checked() {
    let snap = snapshot(serde_json::json!({
        "subnets": [ { "cidr": "10.99.0.0/16", "domain": "lab", "boot": { "chain": "grub" } } ]
    }));
    assert!(Table::compile(&snap, None).is_ok());
    let json = serde_json::json!({ "generation": 1, "subnets": [ { "cidr": "10.99.0.0/16",
        "boot": { "chain": "shim" } } ] })
    .to_string();
    let e = Snapshot::from_json(json.as_bytes()).unwrap_err();
    assert!(e.path.contains("subnets[0].boot.chain"), "{e}");
    assert!(e.message.contains("shim"), "{e}");
}

#[test]
fn local_node_gets_each_loaders_boot_from_disk_form_and_no_kernel() {
    let t = Table::compile(&snapshot(serde_json::json!({})), None).unwrap();
    let m = mac("52:54:00:aa:00:02");
    assert_eq!(t.boot_intent(m, None), Intent::Local);
    let ipxe = t.render_boot(Loader::Ipxe, m, None, AT).unwrap();
    assert!(
        ipxe.text.contains("sanboot --no-describe --drive 0x80"),
        "{}",
        ipxe.text
    );
    assert!(ipxe.text.contains("\nexit\n"));
    assert!(!ipxe.text.contains("kernel"), "{}", ipxe.text);
    assert_eq!(ipxe.profile, None);
    let pxe = t.render_boot(Loader::Pxelinux, m, None, AT).unwrap().text;
    assert!(pxe.contains("LOCALBOOT 0"), "{pxe}");
    assert!(!pxe.contains("KERNEL"));
    let grub = t.render_boot(Loader::Grub, m, None, AT).unwrap().text;
    assert!(
        grub.contains("chainloader") && grub.contains("\nexit\n"),
        "{grub}"
    );
    assert!(!grub.contains("linux "));
}

#[test]
fn ignore_and_nodes_without_intent_render_nothing() {
    let t = Table::compile(&snapshot(serde_json::json!({})), None).unwrap();
    for (m, intent) in [
        ("52:54:00:aa:00:03", Intent::Ignore),
        ("52:54:00:aa:00:04", Intent::Legacy),
    ] {
        assert_eq!(t.boot_intent(mac(m), None), intent);
        for l in Loader::ALL {
            assert_eq!(
                t.render_boot(l, mac(m), None, AT),
                Err(RenderError::NoIntent),
                "{m}"
            );
        }
    }
}

#[test]
fn unknown_clients_get_their_subnets_profile_found_by_their_address() {
    let t = Table::compile(&snapshot(serde_json::json!({})), None).unwrap();
    let m = mac("52:54:00:bb:00:01");
    let ipxe = t
        .render_boot(
            Loader::Ipxe,
            m,
            Some(Ipv4Addr::new(10, 99, 1, 7).into()),
            AT,
        )
        .unwrap();
    assert!(
        ipxe.text
            .contains("kernel http://10.99.0.9/k enlist mac=52:54:00:bb:00:01"),
        "an absolute URL is kept as it is:\n{}",
        ipxe.text
    );
    assert_eq!(ipxe.node, None);
    assert_eq!(
        t.render_boot(
            Loader::Ipxe,
            m,
            Some(Ipv4Addr::new(192, 168, 1, 1).into()),
            AT
        ),
        Err(RenderError::NoIntent),
        "outside every subnet: no profile"
    );
    assert_eq!(
        t.render_boot(Loader::Ipxe, m, None, AT),
        Err(RenderError::NoIntent)
    );
}

#[test]
fn unknown_profile_is_a_problem_naming_node_and_profile() {
    let snap = snapshot(serde_json::json!({
        "nodes": [ { "id": "n1", "hostname": "node1", "domain": "lab",
                     "interfaces": [ { "mac": "52:54:00:aa:00:01" } ],
                     "boot": { "profile": "jammy" } } ],
        "subnets": [ { "cidr": "10.99.0.0/16", "boot": { "unknown_profile": "nope" } } ]
    }));
    let p = problems(&snap);
    let text: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(p.len(), 2, "{text:#?}");
    assert!(
        text.iter()
            .any(|t| t.contains("node \"n1\" boot.profile") && t.contains("\"jammy\"")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("boot.unknown_profile") && t.contains("\"nope\"")),
        "{text:#?}"
    );
    assert_eq!(p[1].path(), "nodes[0].boot.profile");
}

#[test]
fn template_that_does_not_compile_rejects_the_push() {
    let snap = snapshot(serde_json::json!({
        "boot_templates": { "ipxe": "#!ipxe\nkernel {{ kernel_url " },
        "boot_profiles": { "live": { "cmdline": "{% if %}" } }
    }));
    let p = problems(&snap);
    let paths: Vec<String> = p.iter().map(Problem::path).collect();
    assert!(paths.contains(&"boot_templates.ipxe".to_owned()), "{p:#?}");
    assert!(
        paths.contains(&"boot_profiles.live.cmdline".to_owned()),
        "{p:#?}"
    );
    assert!(
        p.iter().all(|p| matches!(p, Problem::Template { .. })),
        "{p:#?}"
    );
}

#[test]
fn template_failing_for_one_node_names_that_node_only() {
    // The profile has no default for `needed`; node n1 sets it, node n5 does not.
    let snap = snapshot(serde_json::json!({
        "boot_profiles": { "live": { "cmdline": "a={{ vars.needed }}" } },
        "nodes": [
            { "id": "n1", "hostname": "node1", "domain": "lab",
              "interfaces": [ { "mac": "52:54:00:aa:00:01" } ],
              "boot": { "profile": "live", "vars": { "needed": "x" } } },
            { "id": "n5", "hostname": "node5", "domain": "lab",
              "interfaces": [ { "mac": "52:54:00:aa:00:05" } ],
              "boot": { "profile": "live" } },
            { "id": "n6", "hostname": "node6", "domain": "lab",
              "interfaces": [ { "mac": "52:54:00:aa:00:06" } ],
              "boot": { "mode": "local", "profile": "live" } }
        ]
    }));
    let p = problems(&snap);
    assert_eq!(p.len(), 1, "{p:#?}");
    let text = p[0].to_string();
    assert_eq!(p[0].node_ids(), vec!["n5"]);
    assert!(
        text.contains("\"live\"") && text.contains("cmdline"),
        "{text}"
    );
    assert!(text.contains("undefined"), "the engine says why: {text}");
}

#[test]
fn an_override_is_rendered_for_every_node_at_publish() {
    let snap = snapshot(serde_json::json!({
        "boot_templates": { "grub": "linux {{ kernel_grub }} {{ node.serial }}\n" }
    }));
    let p = problems(&snap);
    let paths: Vec<String> = p.iter().map(Problem::path).collect();
    assert_eq!(
        paths,
        vec!["subnets[0].boot.unknown_profile", "nodes[0].boot.profile"],
        "the unknown clients' profile and n1, the only node that netboots: {p:#?}"
    );
    assert!(p[1].to_string().contains("grub"), "{}", p[1]);
    let ok = snapshot(serde_json::json!({
        "boot_templates": { "pxelinux": "DEFAULT x\nLABEL x\n KERNEL {{ kernel_path }}\n APPEND {{ cmdline }} id={{ node.id }}\n" }
    }));
    let t = Table::compile(&ok, None).unwrap();
    let pxe = t
        .render_boot(Loader::Pxelinux, mac("52:54:00:aa:00:01"), None, AT)
        .unwrap()
        .text;
    assert!(
        pxe.ends_with("hostname=node1 pserv.marker=yes id=n1\n"),
        "{pxe}"
    );
    // Local nodes keep the fixed local form whatever the override says.
    let local = t
        .render_boot(Loader::Pxelinux, mac("52:54:00:aa:00:02"), None, AT)
        .unwrap()
        .text;
    assert!(local.contains("LOCALBOOT 0"), "{local}");
}

#[test]
fn a_template_cannot_loop_forever_at_publish() {
    let snap = snapshot(serde_json::json!({
        "boot_templates": { "ipxe": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}" }
    }));
    let t0 = std::time::Instant::now();
    let p = problems(&snap);
    assert!(t0.elapsed().as_secs() < 5, "{:?}", t0.elapsed());
    assert!(p.iter().any(|p| p.to_string().contains("fuel")), "{p:#?}");
}

#[test]
fn bad_kernel_paths_are_problems() {
    let snap = snapshot(serde_json::json!({
        "boot_profiles": { "live": { "kernel": "../etc/shadow", "initrd": ["a b"] } }
    }));
    let p = problems(&snap);
    let paths: Vec<String> = p.iter().map(Problem::path).collect();
    assert_eq!(
        paths,
        vec!["boot_profiles.live.kernel", "boot_profiles.live.initrd[0]"],
        "{p:#?}"
    );
}

#[test]
fn a_snapshot_without_boot_settings_means_what_it_meant() {
    let snap = Snapshot::from_json(pserv_core::snapshot::EXAMPLE_JSON.as_bytes()).unwrap();
    let t = Table::compile(&snap, None).unwrap();
    for i in t.interfaces() {
        assert_eq!(t.boot_intent(i.mac(), None), Intent::Legacy);
    }
    let back = Snapshot::from_json(&snap.to_json()).unwrap();
    assert_eq!(back, snap, "the new fields are left out when empty");
}

#[test]
fn rendering_for_an_interface_looked_up_already_is_rendering_by_mac() {
    let t = Table::compile(&snapshot(serde_json::json!({})), None).unwrap();
    let other = Table::compile(&snapshot(serde_json::json!({})), None).unwrap();
    let (known, unknown) = (mac("52:54:00:aa:00:01"), mac("52:54:00:bb:00:01"));
    let client = Some(Ipv4Addr::new(10, 99, 1, 7).into());
    for (m, client) in [(known, None), (known, client), (unknown, client)] {
        let by_mac = t.render_boot(Loader::Ipxe, m, client, AT);
        assert_eq!(
            t.render_boot_for(Loader::Ipxe, m, t.by_mac(m), client, AT),
            by_mac
        );
        // An interface of another table, or of another MAC, is not trusted: looked up again.
        assert_eq!(
            t.render_boot_for(Loader::Ipxe, m, other.by_mac(m), client, AT),
            by_mac
        );
        assert_eq!(
            t.render_boot_for(
                Loader::Ipxe,
                m,
                t.by_mac(mac("52:54:00:aa:00:04")),
                client,
                AT
            ),
            by_mac
        );
    }
}

/// Issue 21: node files, their variables, where they apply, and their validation.
fn with_files(files: serde_json::Value) -> Snapshot {
    snapshot(serde_json::json!({
        "boot_profiles": { "live": {
            "cmdline": "url={{ node_files_url }}preseed.cfg log_host={{ syslog_host }} log_port={{ syslog_port }}",
            "node_files": files } }
    }))
}

const AT_SYSLOG: Endpoint = Endpoint {
    server: std::net::IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)),
    http_port: 5248,
    syslog: Some(std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        514,
    ))),
};

#[test]
fn node_files_render_per_node_with_their_urls_in_every_mode() {
    let snap = with_files(serde_json::json!({
        "preseed.cfg": "d-i preseed/early_command string wget -q -O /dev/null '{{ progress_url }}?stage=early'\n# {{ node.fqdn }} {{ mode }}\n",
        "user-data": "#cloud-config\nhostname: {{ node.hostname }}\n",
        "meta-data": "instance-id: {{ node.id }}\nlocal-hostname: {{ node.hostname }}\n"
    }));
    let t = Table::compile(&snap, None).unwrap();
    let m = mac("52:54:00:aa:00:01");
    let f = t.render_file("preseed.cfg", m, None, AT_SYSLOG).unwrap();
    assert_eq!(
        f.text,
        "d-i preseed/early_command string wget -q -O /dev/null 'http://10.99.0.2:5248/nodes/52-54-00-aa-00-01/progress?stage=early'\n# node1.lab netboot\n"
    );
    assert_eq!(
        (f.node.as_deref(), f.profile.as_str()),
        (Some("n1"), "live")
    );
    // The command line names the files' URL and the syslog receiver as the machine reaches it.
    let ipxe = t
        .render_boot(Loader::Ipxe, m, None, AT_SYSLOG)
        .unwrap()
        .text;
    assert!(
        ipxe.contains(
            "url=http://10.99.0.2:5248/nodes/52-54-00-aa-00-01/preseed.cfg log_host=10.99.0.2 log_port=514"
        ),
        "{ipxe}"
    );
    // A node in `local` (or `ignore`) mode still gets its profile's files: an installed
    // machine reads its cloud-init files at first boot from disk.
    for (m, mode) in [
        ("52:54:00:aa:00:02", "local"),
        ("52:54:00:aa:00:03", "ignore"),
    ] {
        let f = t.render_file("preseed.cfg", mac(m), None, AT).unwrap();
        assert!(f.text.ends_with(&format!(" {mode}\n")), "{}", f.text);
    }
    // No syslog receiver: empty strings, not an error.
    let ipxe = t.render_boot(Loader::Ipxe, m, None, AT).unwrap().text;
    assert!(ipxe.contains("log_host= log_port="), "{ipxe}");
    // A name the profile does not have, and a node with no profile: nothing to render.
    assert_eq!(
        t.render_file("vendor-data", m, None, AT),
        Err(RenderError::NoIntent)
    );
    assert_eq!(
        t.render_file("preseed.cfg", mac("52:54:00:aa:00:04"), None, AT),
        Err(RenderError::NoIntent)
    );
    assert_eq!(
        t.boot_plan()
            .node_files(t.boot_plan().profile_index("live").unwrap()),
        &["meta-data".into(), "preseed.cfg".into(), "user-data".into()] as &[Box<str>]
    );
}

#[test]
fn unknown_clients_get_their_subnets_profile_files_at_request_time() {
    let snap = snapshot(serde_json::json!({
        "boot_profiles": { "enlist": { "node_files": {
            "user-data": "#cloud-config\nhostname: enlist-{{ node.mac_hyphen }}\n" } } }
    }));
    let t = Table::compile(&snap, None).unwrap();
    let unknown = mac("52:54:00:bb:00:09");
    let f = t
        .render_file(
            "user-data",
            unknown,
            Some(Ipv4Addr::new(10, 99, 1, 7).into()),
            AT,
        )
        .unwrap();
    assert_eq!(
        f.text,
        "#cloud-config\nhostname: enlist-52-54-00-bb-00-09\n"
    );
    assert_eq!(f.node, None);
    // Outside every subnet: no profile applies.
    assert_eq!(
        t.render_file(
            "user-data",
            unknown,
            Some(Ipv4Addr::new(192, 0, 2, 7).into()),
            AT
        ),
        Err(RenderError::NoIntent)
    );
}

#[test]
fn every_node_file_problem_is_reported_at_once_with_profile_node_file_and_line() {
    let snap = with_files(serde_json::json!({
        "progress": "x",
        "bad/name": "x",
        "broken.cfg": "line one\n{% if %}\n",
        "meta-data": "instance-id: {{ node.id }}\nlocal-hostname: [{{ node.hostname }}\n",
        "user-data": "#cloud-config\nhostname: {{ vars.missing }}\n",
        "config.ign": "{\"ignition\": {{ node.hostname }}}",
        "free.txt": "anything: [ goes { here\n"
    }));
    let found = problems(&snap);
    let text: Vec<String> = found.iter().map(|p| p.to_string()).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(
        has("node file \"progress\": the name \"progress\" is the progress endpoint's"),
        "{text:#?}"
    );
    assert!(
        has("node file \"bad/name\": the name \"bad/name\" may hold only"),
        "{text:#?}"
    );
    assert!(has("node file \"broken.cfg\", line 2:"), "{text:#?}");
    // Rendered per node, each of the three nodes naming the profile, each named.
    for id in ["n1", "n2", "n3"] {
        assert!(
            text.iter().any(|t| t.contains(&format!("node {id:?}"))
                && t.contains("node file \"meta-data\", line 3: not valid YAML")),
            "{id}: {text:#?}"
        );
        assert!(
            text.iter().any(|t| t.contains(&format!("node {id:?}"))
                && t.contains("node file \"user-data\"")
                && t.contains("undefined")),
            "{id}: {text:#?}"
        );
        assert!(
            text.iter().any(|t| t.contains(&format!("node {id:?}"))
                && t.contains("node file \"config.ign\", line 1: not valid JSON")),
            "{id}: {text:#?}"
        );
    }
    assert!(!has("free.txt"), "free text is not checked: {text:#?}");
    // The control API's form names the nodes.
    let v = serde_json::to_value(&found).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|p| p["nodes"] == serde_json::json!(["n2"]))
    );
}

#[test]
fn a_large_snapshot_validates_every_node_on_every_core_and_reports_in_document_order() {
    // Enough nodes to split the rendering across threads; two of them fail.
    let mut nodes = Vec::new();
    for i in 0..3000u32 {
        let mut node = serde_json::json!({
            "id": format!("n{i}"), "hostname": format!("h{i}"), "domain": "lab",
            "interfaces": [ { "mac": format!("52:54:00:00:{:02x}:{:02x}", i >> 8, i & 0xff),
                              "ipv4": format!("10.99.{}.{}", 2 + i / 250, 1 + i % 250) } ],
            "boot": { "profile": "live" } });
        if i == 17 || i == 2900 {
            node["boot"]["vars"] = serde_json::json!({ "bad": "yes" });
        }
        nodes.push(node);
    }
    let snap: Snapshot = serde_json::from_value(serde_json::json!({
        "generation": 1,
        "boot_profiles": { "live": { "kernel": "k", "cmdline": "x",
            "node_files": { "meta-data": "instance-id: {{ node.id }}\n{% if vars.bad is defined %}: [\n{% endif %}" } } },
        "subnets": [ { "cidr": "10.99.0.0/16", "domain": "lab" } ],
        "nodes": nodes
    }))
    .unwrap();
    let found = problems(&snap);
    let ids: Vec<Vec<&str>> = found.iter().map(|p| p.node_ids()).collect();
    assert_eq!(ids, vec![vec!["n17"], vec!["n2900"]], "{found:#?}");
}

/// Issue 27: a machine booting over IPv6 gets its configuration and files rendered for its
/// IPv6 address, with URLs naming the IPv6 address it reached (in brackets), and an unknown
/// one its IPv6 subnet's profile.
#[test]
fn a_machine_asking_over_ipv6_is_rendered_for_its_ipv6_address() {
    let snap = snapshot(serde_json::json!({
        "boot_profiles": { "live": {
            "cmdline": "v4={{ node.ipv4 }} v6={{ node.ipv6 }} net={{ subnet.cidr }} files={{ node_files_url }}",
            "node_files": { "user-data": "#cloud-config\nhostname: {{ node.hostname }}\n# {{ node.ipv6 }}\n" } } },
        "subnets": [
            { "cidr": "10.99.0.0/16", "domain": "lab" },
            { "cidr": "fd00:99::/64", "domain": "lab6",
              "dynamic": [ { "start": "fd00:99::1000", "end": "fd00:99::1fff" } ],
              "boot": { "unknown_profile": "enlist" } } ],
        "nodes": [
            { "id": "n1", "hostname": "node1", "domain": "lab",
              "interfaces": [ { "mac": "52:54:00:aa:00:01", "ipv4": "10.99.0.11", "ipv6": "fd00:99::11" } ],
              "boot": { "profile": "live" } } ]
    }));
    let t = Table::compile(&snap, None).unwrap();
    let m = mac("52:54:00:aa:00:01");
    let at6 = Endpoint {
        server: "fd00:99::2".parse().unwrap(),
        ..AT
    };
    let six: std::net::IpAddr = "fd00:99::11".parse().unwrap();
    let ipxe = t.render_boot(Loader::Ipxe, m, Some(six), at6).unwrap().text;
    assert!(
        ipxe.contains("kernel http://[fd00:99::2]:5248/images/vmlinuz"),
        "{ipxe}"
    );
    assert!(
        ipxe.contains(
            "v4=10.99.0.11 v6=fd00:99::11 net=fd00:99::/64 files=http://[fd00:99::2]:5248/nodes/52-54-00-aa-00-01/"
        ),
        "{ipxe}"
    );
    let grub = t.render_boot(Loader::Grub, m, Some(six), at6).unwrap().text;
    assert!(grub.contains("linux /images/vmlinuz"), "{grub}");
    // Over IPv4 the same node is rendered for its IPv4 subnet.
    let four = t.render_boot(Loader::Ipxe, m, None, AT).unwrap().text;
    assert!(four.contains("net=10.99.0.0/16"), "{four}");
    let f = t.render_file("user-data", m, Some(six), at6).unwrap();
    assert!(
        f.text.contains("hostname: node1\n# fd00:99::11"),
        "{}",
        f.text
    );

    // An unknown machine: the profile of the IPv6 subnet its address is in.
    let unknown = mac("52:54:00:bb:00:01");
    let dynamic: std::net::IpAddr = "fd00:99::1007".parse().unwrap();
    let enlist = t
        .render_boot(Loader::Ipxe, unknown, Some(dynamic), at6)
        .unwrap()
        .text;
    assert!(enlist.contains("enlist mac=52:54:00:bb:00:01"), "{enlist}");
    assert_eq!(
        t.render_boot(
            Loader::Ipxe,
            unknown,
            Some("fd00:1::7".parse().unwrap()),
            at6
        ),
        Err(RenderError::NoIntent),
        "outside every subnet: no profile"
    );
    // GRUB over HTTP on port 80 names the IPv6 server bare, as GRUB's device syntax wants.
    let at80 = Endpoint {
        http_port: 80,
        ..at6
    };
    let grub = t
        .render_boot(Loader::Grub, m, Some(six), at80)
        .unwrap()
        .text;
    assert!(grub.contains("(http,fd00:99::2)/images/vmlinuz"), "{grub}");
}
