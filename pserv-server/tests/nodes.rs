//! `GET /v1/nodes`: the served table's nodes searched and paged on the server (issue 25's
//! machines view, and scripts).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use pserv_server::config::{File, Overrides};
use serde_json::Value;

fn get(control: SocketAddr, path: &str) -> (u16, Value) {
    let out = pserv_tests::http_get(control, path);
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_searched_and_paged_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Value> = (0..120)
        .map(|i| {
            let boot = match i % 3 {
                0 => serde_json::json!({ "profile": "live" }),
                1 => serde_json::json!({ "profile": "live", "mode": "local" }),
                _ => serde_json::json!({ "mode": "ignore" }),
            };
            serde_json::json!({ "id": format!("N{i:03}"), "hostname": format!("n{i:03}"),
                "domain": "lab", "boot": boot,
                "interfaces": [ { "mac": format!("52:54:00:00:00:{i:02x}"),
                                  "ipv4": format!("10.20.0.{}", i + 1) } ] })
        })
        .collect();
    let snap = dir.path().join("snap.json");
    std::fs::write(
        &snap,
        serde_json::json!({ "generation": 3,
            "boot_profiles": { "live": { "kernel": "k", "cmdline": "x" } },
            "subnets": [ { "cidr": "10.20.0.0/24" } ], "nodes": nodes })
        .to_string(),
    )
    .unwrap();
    let config = pserv_server::Config::resolve(
        File::default(),
        Overrides {
            snapshot: Some(snap),
            dns_listen: vec!["127.0.0.1:0".parse().unwrap()],
            dhcp_listen: Some("127.0.0.1:0".parse().unwrap()),
            control_listen: Some("127.0.0.1:0".parse().unwrap()),
            state_dir: Some(dir.path().join("state")),
            ..Overrides::default()
        },
    )
    .unwrap();
    let server = pserv_server::serve(config).await.unwrap();
    let control = server.control;
    let results = tokio::task::spawn_blocking(move || {
        [
            "/v1/nodes?per_page=50&page=2",
            "/v1/nodes?query=N01",
            "/v1/nodes?query=52-54-00-00-00-0A",
            "/v1/nodes?query=10.20.0.7",
            "/v1/nodes?per_page=100000",
            "/v1/nodes?query=nothing-like-it",
            "/v1/nodes?page=x",
        ]
        .map(|p| get(control, p))
    })
    .await
    .unwrap();
    let [page2, n01, mac, ip, big, none, bad] = results;
    assert_eq!(page2.0, 200);
    let v = &page2.1;
    assert_eq!(
        (v["total"].as_u64(), v["page"].as_u64()),
        (Some(120), Some(2))
    );
    assert_eq!(v["nodes"].as_array().unwrap().len(), 20);
    assert_eq!(v["nodes"][0]["id"], "N100");
    assert_eq!(v["generation"], 3);
    // Case-insensitive: N010..N019.
    assert_eq!(n01.1["total"], 10, "{}", n01.1);
    // A MAC with hyphens, in capitals: node 10.
    assert_eq!(mac.1["total"], 1);
    let m = &mac.1["nodes"][0];
    assert_eq!(
        (&m["id"], &m["mac"], &m["ipv4"], &m["reserved"]),
        (
            &Value::from("N010"),
            &Value::from("52:54:00:00:00:0a"),
            &Value::from("10.20.0.11"),
            &Value::from(true)
        )
    );
    assert_eq!(
        (&m["mode"], &m["profile"]),
        (&Value::from("local"), &Value::from("live"))
    );
    // An address: 10.20.0.7 and 10.20.0.70..79.
    assert_eq!(ip.1["total"], 11, "{}", ip.1);
    assert_eq!(big.1["per_page"], 500);
    assert_eq!(big.1["nodes"].as_array().unwrap().len(), 120);
    assert_eq!(none.1["total"], 0);
    assert_eq!(bad.0, 400);
    server.shutdown().await.unwrap();
}
