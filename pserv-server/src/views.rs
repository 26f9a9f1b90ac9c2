//! The small JSON views the status page reads (and scripts may): per-subnet address use
//! (`/v1/subnets`), the counters its rate charts are drawn from (`/v1/counters`), and one page
//! of dynamic leases (`/v1/leases?page=`). Each reads the published table and lease view, on a
//! blocking thread where it walks every node or lease.

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pserv_core::lease::LeaseState;
use pserv_core::table::SubnetInfo;
use serde_json::{Value, json};

use crate::control::App;

/// The index in `subnets` (sorted by network, as the table keeps them) of the one holding `ip`.
fn subnet_index(subnets: &[SubnetInfo], ip: Ipv4Addr) -> Option<usize> {
    let i = subnets
        .partition_point(|s| s.network <= ip)
        .checked_sub(1)?;
    subnets[i].contains(ip).then_some(i)
}

/// Address use of one subnet.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
struct Use {
    /// Addresses in the dynamic ranges.
    size: u64,
    bound: u64,
    offered: u64,
    declined: u64,
    /// Dynamic addresses neither bound, offered nor declined.
    free: u64,
    /// Interfaces of nodes with an address in the subnet.
    reservations: u64,
}

/// Counts each subnet's leases (in its dynamic ranges), quarantined addresses and
/// reservations.
fn subnet_use(
    subnets: &[SubnetInfo],
    leases: impl Iterator<Item = (Ipv4Addr, LeaseState)>,
    declined: impl Iterator<Item = Ipv4Addr>,
    reserved: impl Iterator<Item = Ipv4Addr>,
) -> Vec<Use> {
    let mut uses: Vec<Use> = subnets
        .iter()
        .map(|s| Use {
            size: s
                .dynamic
                .iter()
                .map(|r| u64::from(u32::from(r.end).saturating_sub(u32::from(r.start))) + 1)
                .sum(),
            ..Use::default()
        })
        .collect();
    let in_range = |i: usize, ip: Ipv4Addr| subnets[i].dynamic.iter().any(|r| r.contains(ip));
    for (ip, state) in leases {
        if let Some(i) = subnet_index(subnets, ip).filter(|&i| in_range(i, ip)) {
            match state {
                LeaseState::Bound => uses[i].bound += 1,
                LeaseState::Offered => uses[i].offered += 1,
            }
        }
    }
    for ip in declined {
        if let Some(i) = subnet_index(subnets, ip).filter(|&i| in_range(i, ip)) {
            uses[i].declined += 1;
        }
    }
    for ip in reserved {
        if let Some(i) = subnet_index(subnets, ip) {
            uses[i].reservations += 1;
        }
    }
    for u in &mut uses {
        u.free = u.size.saturating_sub(u.bound + u.offered + u.declined);
    }
    uses
}

/// `GET /v1/subnets`: every subnet with its dynamic range use (bound, offered, declined,
/// free), its reservations, and how it serves.
pub(crate) async fn subnets(State(app): State<Arc<App>>) -> Response {
    let table = app.publisher.store.load_full();
    let board = app.leases.clone();
    let body = tokio::task::spawn_blocking(move || {
        let subnets = table.subnets();
        let leases = board.leases();
        let uses = subnet_use(
            subnets,
            leases.iter().map(|l| (l.ip, l.state)),
            board.declined().into_iter().map(|(ip, _)| ip),
            table.interfaces().filter_map(|i| i.ipv4()),
        );
        let rows: Vec<Value> = subnets
            .iter()
            .zip(uses)
            .map(|(s, u)| {
                json!({
                    "cidr": s.cidr, "domain": s.domain, "proxy_dhcp": s.proxy_dhcp,
                    "dynamic": s.dynamic.iter().map(|r| json!({"start": r.start, "end": r.end}))
                        .collect::<Vec<_>>(),
                    "use": u,
                })
            })
            .collect();
        json!({ "generation": table.generation(), "subnets": rows })
    })
    .await;
    match body {
        Ok(v) => axum::Json(v).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A label and the value a sample must have for it.
type Label = (&'static str, &'static str);

/// The totals `/v1/counters` reports, each the sum of a metric's series (restricted to one
/// label value where given), as `/metrics` exposes them.
const COUNTERS: &[(&str, &str, Option<Label>)] = &[
    (
        "dhcp_acks",
        "pserv_dhcp_replies_total",
        Some(("type", "ack")),
    ),
    ("dns_responses", "pserv_dns_responses_total", None),
    ("tftp_bytes", "pserv_tftp_bytes_total", None),
    ("http_bytes", "pserv_boot_http_bytes_total", None),
    ("events", "pserv_events_total", None),
];

/// The sum of `name`'s samples in Prometheus text (`name{labels} value` lines), only those
/// whose labels hold `label` when given.
fn sum_samples(text: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    let wanted = label.map(|(k, v)| format!("{k}=\"{v}\""));
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            if let Some(w) = &wanted
                && !labels.split(',').any(|l| l == w)
            {
                return None;
            }
            value.trim().parse::<f64>().ok()
        })
        .fold(0.0, |sum, v| sum + v)
}

