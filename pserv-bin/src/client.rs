//! The client commands: `check` and `render` (no server), `push` and `leases` (over the
//! control API).
//!
//! Exit codes: 0 success; 1 the snapshot is invalid (every problem is printed, one per line);
//! 2 usage or I/O error; 3 stale generation; 4 unauthorized; 5 the server could not be reached
//! or answered unexpectedly.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use pserv_core::table::{Endpoint, Intent, Loader, RenderError};
use pserv_core::{MacAddr, Snapshot, Table};

/// A snapshot file read and parsed, or the exit code saying why not (the reason printed).
fn read_snapshot(file: &Path) -> Result<Snapshot, ExitCode> {
    let bytes = std::fs::read(file).map_err(|e| {
        eprintln!("{}: {e}", file.display());
        ExitCode::from(2)
    })?;
    Snapshot::from_json(&bytes).map_err(|e| {
        println!("{e}");
        ExitCode::FAILURE
    })
}

pub(crate) fn check(file: &Path) -> ExitCode {
    let snap = match read_snapshot(file) {
        Ok(s) => s,
        Err(code) => return code,
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

/// `pserv render`'s arguments.
pub(crate) struct RenderArgs<'a> {
    pub(crate) snapshot: &'a Path,
    pub(crate) node: &'a str,
    pub(crate) file: Option<&'a str>,
    pub(crate) loader: Option<&'a str>,
    pub(crate) address: Option<std::net::IpAddr>,
    pub(crate) server: Option<std::net::IpAddr>,
    pub(crate) http_port: u16,
    pub(crate) syslog: Option<std::net::SocketAddr>,
}

/// Prints what a machine would be served. Exit 1 when the snapshot is invalid or the file
/// cannot be rendered for it, 2 for a machine the snapshot does not name.
pub(crate) fn render(a: &RenderArgs<'_>) -> ExitCode {
    let snap = match read_snapshot(a.snapshot) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let table = match Table::compile(&snap, None) {
        Ok(t) => t,
        Err(problems) => {
            for p in &problems {
                println!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    // A node id first, then a MAC.
    let by_id = snap.nodes.iter().find(|n| n.id == a.node).and_then(|n| {
        n.interfaces
            .iter()
            .find(|i| i.primary)
            .or(n.interfaces.first())
            .map(|i| i.mac)
    });
    let Some(mac) = by_id.or_else(|| a.node.parse::<MacAddr>().ok()) else {
        eprintln!("{}: no node with that id, and not a MAC", a.node);
        return ExitCode::from(2);
    };
    let iface = table.by_mac(mac);
    if iface.is_none() && a.address.is_none() {
        eprintln!("{mac} is no node's: give the unknown client's address with --address");
        return ExitCode::from(2);
    }
    let client = a
        .address
        .or(iface.and_then(|i| i.ipv4()).map(std::net::IpAddr::V4));
    let (boot, loopback) = match client {
        Some(std::net::IpAddr::V6(ip)) => (
            table.subnet6_for(ip).and_then(|s| s.boot.as_ref()),
            std::net::Ipv6Addr::LOCALHOST.into(),
        ),
        Some(std::net::IpAddr::V4(ip)) => (
            table.subnet_for(ip).and_then(|s| s.boot.as_ref()),
            std::net::Ipv4Addr::LOCALHOST.into(),
        ),
        None => (None, std::net::Ipv4Addr::LOCALHOST.into()),
    };
    let at = Endpoint {
        server: a
            .server
            .or(boot.and_then(|b| b.next_server).map(Into::into))
            .unwrap_or(loopback),
        http_port: a.http_port,
        syslog: a.syslog,
    };
    let shown = |r: Result<String, RenderError>| match r {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{mac}: {e}");
            ExitCode::FAILURE
        }
    };
    if let Some(name) = a.file {
        return shown(
            table
                .render_file(name, mac, client, at)
                .map(|f| f.text)
                .map_err(|e| match e {
                    RenderError::NoIntent => {
                        RenderError::Failed(format!("no node file {name:?} for this machine"))
                    }
                    e => e,
                }),
        );
    }
    if let Some(loader) = a.loader {
        let loader = Loader::ALL
            .into_iter()
            .find(|l| l.name() == loader)
            .unwrap_or(Loader::Ipxe);
        return shown(table.render_boot(loader, mac, client, at).map(|r| r.text));
    }
    // Neither: what the machine has.
    let intent = Intent::of_boot(iface, boot);
    let plan = table.boot_plan();
    let node = iface.map(|i| i.node().id().to_owned());
    println!(
        "{mac}: node {}, boot {}",
        node.as_deref().unwrap_or("(unknown client)"),
        match intent {
            Intent::Netboot(p) => format!("netboot {}", plan.profile_name(p).unwrap_or("?")),
            Intent::Local => "local".to_owned(),
            Intent::Ignore => "ignore".to_owned(),
            Intent::Legacy => "(no profile: the subnet's boot files only)".to_owned(),
        }
    );
    if intent.renders() {
        println!("  --loader ipxe | grub | pxelinux");
    }
    if let Some(p) = table.files_profile(mac, iface, client) {
        for f in plan.node_files(p) {
            println!("  --file {f}");
        }
    }
    ExitCode::SUCCESS
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
    // The address column as wide as the widest address (IPv6 ones are long).
    let w = list
        .iter()
        .filter_map(|l| l["ip"].as_str().map(str::len))
        .max()
        .unwrap_or(0)
        .max(15);
    println!(
        "{:<17}  {:<w$}  {:<8}  {:<12}  {:<24}  CLIENT-ID",
        "MAC", "IP", "STATE", "EXPIRES", "HOSTNAME"
    );
    for l in &list {
        let s = |k: &str| l[k].as_str().map(str::to_owned).unwrap_or_default();
        let expires = l["expires"]
            .as_u64()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into());
        // A DHCPv6 client is its DUID and IAID.
        let client = match (l["duid"].as_str(), l["iaid"].as_u64()) {
            (Some(d), Some(i)) => format!("duid {d} iaid {i}"),
            _ => s("client_id"),
        };
        let mac = if l["mac"].is_null() {
            "-".to_owned()
        } else {
            s("mac")
        };
        println!(
            "{:<17}  {:<w$}  {:<8}  {:<12}  {:<24}  {}",
            mac,
            s("ip"),
            s("state"),
            expires,
            s("hostname"),
            client
        );
    }
    ExitCode::SUCCESS
}
