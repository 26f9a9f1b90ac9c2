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
    /// DORA exchanges as a relay agent (giaddr), many clients, paced or flooding; with IPv6
    /// addresses, DHCPv6 SOLICIT/ADVERTISE/REQUEST/REPLY exchanges in RELAY-FORW messages.
    Dhcp {
        /// The server, ADDR[:PORT] (port 67 by default, 547 for IPv6: `[ADDR]:PORT` with a
        /// port); repeat it for servers that share the subnet (each request goes to every one,
        /// as from a relay with several helpers).
        #[arg(long, required = true)]
        server: Vec<String>,
        /// The relay address to pose as (giaddr; DHCPv6: the link address); the generator
        /// listens on it, port 67 (547 for IPv6).
        #[arg(long)]
        relay: std::net::IpAddr,
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
        /// Count answers outside this network as wrong (e.g. 10.77.0.0/16, fd00:77::/64).
        #[arg(long)]
        subnet: Option<ipnet::IpNet>,
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
    /// N simulated machines netbooting: DORA, boot file over TFTP, loader config, kernel and
    /// initrd over TFTP or HTTP, DNS A and PTR of their own name and address.
    Boot {
        /// The DHCP server, ADDR[:PORT].
        #[arg(long)]
        server: String,
        /// A proxyDHCP server beside it, ADDR[:PORT]: every DHCP message goes to both (as a
        /// relay configured with both forwards it); the address comes from --server's offer,
        /// the boot file from the proxy's.
        #[arg(long)]
        proxy: Option<String>,
        /// The relay address to pose as (giaddr); the generator listens on it, port 67.
        #[arg(long)]
        relay: Ipv4Addr,
        /// How many machines.
        #[arg(long, default_value_t = 100)]
        machines: u32,
        /// bios, uefi, or mix (alternating).
        #[arg(long, default_value = "mix")]
        arch: String,
        /// Spread power-on over this many seconds (0: all at once, a power-on storm).
        #[arg(long, default_value_t = 0.0)]
        ramp: f64,
        /// TFTP blksize to ask for.
        #[arg(long, default_value_t = 1468)]
        blksize: u16,
        /// TFTP windowsize to ask for.
        #[arg(long, default_value_t = 1)]
        windowsize: u16,
        /// Send TFTP, HTTP and DNS from each machine's leased address (route the pool to this
        /// namespace as local first: `ip route add local POOL dev lo`; for IPv6 also
        /// `ip -6 route add local POOL6 dev lo`, `sysctl net.ipv6.ip_nonlocal_bind=1`, and a
        /// route to POOL6 via this namespace on the server's side).
        #[arg(long)]
        leased_source: bool,
        /// Compare every fetched file that exists here, byte for byte.
        #[arg(long)]
        boot_dir: Option<std::path::PathBuf>,
        /// Per step timeout, milliseconds.
        #[arg(long, default_value_t = 4000)]
        timeout_ms: u64,
        /// The whole run ends by then, seconds.
        #[arg(long, default_value_t = 600.0)]
        deadline: f64,
        /// A machine's pause between two steps of its boot, milliseconds (real firmware and
        /// kernels take seconds; 0: at once).
        #[arg(long, default_value_t = 0)]
        think_ms: u64,
        /// The first two octets of every machine MAC, hex.
        #[arg(long, default_value = "02:b0")]
        mac_prefix: String,
        /// The DHCPv6 server, `[ADDR]:PORT` or ADDR (port 547): machines chosen by
        /// --ipv6-every boot over IPv6 (x86-64 UEFI, the grub chain over TFTP on IPv6).
        #[arg(long, requires = "relay6")]
        server6: Option<String>,
        /// The relay link address to pose as for DHCPv6 (the generator listens on it, port
        /// 547).
        #[arg(long, requires = "server6")]
        relay6: Option<std::net::Ipv6Addr>,
        /// Every N-th machine boots over IPv6 (1: all; 2: half, a dual-stack storm).
        #[arg(long, default_value_t = 2)]
        ipv6_every: u32,
        /// Print the report as JSON on stdout instead of a table.
        #[arg(long)]
        json: bool,
        /// No live progress line.
        #[arg(long)]
        quiet: bool,
    },
    /// Syslog messages at a fixed rate from many source addresses to any receiver; with
    /// --events, one /v1/events listener on a pserv counts the `log` events they became.
    Syslog {
        /// The syslog receiver, ADDR:PORT.
        #[arg(long)]
        server: SocketAddrV4,
        /// pserv's control API, ADDR:PORT: listen to /v1/events and count what arrives.
        #[arg(long)]
        events: Option<SocketAddr>,
        /// The control API's bearer token.
        #[arg(long, env = "PSERV_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Messages to send.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Messages per second.
        #[arg(long, default_value_t = 50_000)]
        rate: u32,
        /// Distinct source addresses (each batch from the next one; they must be local).
        #[arg(long, default_value_t = 4096)]
        sources: u32,
        /// The first source address.
        #[arg(long, default_value = "127.1.0.1")]
        first_source: Ipv4Addr,
        /// Bytes per datagram.
        #[arg(long, default_value_t = 120)]
        size: usize,
        /// After the last send, wait this long (ms) past the last event for more.
        #[arg(long, default_value_t = 2000)]
        linger_ms: u64,
        /// Print the report as JSON on stdout instead of a line.
        #[arg(long)]
        json: bool,
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

/// A run's report: JSON on stdout with `--json`, else its table.
fn print_report<R: serde::Serialize>(report: &R, json: bool, table: fn(&R)) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    } else {
        table(report);
    }
}