/// `GET /v1/counters`: a few running totals (DHCP ACKs, DNS responses, TFTP and HTTP boot
/// bytes, events) with the time they were read, for rates: two reads a second apart give
/// per-second figures. Read from the same collectors as `/metrics`.
pub(crate) async fn counters(State(app): State<Arc<App>>) -> Response {
    let text = crate::metrics::render(&app);
    let mut body = serde_json::Map::new();
    body.insert(
        "at_ms".to_owned(),
        json!(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        ),
    );
    for (key, metric, label) in COUNTERS {
        // Counters: whole numbers, written as such.
        let total = sum_samples(&text, metric, *label).max(0.0) as u64;
        body.insert((*key).to_owned(), json!(total));
    }
    axum::Json(Value::Object(body)).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn samples_are_summed_by_name_and_label() {
        let text = "# HELP x\npserv_dhcp_replies_total{type=\"offer\"} 5\n\
                    pserv_dhcp_replies_total{type=\"ack\"} 7\n\
                    pserv_dhcp_replies_total_other 100\n\
                    pserv_dns_responses_total{rcode=\"noerror\"} 3\n\
                    pserv_dns_responses_total{rcode=\"nxdomain\"} 4\n\
                    pserv_events_total 9\n";
        assert_eq!(
            sum_samples(text, "pserv_dhcp_replies_total", Some(("type", "ack"))),
            7.0
        );
        assert_eq!(sum_samples(text, "pserv_dns_responses_total", None), 7.0);
        assert_eq!(sum_samples(text, "pserv_events_total", None), 9.0);
        assert_eq!(sum_samples(text, "pserv_tftp_bytes_total", None), 0.0);
    }

    #[test]
    fn subnet_use_counts_leases_in_ranges_and_reservations() {
        let snap: pserv_core::Snapshot = serde_json::from_str(
            r#"{"generation": 1, "subnets": [
                {"cidr": "10.0.0.0/24", "dynamic": [{"start": "10.0.0.100", "end": "10.0.0.109"}]},
                {"cidr": "10.0.1.0/24"}],
              "nodes": [
                {"id": "a", "hostname": "a", "domain": "lab", "interfaces": [{"mac": "02:00:00:00:00:01", "ipv4": "10.0.0.5"}]},
                {"id": "b", "hostname": "b", "domain": "lab", "interfaces": [{"mac": "02:00:00:00:00:02", "ipv4": "10.0.1.5"}]},
                {"id": "c", "hostname": "c", "domain": "lab", "interfaces": [{"mac": "02:00:00:00:00:03", "ipv4": "10.0.1.6"}]}]}"#,
        )
        .unwrap();
        let table = pserv_core::Table::compile(&snap, None).unwrap();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let uses = subnet_use(
            table.subnets(),
            [
                (ip("10.0.0.100"), LeaseState::Bound),
                (ip("10.0.0.101"), LeaseState::Offered),
                (ip("10.0.0.102"), LeaseState::Bound),
                // Outside every range (a range shrunk by a push): not counted.
                (ip("10.0.0.50"), LeaseState::Bound),
            ]
            .into_iter(),
            [ip("10.0.0.109")].into_iter(),
            table.interfaces().filter_map(|i| i.ipv4()),
        );
        assert_eq!(
            uses,
            vec![
                Use {
                    size: 10,
                    bound: 2,
                    offered: 1,
                    declined: 1,
                    free: 6,
                    reservations: 1
                },
                Use {
                    reservations: 2,
                    ..Use::default()
                }
            ]
        );
    }
}
