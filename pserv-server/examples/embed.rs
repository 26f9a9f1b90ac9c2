//! Embedding pserv: run the whole server — DHCP, DNS and the control API — inside your own
//! tokio program, publish snapshots from code, and stop it cleanly.
//!
//! `cargo run --example embed -p pserv-server`, then `dig @127.0.0.1 -p 5354 web-1.lab` or
//! `curl -s http://127.0.0.1:5381/v1/status`. It stops by itself after ten seconds.

use std::time::Duration;

use pserv_core::snapshot::{DnsSettings, Interface, Node, Snapshot, Subnet};
use pserv_server::config::{File, Overrides};

fn snapshot(generation: u64, web_ip: [u8; 4]) -> Snapshot {
    let subnet: Subnet = serde_json::from_value(serde_json::json!({
        "cidr": "192.0.2.0/24", "domain": "lab", "lease_seconds": 600,
        "dynamic": [{"start": "192.0.2.100", "end": "192.0.2.199"}]
    }))
    .expect("a valid subnet");
    Snapshot {
        generation,
        dns: DnsSettings::default(),
        subnets: vec![subnet],
        nodes: vec![Node {
            id: "web-1".into(),
            hostname: "web-1".into(),
            domain: "lab".into(),
            interfaces: vec![Interface {
                mac: "02:00:00:00:00:01".parse().expect("a MAC"),
                ipv4: Some(web_ip.into()),
                ipv6: None,
                primary: true,
            }],
            boot: None,
            options: vec![],
        }],
        boot_profiles: Default::default(),
        boot_templates: Default::default(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = pserv_server::Config::resolve(
        File::default(),
        Overrides {
            dns_listen: vec!["127.0.0.1:5354".parse()?],
            dhcp_listen: Some("127.0.0.1:6768".parse()?),
            control_listen: Some("127.0.0.1:5381".parse()?),
            state_dir: Some(dir.path().to_owned()),
            ..Overrides::default()
        },
    )?;
    // Starts every service in this runtime; it serves the bundled example until we publish.
    let server = pserv_server::serve(config).await?;
    println!(
        "DNS on {:?}, DHCP on {}, control API on http://{}",
        server.dns, server.dhcp, server.control
    );
    server.publish(&snapshot(2, [192, 0, 2, 10]))?;

    // Your program decides when the data changes: here, web-1 moves every two seconds.
    for generation in 3..=7 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ip = [192, 0, 2, 10 + generation as u8];
        match server.publish(&snapshot(generation, ip)) {
            Ok(p) => println!("generation {} published in {:?}", p.generation, p.compile),
            Err(e) => eprintln!("rejected: {e}"),
        }
        println!("{} dynamic leases", server.leases().counts().bound);
    }
    // Stops DNS, DHCP and the control API, and flushes the lease journal.
    server.shutdown().await?;
    Ok(())
}