/// An IPv4 ADDR[:PORT] (port 67 by default).
fn parse_server4(s: &str) -> Option<SocketAddrV4> {
    match parse_server(s)? {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    }
}

/// ADDR[:PORT], IPv6 in brackets with a port; the port by default DHCP's server port of the
/// address's family (67, 547).
fn parse_server(s: &str) -> Option<SocketAddr> {
    s.parse().ok().or_else(|| {
        s.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, if ip.is_ipv6() { 547 } else { 67 }))
    })
}

fn boot_table(r: &pserv_storm::boot::Report) {
    println!(
        "Boot storm: {} machines, {} booted ({} from disk), {} failed; all booted in {:.2} s; {:.1} MB fetched",
        r.machines,
        r.booted,
        r.local,
        r.failed,
        r.time_to_all_booted_s,
        r.bytes as f64 / 1e6
    );
    println!(
        "  {:<18} {:>8} {:>10} {:>10} {:>10}",
        "ms", "count", "p50", "p99", "max"
    );
    let row = |name: &str, l: &pserv_storm::stats::Latency| {
        println!(
            "  {:<18} {:>8} {:>10.1} {:>10.1} {:>10.1}",
            name, l.samples, l.p50_ms, l.p99_ms, l.max_ms
        );
    };
    row("time to booted", &r.time_to_booted);
    for (name, l) in &r.phases {
        row(name, l);
    }
    for (why, n) in &r.failures {
        println!("  failed {n:>6}  {why}");
    }
    if !r.resends.is_empty() {
        let list: Vec<String> = r.resends.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!("  resent after a silence: {}", list.join(", "));
    }
    if r.unnamed + r.no_dns > 0 {
        println!(
            "  not checked: {} machines got no hostname (config name check and DNS skipped), {} no DNS server",
            r.unnamed, r.no_dns
        );
    }
}

