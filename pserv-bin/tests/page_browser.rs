//! The status page in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver), against the real binary serving 100,000 nodes with a token, while
//! `pserv-storm` boots a few hundred machines from it across a veth pair between two
//! namespaces this test creates. From the DOM it checks: the token is asked for and sent as
//! a header (never in a URL), the page's first render and a search's server time, that the
//! machines move through their boot stages (in order, each one ending installed), that the
//! page keeps up with the event stream, and that the page is keyboard navigable. Needs root,
//! chromium and chromedriver; runs (never skips) when `CI=true`.
//!
//! `PSERV_SCREENSHOTS=DIR` keeps screenshots of the page during and after the storm there
//! (the README's).

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use pserv_tests::process::Process;
use pserv_tests::webdriver::WebDriver;
use pserv_tests::{have_root, have_tool};
use serde_json::Value;

mod netns;
use netns::Lab;

const TOKEN: &str = "page-test-token-5f1c";
/// Machines the storm boots, and nodes in the snapshot in all.
const MACHINES: u32 = 300;
const NODES: u32 = 100_000;

/// `GET path` with the token, read to the end.
fn get(control: &str, path: &str) -> String {
    let addr = control.trim_start_matches("http://").parse().unwrap();
    pserv_tests::http_get_as(addr, path, Some(TOKEN))
}

/// The sequence number of an event id (`<boot>-<seq>`).
fn seq(id: &Value) -> u64 {
    id.as_str()
        .and_then(|s| s.rsplit('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn snapshot(p: &str) -> String {
    let mut nodes = Vec::with_capacity(NODES as usize);
    for i in 0..MACHINES {
        let n = i.to_be_bytes();
        let host = i + 1;
        nodes.push(format!(
            r#"{{"id":"m{i:04}","hostname":"m{i:04}","domain":"lab","interfaces":[{{"mac":"02:b0:{:02x}:{:02x}:{:02x}:{:02x}","ipv4":"{p}.{}.{}"}}],"boot":{{"profile":"install"}}}}"#,
            n[0],
            n[1],
            n[2],
            n[3],
            128 + host / 256,
            host % 256
        ));
    }
    // The rest of the rack: known machines that are not booting now.
    for i in MACHINES..NODES {
        let n = i.to_be_bytes();
        nodes.push(format!(
            r#"{{"id":"f{i:06}","hostname":"f{i:06}","domain":"lab","interfaces":[{{"mac":"02:f0:{:02x}:{:02x}:{:02x}:{:02x}"}}]}}"#,
            n[0], n[1], n[2], n[3]
        ));
    }
    format!(
        r#"{{"generation": 1,
  "boot_profiles": {{"install": {{"kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
      "cmdline": "console=ttyS0 url={{{{ node_files_url }}}}preseed.cfg",
      "node_files": {{"preseed.cfg": "d-i netcfg/get_hostname string {{{{ node.hostname }}}}\n"}}}}}},
  "subnets": [{{"cidr": "{p}.0.0/16", "router": "{p}.0.1", "dns_servers": ["{p}.0.1"],
    "domain": "lab", "unknown_clients": "ignore", "boot": {{}},
    "dynamic": [{{"start": "{p}.200.1", "end": "{p}.203.254"}}]}}],
  "nodes": [{}]}}"#,
        nodes.join(",\n")
    )
}

