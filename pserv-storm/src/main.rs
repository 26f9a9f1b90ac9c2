//! `pserv-storm`: the load generator's command line.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pserv_storm::dhcp::{self, Report};
use pserv_storm::responder;

#[derive(Parser)]
#[command(name = "pserv-storm", version, about = "Boot-storm load generator")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// DORA exchanges as a relay agent (giaddr), many clients, paced or flooding.
    Dhcp {
        /// The server, ADDR[:PORT] (port 67 by default).
        #[arg(long)]
        server: String,
        /// The relay address to pose as (giaddr); the generator listens on it, port 67.
        #[arg(long)]
        relay: Ipv4Addr,
        /// Distinct clients.
        #[arg(long, default_value_t = 50_000)]
        clients: u32,
        /// DISCOVERs per second; 0 floods with --window exchanges in flight.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// Exchanges in flight when flooding.
        #[arg(long, default_value_t = 2000)]
        window: u32,
        /// Stop starting exchanges after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Stop starting exchanges after this many (0: no limit).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// How long a request waits for its answer, milliseconds.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Count answers outside this network as wrong (e.g. 10.77.0.0/16).
        #[arg(long)]
        subnet: Option<ipnet::Ipv4Net>,
        /// The first two octets of every client MAC, hex (e.g. 02:5e).
        #[arg(long, default_value = "02:5e")]
        mac_prefix: String,
        /// Print the report as JSON on stdout instead of a table.
        #[arg(long)]
        json: bool,
        /// No live progress line.
        #[arg(long)]
        quiet: bool,
    },
    /// A stateless do-nothing DHCP responder (the ceiling of this machine's path).
    Responder {
        /// Where to listen, ADDR:PORT.
        #[arg(long, default_value = "0.0.0.0:67")]
        listen: SocketAddr,
        /// The server identifier it answers with.
        #[arg(long)]
        server_id: Ipv4Addr,
        /// The first address it hands out.
        #[arg(long)]
        pool_start: Ipv4Addr,
        /// How many addresses.
        #[arg(long, default_value_t = 65_000)]
        pool_size: u32,
        /// Answer for this long, then exit.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
    },
}

fn parse_prefix(s: &str) -> Option<[u8; 2]> {
    let (a, b) = s.split_once(':')?;
    Some([
        u8::from_str_radix(a, 16).ok()?,
        u8::from_str_radix(b, 16).ok()?,
    ])
}

fn table(r: &Report) {
    println!("DHCP storm: {:.2} s", r.seconds);
    println!(
        "  offered {:>10.0} DORA/s   completed {:>10.0} DORA/s",
        r.offered_rate, r.completed_rate
    );
    println!(
        "  {:<18} {:>10} {:>10} {:>10} {:>8}",
        "phase", "sent", "answered", "drops", "drop %"
    );
    println!(
        "  {:<18} {:>10} {:>10} {:>10} {:>8.3}",
        "DISCOVER-OFFER",
        r.discovers,
        r.offers,
        r.discover_drops,
        r.discover_drop_ratio * 100.0
    );
    println!(
        "  {:<18} {:>10} {:>10} {:>10} {:>8.3}",
        "REQUEST-ACK",
        r.requests,
        r.acks + r.naks,
        r.request_drops,
        r.request_drop_ratio * 100.0
    );
    println!(
        "  NAKs {}   wrong answers: outside subnet {}, one address to two clients {}   unexpected replies {}",
        r.naks, r.outside_subnet, r.duplicates, r.unexpected
    );
    println!(
        "  {:<18} {:>10} {:>10} {:>10}",
        "latency ms", "p50", "p99", "max"
    );
    for (name, l) in [
        ("DISCOVER-OFFER", r.discover_offer),
        ("REQUEST-ACK", r.request_ack),
        ("DORA", r.dora),
    ] {
        println!(
            "  {:<18} {:>10.3} {:>10.3} {:>10.3}",
            name, l.p50_ms, l.p99_ms, l.max_ms
        );
    }
}

fn main() -> ExitCode {
    match Cli::parse().mode {
        Mode::Dhcp {
            server,
            relay,
            clients,
            rate,
            window,
            seconds,
            count,
            timeout_ms,
            subnet,
            mac_prefix,
            json,
            quiet,
        } => {
            let server: SocketAddrV4 = match server.parse().or_else(|_| {
                server
                    .parse::<Ipv4Addr>()
                    .map(|ip| SocketAddrV4::new(ip, 67))
            }) {
                Ok(s) => s,
                Err(_) => {
                    eprintln!("pserv-storm: --server {server:?} is not ADDR[:PORT]");
                    return ExitCode::from(2);
                }
            };
            let Some(mac_prefix) = parse_prefix(&mac_prefix) else {
                eprintln!("pserv-storm: --mac-prefix {mac_prefix:?} is not two hex octets");
                return ExitCode::from(2);
            };
            if !(seconds > 0.0 && seconds.is_finite()) {
                eprintln!("pserv-storm: --seconds must be positive");
                return ExitCode::from(2);
            }
            let sock = match dhcp::run::socket(SocketAddr::from((relay, 67))) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("pserv-storm: {e:#}");
                    return ExitCode::from(1);
                }
            };
            let cfg = dhcp::Config {
                clients,
                rate,
                window,
                count,
                duration: Duration::from_secs_f64(seconds),
                timeout: Duration::from_millis(timeout_ms.max(1)),
                giaddr: relay,
                subnet,
                mac_prefix,
            };
            let report = dhcp::run::run(&sock, server, cfg, !quiet && !json);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                table(&report);
            }
            if report.outside_subnet + report.duplicates > 0 {
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Mode::Responder {
            listen,
            server_id,
            pool_start,
            pool_size,
            seconds,
        } => {
            let sock = match dhcp::run::socket(listen) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("pserv-storm: {e:#}");
                    return ExitCode::from(1);
                }
            };
            let pool = responder::Pool {
                start: pool_start,
                size: pool_size,
            };
            let sent = responder::serve(&sock, pool, server_id, seconds);
            eprintln!("responder: {sent} replies");
            ExitCode::SUCCESS
        }
    }
}
