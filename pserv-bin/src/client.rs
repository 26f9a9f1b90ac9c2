//! The client commands: `check` (no server), `push` and `leases` (over the control API).
//!
//! Exit codes: 0 success; 1 the snapshot is invalid (every problem is printed, one per line);
//! 2 usage or I/O error; 3 stale generation; 4 unauthorized; 5 the server could not be reached
//! or answered unexpectedly.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use pserv_core::{Snapshot, Table};

pub(crate) fn check(file: &Path) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let snap = match Snapshot::from_json(&bytes) {
        Ok(s) => s,
        Err(e) => {
            println!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match Table::compile(&snap, None) {
        Ok(t) => {
            println!(
                "ok: generation {}, {} subnets, {} nodes, {} interfaces, zones: {}",
                t.generation(),
                t.subnets().len() + t.subnets_v6().len(),
                t.node_count(),
                t.interface_count(),
                t.domains().join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                println!("{p}");
            }
            ExitCode::FAILURE
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

fn auth_header(token: Option<&str>) -> Option<String> {
    token.map(|t| format!("Bearer {t}"))
}

pub(crate) fn push(file: &Path, to: &str, token: Option<&str>) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let url = format!("{}/v1/snapshot", to.trim_end_matches('/'));
    let mut req = agent().put(&url).header("content-type", "application/json");
    if let Some(h) = auth_header(token) {
        req = req.header("authorization", h);
    }
    let mut resp = match req.send(&bytes[..]) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pserv push: {url}: {e}");
            return ExitCode::from(5);
        }
    };
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp
        .body_mut()
        .read_json()
        .unwrap_or(serde_json::Value::Null);
    match status {
        200 => {
            println!(
                "generation {} published: {} nodes, compiled in {:.1} ms",
                body["generation"],
                body["nodes"],
                body["compile_ms"].as_f64().unwrap_or(0.0)
            );
            ExitCode::SUCCESS
        }
        422 => {
            for p in body["problems"].as_array().into_iter().flatten() {
                println!("{}", p["message"].as_str().unwrap_or_default());
            }
            ExitCode::FAILURE
        }
        409 => {
            eprintln!(
                "pserv push: {}",
                body["error"].as_str().unwrap_or("stale generation")
            );
            ExitCode::from(3)
        }
        401 => {
            eprintln!("pserv push: unauthorized (give --token or PSERV_TOKEN)");
            ExitCode::from(4)
        }
        413 => {
            eprintln!(
                "pserv push: the snapshot is larger than the server accepts (max_body_bytes)"
            );
            ExitCode::from(5)
        }
        other => {
            eprintln!("pserv push: unexpected HTTP {other}: {body}");
            ExitCode::from(5)
        }
    }
}

pub(crate) fn leases(from: &str, token: Option<&str>) -> ExitCode {
    let url = format!("{}/v1/leases", from.trim_end_matches('/'));
    let mut req = agent().get(&url);
    if let Some(h) = auth_header(token) {
        req = req.header("authorization", h);
    }
    let mut resp = match req.call() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pserv leases: {url}: {e}");
            return ExitCode::from(5);
        }
    };
    match resp.status().as_u16() {
        200 => {}
        401 => {
            eprintln!("pserv leases: unauthorized (give --token or PSERV_TOKEN)");
            return ExitCode::from(4);
        }
        other => {
            eprintln!("pserv leases: unexpected HTTP {other}");
            return ExitCode::from(5);
        }
    }
    let Ok(list) = resp.body_mut().read_json::<Vec<serde_json::Value>>() else {
        eprintln!("pserv leases: the server's answer is not a lease list");
        return ExitCode::from(5);
    };
    println!(
        "{:<17}  {:<15}  {:<8}  {:<12}  {:<24}  CLIENT-ID",
        "MAC", "IP", "STATE", "EXPIRES", "HOSTNAME"
    );
    for l in &list {
        let s = |k: &str| l[k].as_str().map(str::to_owned).unwrap_or_default();
        let expires = l["expires"]
            .as_u64()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<17}  {:<15}  {:<8}  {:<12}  {:<24}  {}",
            s("mac"),
            s("ip"),
            s("state"),
            expires,
            s("hostname"),
            s("client_id")
        );
    }
    ExitCode::SUCCESS
}