#[test]
fn status_page_follows_a_boot_storm_in_headless_chromium() {
    if !(have_root("the status page's browser test (network namespaces)")
        && have_tool("ip")
        && have_tool("chromium")
        && have_tool("chromedriver"))
    {
        return;
    }
    let lab = Lab::new("w", 78);
    let p = lab.p().to_owned();
    let root = netns::storm_boot_dir(&lab);
    std::fs::write(&lab.snap, snapshot(&p)).unwrap();
    let cli = &lab.net.cli;
    cli.addr("vcli", &format!("{p}.0.2/16"));
    cli.ip(&[
        "route",
        "add",
        "local",
        &format!("{p}.128.0/23"),
        "dev",
        "lo",
    ]);
    let srv = &lab.net.srv;
    let (_pserv, control) = netns::serve_storm(&lab, &root, &["--token", TOKEN]);
    let driver_port = 9515;
    // chromedriver and the browsers it starts, in a process group of their own: stopped
    // together, by the group's id, whatever way the test ends.
    let driver = DriverGroup(Process::spawn(
        srv.exec("chromedriver")
            .arg(format!("--port={driver_port}"))
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    ));
    let shots = std::env::var_os("PSERV_SCREENSHOTS").map(std::path::PathBuf::from);
    if let Some(dir) = &shots {
        std::fs::create_dir_all(dir).unwrap();
    }
    let cli_name = cli.name().to_owned();
    let relay: Ipv4Addr = format!("{p}.0.2").parse().unwrap();
    let server = SocketAddrV4::new(format!("{p}.0.1").parse().unwrap(), 67);
    let storm_root = root.clone();

    // Everything the browser does runs on a thread in the server's namespace (where the
    // control API's loopback is).
    let report = srv.enter(move || {
        let driver = SocketAddr::from(([127, 0, 0, 1], driver_port));
        let browser = WebDriver::start(
            driver,
            "/usr/bin/chromium",
            &["--window-size=1400,2300"],
            Duration::from_secs(30),
        );

        // 1. The token: asked for, typed, sent as a header.
        let base = format!("{control}/");
        browser.go(&base);
        browser.wait_for(
            "the token form",
            "return !document.getElementById('login').hidden;",
            Duration::from_secs(10),
        );
        browser.type_into("#token", "wrong-token\u{e007}");
        browser.wait_for(
            "the refusal",
            "return document.getElementById('login-error').textContent.includes('refused');",
            Duration::from_secs(10),
        );
        browser.clear("#token");
        browser.type_into("#token", &format!("{TOKEN}\u{e007}"));
        browser.wait_for(
            "the page after the token",
            "return !document.getElementById('main').hidden && window.pservPage.connected;",
            Duration::from_secs(20),
        );
        // 2. First render at 100,000 nodes, in a fresh load (the token is kept for the tab).
        browser.go(&base);
        let first = browser.wait_for(
            "the first render",
            "return window.pservPage && window.pservPage.firstRenderMs;",
            Duration::from_secs(20),
        );
        let first_ms = first.as_f64().unwrap();
        eprintln!("first render at {NODES} nodes: {first_ms:.0} ms");
        assert!(first_ms < 1000.0, "first render took {first_ms} ms");
        // Every request from here on is kept for the token check at the end (Chromium keeps
        // 250 by default).
        browser.run("performance.setResourceTimingBufferSize(100000); return true;");
        let total = browser.run("return document.getElementById('machines').dataset.total;");
        assert_eq!(total, Value::String(NODES.to_string()));

        // 3. Search, typed as keys: by hostname, by MAC written with hyphens, by address.
        for (query, want) in [
            ("m0042", "m0042.lab"),
            ("02-b0-00-00-00-2a", "m0042.lab"),
            (&format!("{p}.128.43") as &str, "m0042.lab"),
        ] {
            browser.clear("#search");
            browser.type_into("#search", query);
            let script = format!(
                "const m = document.getElementById('machines'); \
                 const rows = document.querySelectorAll('#machine-rows tr'); \
                 return m.dataset.query === {q:?} && rows.length >= 1 \
                   ? [m.dataset.total, rows[0].cells[0].textContent, m.dataset.tookMs] : null;",
                q = query
            );
            let got = browser.wait_for("the search", &script, Duration::from_secs(10));
            assert_eq!(got[1], Value::String(want.into()), "search {query}: {got}");
            assert_eq!(got[0], Value::String("1".into()), "search {query}: {got}");
            let took: f64 = got[2].as_str().unwrap().parse().unwrap();
            eprintln!("search {query:?}: {took:.1} ms on the server");
            assert!(took < 100.0, "search {query} took {took} ms");
        }
        browser.clear("#search");
        browser.wait_for(
            "the whole list again",
            &format!(
                "return document.getElementById('machines').dataset.total === '{NODES}' && \
                 document.querySelectorAll('#machine-rows tr').length === 50;"
            ),
            Duration::from_secs(10),
        );
        // Keyboard: Tab from the search box reaches the view selector, then the pager.
        browser.click("#search");
        browser.keys("\u{e004}");
        assert_eq!(
            browser.run("return document.activeElement.id;"),
            Value::String("view".into())
        );

        // 4. The storm, with every machine's stages recorded as the page shows them.
        browser.run(
            "window.__seen = {}; \
             const note = (tr) => { const mac = tr.dataset.mac, s = tr.dataset.stage; \
               const l = window.__seen[mac] || (window.__seen[mac] = []); \
               if (l[l.length - 1] !== s) l.push(s); }; \
             document.querySelectorAll('#machine-rows tr').forEach(note); \
             new MutationObserver((ms) => ms.forEach((m) => { \
               const tr = m.target.closest ? m.target.closest('tr') : null; if (tr) note(tr); })) \
               .observe(document.getElementById('machine-rows'), \
                 {subtree: true, childList: true, attributes: true, attributeFilter: ['data-stage']}); \
             return true;",
        );
        let storm = std::thread::spawn(move || {
            let cfg = pserv_storm::boot::Config {
        dhcp6: None,
                server,
                proxy: None,
                relay,
                machines: MACHINES,
                arch: pserv_storm::boot::Arch::Mix,
                ramp: Duration::from_secs(4),
                mac_prefix: [0x02, 0xb0],
                tftp: pserv_boot::tftp::client::Request::default(),
                leased_source: true,
                boot_dir: Some(storm_root),
                timeout: Duration::from_secs(4),
                dhcp_tries: 4,
                deadline: Duration::from_secs(120),
                // Each step held long enough for the page (drawn five times a second) to
                // show it, as a real machine's seconds would.
                think: Duration::from_millis(400),
            };
            netns::run_storm(&cli_name, cfg)
        });
        // While it runs: the events the server has sent by each moment must be on the page
        // within a second; the stage counts are sampled.
        let mut sent: Vec<(Instant, u64)> = Vec::new();
        let mut samples: Vec<Value> = Vec::new();
        let mut shot_taken = false;
        let t0 = Instant::now();
        while !storm.is_finished() || t0.elapsed() < Duration::from_secs(2) {
            let metrics = get(&control, "/metrics");
            sent.push((
                Instant::now(),
                pserv_tests::metric(&metrics, "pserv_events_total "),
            ));
            let page = browser.run(
                "const s = {}; document.querySelectorAll('#stage-summary span') \
                   .forEach((e) => s[e.dataset.stage] = +e.dataset.count); \
                 const rows = [...document.querySelectorAll('#machine-rows tr')] \
                   .filter((r) => r.dataset.stage !== 'none' && r.dataset.stage !== 'installer'); \
                 return [window.pservPage.renderedId, window.pservPage.maxLagMs, s, rows.length];",
            );
            let shown = seq(&page[0]);
            let now = Instant::now();
            for (at, n) in &sent {
                if now.duration_since(*at) >= Duration::from_secs(1) {
                    assert!(
                        shown >= *n,
                        "event {n} was sent {:?} ago and the page shows up to {shown}",
                        now.duration_since(*at)
                    );
                }
            }
            sent.retain(|(at, _)| now.duration_since(*at) < Duration::from_secs(1));
            // The README's picture: a moment with machines mid-boot.
            let booting: u64 = (1..=4)
                .map(|k| page[2][format!("stage-{k}")].as_u64().unwrap_or(0))
                .sum();
            if !shot_taken
                && booting >= 3
                && t0.elapsed() >= Duration::from_millis(2500)
                && let Some(dir) = &shots
            {
                std::fs::write(dir.join("page-storm.png"), browser.screenshot()).unwrap();
                shot_taken = true;
            }
            samples.push(page);
            std::thread::sleep(Duration::from_millis(100));
        }
        let report = storm.join().unwrap();
        // Every machine installed, as the page counts them.
        let done = browser.wait_for(
            "every machine at the installer stage",
            &format!(
                "const e = document.querySelector('#stage-summary [data-stage=stage-5]'); \
                 return e && +e.dataset.count === {MACHINES} ? window.pservPage : null;"
            ),
            Duration::from_secs(10),
        );
        eprintln!("page after the storm: {done}");
        assert!(
            done["maxLagMs"].as_f64().unwrap() < 1000.0,
            "an event took over a second to render: {done}"
        );
        // Mid-storm samples saw machines between DHCP and the installer.
        let between = samples.iter().any(|s| {
            (1..=4).any(|k| s[2][format!("stage-{k}")].as_u64().unwrap_or(0) > 0)
        });
        assert!(between, "no sample caught a machine mid-boot: {samples:?}");
        // Each machine on the first page went through its stages in order and ended installed.
        let seen = browser.run("return window.__seen;");
        let order = ["none", "DHCP", "loader", "config", "kernel/initrd", "installer"];
        let mut stages_seen = std::collections::BTreeSet::new();
        let rows = seen.as_object().unwrap();
        assert_eq!(rows.len(), 50, "{seen}");
        for (mac, list) in rows {
            let idx: Vec<usize> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|s| order.iter().position(|o| s == o).unwrap())
                .collect();
            assert!(idx.windows(2).all(|w| w[0] < w[1]), "{mac}: {list}");
            assert_eq!(idx.last(), Some(&5), "{mac}: {list}");
            stages_seen.extend(idx);
        }
        eprintln!("stages the first page showed: {stages_seen:?}");
        // With each step held 400 ms, the page showed every stage of some machine.
        assert_eq!(stages_seen.len(), order.len(), "{seen}");
        // The token never went into a URL the page loaded (it went as a header: the API
        // refuses every request without it, and the page got its answers).
        let urls = browser.run(
            "return performance.getEntriesByType('resource').map((e) => e.name)\
               .concat([location.href]);",
        );
        assert!(!urls.to_string().contains(TOKEN), "{urls}");
        assert!(urls.to_string().contains("/v1/nodes"), "{urls}");
        if let Some(dir) = &shots {
            std::fs::write(dir.join("page-done.png"), browser.screenshot()).unwrap();
        }
        report
    });
    assert_eq!(
        (report.booted, report.failed),
        (u64::from(MACHINES), 0),
        "{report:#?}"
    );
    drop(driver);
}

/// chromedriver's process group, killed on drop.
struct DriverGroup(Process);

impl Drop for DriverGroup {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        self.0.kill();
    }
}
