//! Embedding pserv: serve DNS from your own tokio program and publish snapshots from code, with
//! no HTTP and no files.
//!
//! `cargo run --example embed -p pserv-bin`, then `dig @127.0.0.1 -p 5354 web-1.lab`.

use std::sync::Arc;
use std::time::Duration;

use pserv_core::Store;
use pserv_core::snapshot::{DnsSettings, Interface, Node, Snapshot, Subnet};
use pserv_dns::NoLeases;
use pserv_dns::server::Service;

fn snapshot(generation: u64, web_ip: [u8; 4]) -> Snapshot {
    let subnet: Subnet = serde_json::from_value(serde_json::json!({
        "cidr": "192.0.2.0/24", "domain": "lab"
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
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store = Arc::new(Store::new());
    // Publish from code: validated and compiled here, swapped atomically.
    store.publish(&snapshot(1, [192, 0, 2, 10]))?;
    let dns = Service::bind(
        &["127.0.0.1:5354".parse()?],
        store.clone(),
        Arc::new(NoLeases),
    )
    .await?;
    println!("DNS on {:?}: dig @127.0.0.1 -p 5354 web-1.lab", dns.local);

    // Your program decides when the data changes: here, web-1 moves every two seconds.
    for generation in 2..=5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ip = [192, 0, 2, 10 + generation as u8];
        match store.publish(&snapshot(generation, ip)) {
            Ok(p) => println!("generation {} published in {:?}", p.generation, p.compile),
            Err(e) => eprintln!("rejected: {e}"),
        }
    }
    dns.shutdown().await;
    Ok(())
}