fn syslog_table(r: &pserv_storm::syslog::Report) {
    println!(
        "Syslog load (run {}): sent {} in {:.2} s ({:.0}/s), {} send errors",
        r.run, r.sent, r.send_seconds, r.send_rate, r.send_errors
    );
    if let Some(e) = &r.events {
        println!(
            "  log events: received {}, distinct {}, duplicates {}, lost {} ({:.3}%), other {}; delivered {:.0}/s",
            e.received,
            e.distinct,
            e.duplicates,
            e.lost,
            e.loss_ratio * 100.0,
            e.other,
            e.delivered_rate
        );
        println!(
            "  send to event ms: p50 {:.2}  p99 {:.2}  max {:.2}",
            e.latency.p50_ms, e.latency.p99_ms, e.latency.max_ms
        );
    }
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
            let mut servers = Vec::new();
            for s in &server {
                let Some(a) = parse_server(s) else {
                    eprintln!("pserv-storm: --server {s:?} is not ADDR[:PORT]");
                    return ExitCode::from(2);
                };
                servers.push(a);
            }
            let Some(mac_prefix) = parse_prefix(&mac_prefix) else {
                eprintln!("pserv-storm: --mac-prefix {mac_prefix:?} is not two hex octets");
                return ExitCode::from(2);
            };
            if !(seconds > 0.0 && seconds.is_finite()) {
                eprintln!("pserv-storm: --seconds must be positive");
                return ExitCode::from(2);
            }
            if servers.iter().any(|s| s.is_ipv6() != relay.is_ipv6()) {
                eprintln!("pserv-storm: --server and --relay must be of one address family");
                return ExitCode::from(2);
            }
            let port = if relay.is_ipv6() { 547 } else { 67 };
            let sock = match dhcp::run::socket(SocketAddr::from((relay, port))) {
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
                relay,
                subnet,
                mac_prefix,
            };
            let report = dhcp::run::run(&sock, &servers, cfg, !quiet && !json);
            print_report(&report, json, table);
            if report.outside_subnet + report.duplicates > 0 {
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Mode::Boot {
            server,
            proxy,
            relay,
            machines,
            arch,
            ramp,
            blksize,
            windowsize,
            leased_source,
            boot_dir,
            timeout_ms,
            deadline,
            think_ms,
            mac_prefix,
            server6,
            relay6,
            ipv6_every,
            json,
            quiet,
        } => {
            use pserv_storm::boot;
            let Some(server) = parse_server4(&server) else {
                eprintln!("pserv-storm: --server {server:?} is not ADDR[:PORT]");
                return ExitCode::from(2);
            };
            let proxy = match proxy.as_deref().map(parse_server4) {
                None => None,
                Some(Some(p)) => Some(p),
                Some(None) => {
                    eprintln!("pserv-storm: --proxy {proxy:?} is not ADDR[:PORT]");
                    return ExitCode::from(2);
                }
            };
            let arch = match arch.as_str() {
                "bios" => boot::Arch::Bios,
                "uefi" => boot::Arch::Uefi,
                "mix" => boot::Arch::Mix,
                other => {
                    eprintln!("pserv-storm: --arch {other:?}: bios, uefi or mix");
                    return ExitCode::from(2);
                }
            };
            let Some(mac_prefix) = parse_prefix(&mac_prefix) else {
                eprintln!("pserv-storm: --mac-prefix {mac_prefix:?} is not two hex octets");
                return ExitCode::from(2);
            };
            if !(ramp >= 0.0 && ramp.is_finite() && deadline > 0.0 && deadline.is_finite()) {
                eprintln!("pserv-storm: --ramp and --deadline must be non-negative seconds");
                return ExitCode::from(2);
            }
            let dhcp6 = match (server6.as_deref().map(parse_server), relay6) {
                (Some(Some(server)), Some(relay)) if server.is_ipv6() => Some(boot::Dhcp6 {
                    server,
                    relay,
                    every: ipv6_every.max(1),
                }),
                (Some(_), _) => {
                    eprintln!("pserv-storm: --server6 {server6:?} is not an IPv6 [ADDR]:PORT");
                    return ExitCode::from(2);
                }
                _ => None,
            };
            let cfg = boot::Config {
                dhcp6,
                server,
                proxy,
                relay,
                machines,
                arch,
                ramp: Duration::from_secs_f64(ramp),
                mac_prefix,
                tftp: pserv_boot::tftp::client::Request {
                    blksize: blksize.clamp(8, 65464),
                    window: windowsize.max(1),
                    ..Default::default()
                },
                leased_source,
                boot_dir,
                timeout: Duration::from_millis(timeout_ms.max(1)),
                dhcp_tries: 4,
                deadline: Duration::from_secs_f64(deadline),
                think: Duration::from_millis(think_ms),
            };
            let std_sock = match dhcp::run::socket(SocketAddr::from((relay, 67))) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("pserv-storm: {e:#}");
                    return ExitCode::from(1);
                }
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pserv-storm: {e}");
                    return ExitCode::from(1);
                }
            };
            let report = rt.block_on(async {
                match tokio::net::UdpSocket::from_std(std_sock) {
                    Ok(sock) => Some(boot::run(cfg, sock, !quiet && !json).await),
                    Err(e) => {
                        eprintln!("pserv-storm: {e}");
                        None
                    }
                }
            });
            let Some(report) = report else {
                return ExitCode::from(1);
            };
            print_report(&report, json, boot_table);
            if report.failed > 0 {
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Mode::Syslog {
            server,
            events,
            token,
            count,
            rate,
            sources,
            first_source,
            size,
            linger_ms,
            json,
        } => {
            let cfg = pserv_storm::syslog::Config {
                server,
                events,
                token,
                count,
                rate,
                sources,
                first_source,
                size,
                linger: Duration::from_millis(linger_ms),
            };
            let report = match pserv_storm::syslog::run(&cfg) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("pserv-storm: {e:#}");
                    return ExitCode::from(1);
                }
            };
            print_report(&report, json, syslog_table);
            if report.events.as_ref().is_some_and(|e| e.duplicates > 0) {
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
