//! `boot` mode: N simulated machines doing what firmware does, all at once or on a ramp.
//!
//! Each machine, with its own MAC and architecture (option 93):
//! 1. DORA (through the generator's relay address), as its PXE ROM does;
//! 2. fetches the offered boot file: over TFTP from siaddr (else the server identifier), or
//!    over HTTP for a UEFI HTTP boot URL;
//! 3. runs the loader that file is: `*.0` is pxelinux, which reads
//!    `pxelinux.cfg/01-<mac>` (else `pxelinux.cfg/default`) over TFTP; `shim*` is the signed
//!    chain, which asks for shim's revocation files beside it, loads `grubx64.efi`
//!    (`grubaa64.efi`) from there and reads GRUB's `/grub/grub.cfg` over TFTP; anything else
//!    is iPXE, which does its own DORA (user class "iPXE") and GETs the script URL it is given;
//! 4. checks that the configuration is this machine's (it names the hostname DHCP gave it),
//!    then fetches the kernel and initrds it names (TFTP paths or HTTP URLs), unless it says
//!    boot from disk;
//! 5. when its configuration names one of its node files (`http://…/nodes/<mac>/<name>`, or
//!    the directory itself, as cloud-init's `s=` does, then `user-data`), runs the installer's
//!    step: fetches that file and reports a progress stage at `…/nodes/<mac>/progress` (204);
//! 6. looks up its own name (A, which must be its address) and address (PTR, which must be its
//!    name) at the DNS server DHCP gave it.
//!
//! Machines booting over IPv6 ([`Config::dhcp6`], issue 27) are x86-64 UEFI with their IPv4
//! PXE off: a relayed DHCPv6 SOLICIT/ADVERTISE/REQUEST/REPLY naming their architecture
//! (option 61) and asking for the boot file URL (option 59), then the `grub` chain over TFTP
//! on IPv6 from the server in that URL (Debian's iPXE has no IPv6), and AAAA and ip6.arpa
//! PTR lookups: the name the PTR gives must be the one the configuration names.
//!
//! Every fetched file that also exists under `--boot-dir` must match it byte for byte. Each
//! machine sends TFTP, HTTP and DNS from its leased address when `leased_source` is set (the
//! harness routes the pool to the generator's namespace as local: `ip route add local ...`).
//! The report: time to booted per machine (p50/p99/max), each phase's latency, and failures
//! by phase and reason.

pub mod mux;
pub mod net;
pub mod script;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use pserv_boot::tftp::client as tftp;
use serde::Serialize;

use crate::dhcp::{Kind, wire, wire6};
use crate::stats::{Latency, Samples};
use mux::Mux;

/// Which architectures the machines are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Legacy BIOS (option 93 = 0).
    Bios,
    /// x86-64 UEFI (7).
    Uefi,
    /// Alternating BIOS and UEFI.
    Mix,
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// The DHCP server.
    pub server: SocketAddrV4,
    /// A proxyDHCP server beside it (issue 23): every DHCP message also goes there; the
    /// address comes from `server`'s offer, the boot file and siaddr from the proxy's.
    pub proxy: Option<SocketAddrV4>,
    /// The relay address the generator poses as (its socket listens on it, port 67).
    pub relay: Ipv4Addr,
    /// How many machines.
    pub machines: u32,
    /// Their architectures.
    pub arch: Arch,
    /// Power-on spread: machine `i` starts at `i * ramp / machines` (zero: all at once).
    pub ramp: Duration,
    /// The first two octets of every MAC.
    pub mac_prefix: [u8; 2],
    /// TFTP options asked for.
    pub tftp: tftp::Request,
    /// Send TFTP, HTTP and DNS from the machine's leased address.
    pub leased_source: bool,
    /// Files to compare fetched bytes with (paths as the TFTP name or URL path).
    pub boot_dir: Option<PathBuf>,
    /// How long each DHCP or HTTP or DNS step waits.
    pub timeout: Duration,
    /// DHCP sends per message (firmware retries).
    pub dhcp_tries: u32,
    /// The run ends by then, booted or not.
    pub deadline: Duration,
    /// What a machine spends between two steps of its boot (a firmware starting what it
    /// fetched, a kernel booting): 0 fires each step as soon as the last one ended; real
    /// machines take seconds, which a test watching each step may want.
    pub think: Duration,
    /// Machines that boot over IPv6, and where their DHCPv6 goes (none: all boot over IPv4).
    pub dhcp6: Option<Dhcp6>,
}

/// The IPv6 side of a run (issue 27).
#[derive(Debug, Clone, Copy)]
pub struct Dhcp6 {
    /// The DHCPv6 server (port 547).
    pub server: SocketAddr,
    /// The relay's link address the generator poses as (its socket listens on it, port 547).
    pub relay: Ipv6Addr,
    /// Every `every`-th machine boots over IPv6 (1: all of them; 2: every second one).
    pub every: u32,
}

/// The steps of a boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The PXE ROM's DORA.
    Dhcp,
    /// The boot file.
    BootFile,
    /// iPXE's own DORA.
    IpxeDhcp,
    /// shim's requests beside itself, then the signed GRUB it loads (the `grub` chain).
    Grub,
    /// The loader's configuration (iPXE script or pxelinux config).
    Config,
    /// The kernel.
    Kernel,
    /// The initrds.
    Initrd,
    /// The installer's node file (preseed, cloud-init), when the configuration names one.
    NodeFile,
    /// The installer's progress report.
    Progress,
    /// A and PTR lookups.
    Dns,
    /// The run's deadline passed first.
    Deadline,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Dhcp => "dhcp",
            Self::BootFile => "boot_file",
            Self::IpxeDhcp => "ipxe_dhcp",
            Self::Grub => "grub",
            Self::Config => "config",
            Self::Kernel => "kernel",
            Self::Initrd => "initrd",
            Self::NodeFile => "node_file",
            Self::Progress => "progress",
            Self::Dns => "dns",
            Self::Deadline => "deadline",
        }
    }
}

/// One machine's boot.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its MAC.
    pub mac: [u8; 6],
    /// The address it was given.
    pub ip: Option<IpAddr>,
    /// Power-on to booted.
    pub booted: Option<Duration>,
    /// Whether its configuration said boot from disk.
    pub local: bool,
    /// How long each phase took.
    pub phases: Vec<(Phase, Duration)>,
    /// Sends each phase repeated after a silence (phases with none left out).
    pub resends: Vec<(Phase, u32)>,
    /// Where and why it failed.
    pub failure: Option<(Phase, String)>,
    /// Bytes fetched (boot file, config, kernel, initrds).
    pub bytes: u64,
    /// DHCP gave it no hostname: the configuration's name check and DNS were skipped.
    pub unnamed: bool,
    /// DHCP gave it no DNS server: the lookups were skipped.
    pub no_dns: bool,
}

/// What the machines share.
struct Ctx {
    cfg: Config,
    mux: Arc<Mux>,
    /// DHCPv6's relay socket, when machines boot over IPv6.
    mux6: Option<Arc<Mux>>,
    /// Expected contents by path, read once.
    files: Mutex<HashMap<String, Option<Arc<Vec<u8>>>>>,
}

impl Ctx {
    /// The expected bytes of `path` (a TFTP name or URL path), if the boot dir has it.
    fn expected(&self, path: &str) -> Option<Arc<Vec<u8>>> {
        let dir = self.cfg.boot_dir.as_ref()?;
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return None;
        }
        let mut files = self.files.lock().ok()?;
        files
            .entry(rel.to_owned())
            .or_insert_with(|| std::fs::read(dir.join(rel)).ok().map(Arc::new))
            .clone()
    }
}

/// What DHCP gave a machine.
#[derive(Debug, Clone)]
struct Lease {
    ip: IpAddr,
    server_id: IpAddr,
    siaddr: IpAddr,
    file: Option<String>,
    dns: Option<IpAddr>,
    hostname: Option<String>,
    domain: Option<String>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One DORA for machine `mac` as `stage` (0: the PXE ROM, 1: iPXE).
async fn dora(ctx: &Ctx, mac: [u8; 6], arch: u16, xid: u32, ipxe: bool) -> Result<Lease, String> {
    let c = wire::Client {
        xid,
        mac,
        giaddr: ctx.cfg.relay,
        arch: Some(arch),
        ipxe,
    };
    let mut rx = ctx.mux.open(xid);
    let result = async {
        let mut msg = Vec::with_capacity(320);
        wire::discover(&mut msg, &c);
        // With a proxy, an address offer (yiaddr set) and a proxy offer (yiaddr 0, the boot
        // fields), in either order, as PXE firmware collects them.
        let mut address: Option<(Ipv4Addr, Option<Ipv4Addr>)> = None;
        let mut boot: Option<Boot> = None;
        let proxied = ctx.cfg.proxy.is_some();
        let offer = ctx
            .mux
            .exchange(&msg, &mut rx, ctx.cfg.timeout, ctx.cfg.dhcp_tries, |b| {
                let r = wire::parse_reply(b)?;
                if r.kind != wire::OFFER || r.mac != mac {
                    return None;
                }
                if r.yiaddr.is_unspecified() {
                    boot = Some(Boot {
                        siaddr: r.siaddr,
                        file: r.file.map(text),
                        server_id: r.server_id,
                    });
                } else {
                    address = Some((r.yiaddr, r.server_id));
                }
                if boot.is_some() || !proxied {
                    address
                } else {
                    None
                }
            })
            .await
            .ok_or(if proxied {
                "no address OFFER and proxy OFFER"
            } else {
                "no OFFER"
            })?;
        let server = offer.1.unwrap_or(*ctx.cfg.server.ip());
        wire::request(&mut msg, &c, offer.0, server);
        ctx.mux
            .exchange(&msg, &mut rx, ctx.cfg.timeout, ctx.cfg.dhcp_tries, |b| {
                let r = wire::parse_reply(b)?;
                if r.mac != mac {
                    return None;
                }
                match r.kind {
                    // A proxy's boot fields win over the address server's (which has none).
                    wire::ACK => Some(Ok(Lease {
                        ip: r.yiaddr.into(),
                        server_id: boot
                            .as_ref()
                            .and_then(|b| b.server_id)
                            .or(r.server_id)
                            .unwrap_or(server)
                            .into(),
                        siaddr: boot.as_ref().map_or(r.siaddr, |b| b.siaddr).into(),
                        file: boot
                            .as_ref()
                            .and_then(|b| b.file.clone())
                            .or_else(|| r.file.map(text)),
                        dns: r.dns.map(IpAddr::V4),
                        hostname: r.hostname.map(text),
                        domain: r.domain.map(text),
                    })),
                    wire::NAK => Some(Err("NAK".to_owned())),
                    _ => None,
                }
            })
            .await
            .ok_or("no ACK")?
    }
    .await;
    ctx.mux.done(xid);
    result
}

/// One SOLICIT/ADVERTISE/REQUEST/REPLY for machine `mac` (architecture `arch`), relayed, with
/// transaction id `id` (23 bits; the REQUEST's is its own, with the 24th bit set): its
/// address, DNS server, and the boot file URL's server and path.
async fn sarr(ctx: &Ctx, mac: [u8; 6], arch: u16, id: u32) -> Result<Lease, String> {
    let (Some(mux), Some(v6)) = (&ctx.mux6, ctx.cfg.dhcp6) else {
        return Err("no DHCPv6 relay".to_owned());
    };
    // RFC 8415 §16.1: a new transaction id for each exchange.
    let (xid, xid2) = (id & 0x007f_ffff, (id & 0x007f_ffff) | 0x0080_0000);
    let (mut rx, mut rx2) = (mux.open(xid), mux.open(xid2));
    let result = async {
        let mut msg = Vec::with_capacity(160);
        wire6::solicit_boot(&mut msg, v6.relay, mac, xid, arch);
        let adv = mux
            .exchange(&msg, &mut rx, ctx.cfg.timeout, ctx.cfg.dhcp_tries, |b| {
                let r = wire6::read_reply(b)?;
                (r.answer.mac == mac).then_some(r)
            })
            .await
            .ok_or("no ADVERTISE")?;
        if adv.answer.kind != Kind::Offer {
            return Err("an ADVERTISE without an address".to_owned());
        }
        let server = adv.answer.server.as_deref().unwrap_or(&[]);
        wire6::request_boot(&mut msg, v6.relay, mac, xid2, adv.answer.addr, server, arch);
        mux.exchange(&msg, &mut rx2, ctx.cfg.timeout, ctx.cfg.dhcp_tries, |b| {
            let r = wire6::read_reply(b)?;
            if r.answer.mac != mac || r.answer.kind == Kind::Offer {
                return None;
            }
            Some(match r.answer.kind {
                Kind::Ack => Ok(r),
                _ => Err("a REPLY without an address".to_owned()),
            })
        })
        .await
        .ok_or("no REPLY")?
    }
    .await;
    mux.done(xid);
    mux.done(xid2);
    let r = result?;
    let dhcp_server = v6.server.ip();
    // The boot file URL names the server to fetch it from: `tftp://[addr]/path`, or an http
    // URL fetched as it is.
    let (server, file) = match r.url.as_deref() {
        Some(u) if u.starts_with("tftp://") => {
            let (host, path) =
                net::parse_tftp_url(u).ok_or_else(|| format!("a boot file URL {u:?}"))?;
            if !host.is_ipv6() {
                return Err(format!("an IPv4 server in the DHCPv6 boot file URL {u:?}"));
            }
            (host, Some(path.trim_start_matches('/').to_owned()))
        }
        other => (dhcp_server, other.map(str::to_owned)),
    };
    Ok(Lease {
        ip: IpAddr::V6(r.answer.addr),
        server_id: server,
        siaddr: server,
        file,
        dns: r.dns.map(IpAddr::V6),
        hostname: None,
        domain: None,
    })
}

/// A proxy offer's boot fields.
struct Boot {
    siaddr: Ipv4Addr,
    file: Option<String>,
    server_id: Option<Ipv4Addr>,
}

/// What a fetch got: its length, and its bytes when asked to keep them (a configuration,
/// which the machine then reads).
struct Got {
    len: u64,
    body: Vec<u8>,
}

/// Fetches `what` (an http URL, else a TFTP name on `tftp_server`) from `source`. A file the
/// boot directory also has is compared with it as it arrives; the bytes are kept only when
/// `keep` says so (images are not: 1,000 machines' kernels would cost the generator the
/// memory traffic it needs to keep up).
async fn fetch(
    ctx: &Ctx,
    what: &str,
    tftp_server: IpAddr,
    source: IpAddr,
    keep: bool,
) -> Result<Got, String> {
    fetch_with(ctx, what, tftp_server, source, keep, ctx.cfg.tftp).await
}

/// [`fetch`] with the TFTP options a particular loader asks for.
async fn fetch_with(
    ctx: &Ctx,
    what: &str,
    tftp_server: IpAddr,
    source: IpAddr,
    keep: bool,
    options: tftp::Request,
) -> Result<Got, String> {
    let http = what.starts_with("http://");
    let path = if http {
        net::parse_url(what).map_or("", |(_, p)| p)
    } else {
        what
    };
    let want = ctx.expected(path);
    let mut body = Vec::new();
    let mut at = 0usize;
    let mut differs = false;
    let sink = |b: &[u8]| {
        if let Some(w) = &want {
            differs |= w.get(at..at + b.len()) != Some(b);
            at += b.len();
        }
        if keep {
            body.extend_from_slice(b);
        }
    };
    let len = if http {
        net::get(what, source, ctx.cfg.timeout * 4, sink).await?
    } else {
        let sock = tokio::net::UdpSocket::bind(SocketAddr::from((source, 0)))
            .await
            .map_err(|e| format!("bind {source}: {e}"))?;
        let mut resent = 0;
        let got = tftp::fetch_counting(
            &sock,
            SocketAddr::from((tftp_server, 69)),
            what,
            options,
            sink,
            &mut resent,
        )
        .await;
        resends(resent);
        got.map_err(|e| e.to_string())?
    };
    if let Some(w) = &want
        && (differs || len != w.len() as u64)
    {
        return Err(format!(
            "{path}: {len} bytes that differ from the boot directory's {}",
            w.len()
        ));
    }
    Ok(Got { len, body })
}

tokio::task_local! {
    /// Sends repeated after a silence (DHCP retries, TFTP resends) in the phase the machine of
    /// this task is in: read and reset as each phase ends.
    static RESENDS: std::cell::Cell<u32>;
}

/// Counts `n` repeated sends for the current machine's phase.
pub(crate) fn resends(n: u32) {
    let _ = RESENDS.try_with(|c| c.set(c.get() + n));
}

async fn machine(i: u32, ctx: Arc<Ctx>, t0: Instant) -> Outcome {
    /// Runs phase `p` of the machine, timing it into `out`; then the machine thinks
    /// (`Config::think`) before its next step.
    macro_rules! phase {
        ($out:expr, $p:expr, $e:expr) => {{
            let t = Instant::now();
            let r = $e;
            $out.phases.push(($p, t.elapsed()));
            let resent = RESENDS.try_with(|c| c.replace(0)).unwrap_or(0);
            if resent > 0 {
                $out.resends.push(($p, resent));
            }
            match r {
                Ok(v) => {
                    if !ctx.cfg.think.is_zero() {
                        tokio::time::sleep(ctx.cfg.think).await;
                    }
                    v
                }
                Err(e) => {
                    $out.failure = Some(($p, e));
                    return $out;
                }
            }
        }};
    }
    let [a, b] = ctx.cfg.mac_prefix;
    let n = i.to_be_bytes();
    let mac = [a, b, n[0], n[1], n[2], n[3]];
    // Over IPv6: x86-64 UEFI (BIOS PXE has no IPv6).
    let v6 = ctx
        .cfg
        .dhcp6
        .is_some_and(|d| i % d.every.max(1) == d.every.max(1) - 1);
    let arch = match ctx.cfg.arch {
        _ if v6 => 7,
        Arch::Bios => 0,
        Arch::Uefi => 7,
        Arch::Mix => [0, 7][i as usize % 2],
    };
    let mut out = Outcome {
        mac,
        ip: None,
        booted: None,
        local: false,
        phases: Vec::new(),
        resends: Vec::new(),
        failure: None,
        bytes: 0,
        unnamed: false,
        no_dns: false,
    };
    let xid = |stage: u32| (i.wrapping_mul(2654435761) ^ (stage << 30)) | 1;
    let lease = phase!(
        out,
        Phase::Dhcp,
        if v6 {
            // The machine's number: unique in 24 bits, so no two machines share a transaction.
            sarr(&ctx, mac, arch, i + 1).await
        } else {
            dora(&ctx, mac, arch, xid(0), false).await
        }
    );
    out.ip = Some(lease.ip);
    // Over IPv6 the name comes from DNS (the PTR of the address), checked at the end.
    out.unnamed = lease.hostname.is_none() && !(v6 && lease.dns.is_some());
    out.no_dns = lease.dns.is_none();
    let src = match (ctx.cfg.leased_source, lease.ip) {
        (true, ip) => ip,
        (false, IpAddr::V4(_)) => Ipv4Addr::UNSPECIFIED.into(),
        (false, IpAddr::V6(_)) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let tftp_server = if lease.siaddr.is_unspecified() {
        lease.server_id
    } else {
        lease.siaddr
    };
    let file = phase!(
        out,
        Phase::BootFile,
        match &lease.file {
            Some(f) => fetch(&ctx, f, tftp_server, src, false)
                .await
                .map(|g| (f.clone(), g)),
            None => Err("no boot file offered".to_owned()),
        }
    );
    out.bytes += file.1.len;
    let mac_hyphen = mac.map(|o| format!("{o:02x}")).join("-");
    let shim = file
        .0
        .rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("shim"));
    // What the loader asks TFTP for (measured from Debian 12's: shim 512-byte blocks in
    // windows of 4, GRUB 1024-byte blocks one at a time); the generator's own for the rest.
    let shim_tftp = tftp::Request {
        blksize: 512,
        window: 4,
        ..ctx.cfg.tftp
    };
    let grub_tftp = tftp::Request {
        blksize: 1024,
        window: 1,
        ..ctx.cfg.tftp
    };
    let loader_tftp = if shim { grub_tftp } else { ctx.cfg.tftp };
    let (config, boots, server) = if shim {
        // The signed chain, as Debian 12's shim and network GRUB do it: shim asks for its
        // revocation lists and certificate beside itself (absent is fine), then loads GRUB
        // from there; GRUB reads `/grub/grub.cfg` (its built-in prefix) over TFTP.
        let dir = file.0.rsplit_once('/').map_or("", |(d, _)| d);
        let beside = |name: &str| {
            if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            }
        };
        let grub_file = if file.0.contains("aa64") {
            "grubaa64.efi"
        } else {
            "grubx64.efi"
        };
        let g = phase!(out, Phase::Grub, {
            for absent in [
                "revocations_sku.efi",
                "revocations_sbat.efi",
                "shim_certificate_0.efi",
            ] {
                let _ = fetch_with(&ctx, &beside(absent), tftp_server, src, true, shim_tftp).await;
            }
            fetch_with(&ctx, &beside(grub_file), tftp_server, src, false, shim_tftp).await
        });
        out.bytes += g.len;
        let cfg = phase!(
            out,
            Phase::Config,
            fetch_with(&ctx, "/grub/grub.cfg", tftp_server, src, true, grub_tftp).await
        );
        let t = text(&cfg.body);
        let boots = script::grub(&t);
        (t, boots, tftp_server)
    } else if file.0.ends_with(".0") {
        // pxelinux: its config over TFTP.
        let cfg = phase!(out, Phase::Config, {
            match fetch(
                &ctx,
                &format!("pxelinux.cfg/01-{mac_hyphen}"),
                tftp_server,
                src,
                true,
            )
            .await
            {
                Ok(b) => Ok(b),
                Err(_) => fetch(&ctx, "pxelinux.cfg/default", tftp_server, src, true).await,
            }
        });
        let t = text(&cfg.body);
        let boots = script::pxelinux(&t);
        (t, boots, tftp_server)
    } else if v6 {
        out.failure = Some((
            Phase::Config,
            format!(
                "{} over IPv6: only the grub chain boots there (Debian's iPXE has no IPv6)",
                file.0
            ),
        ));
        return out;
    } else {
        // iPXE: its own DORA, then the script URL.
        let again = phase!(
            out,
            Phase::IpxeDhcp,
            dora(&ctx, mac, arch, xid(1), true).await
        );
        let url = match &again.file {
            Some(u) if u.starts_with("http://") => u.clone(),
            other => {
                let why = other.as_ref().map_or_else(
                    || "iPXE was given no script".to_owned(),
                    |u| format!("iPXE was given {u:?}, not a script URL"),
                );
                out.failure = Some((Phase::Config, why));
                return out;
            }
        };
        let cfg = phase!(
            out,
            Phase::Config,
            fetch(&ctx, &url, tftp_server, src, true).await
        );
        let t = text(&cfg.body);
        let boots = script::ipxe(&t);
        (t, boots, tftp_server)
    };
    out.bytes += config.len() as u64;
    // The configuration must be this machine's: it names the hostname DHCP gave it.
    if let Some(h) = &lease.hostname
        && !config.contains(h.as_str())
    {
        out.failure = Some((
            Phase::Config,
            "the configuration does not name this machine".to_owned(),
        ));
        return out;
    }
    if boots.local {
        out.local = true;
    } else {
        let kernel = phase!(
            out,
            Phase::Kernel,
            match &boots.kernel {
                Some(k) => fetch_with(&ctx, k, server, src, false, loader_tftp).await,
                None => Err("the configuration names no kernel".to_owned()),
            }
        );
        out.bytes += kernel.len;
        for initrd in &boots.initrds {
            let b = phase!(
                out,
                Phase::Initrd,
                fetch_with(&ctx, initrd, server, src, false, loader_tftp).await
            );
            out.bytes += b.len;
        }
    }
    if let Some((file_url, progress_url)) = installer_urls(&config, &mac_hyphen) {
        let f = phase!(
            out,
            Phase::NodeFile,
            fetch(&ctx, &file_url, server, src, true).await
        );
        out.bytes += f.len;
        if f.len == 0 {
            out.failure = Some((Phase::NodeFile, format!("{file_url} is empty")));
            return out;
        }
        phase!(
            out,
            Phase::Progress,
            net::report(
                &format!("{progress_url}?stage=installer&message=pserv-storm"),
                src,
                ctx.cfg.timeout
            )
            .await
        );
    }
    if let (true, Some(dns)) = (v6, lease.dns) {
        // The address's PTR names the machine; that name's AAAA is the address; and the
        // configuration served to it named it.
        let name = phase!(out, Phase::Dns, {
            let t = ctx.cfg.timeout;
            match net::lookup(dns, src, &net::reverse_name(lease.ip), RecordType::PTR, t).await {
                Ok(net::Answer::Ptr(p)) if p.len() == 1 => {
                    let fqdn = p[0].clone();
                    match net::lookup(dns, src, &format!("{fqdn}."), RecordType::AAAA, t).await {
                        Ok(net::Answer::Addrs(a)) if a == vec![lease.ip] => Ok(fqdn),
                        Ok(other) => Err(format!("{fqdn} AAAA {other:?}, not {}", lease.ip)),
                        Err(e) => Err(e),
                    }
                }
                Ok(other) => Err(format!("PTR of {} is {other:?}", lease.ip)),
                Err(e) => Err(e),
            }
        });
        let host = name.split('.').next().unwrap_or("");
        if host.is_empty() || !config.contains(host) {
            out.failure = Some((
                Phase::Config,
                format!("the configuration does not name {name}, this machine"),
            ));
            return out;
        }
    } else if let (Some(dns), Some(host)) = (lease.dns, &lease.hostname) {
        let fqdn = match &lease.domain {
            Some(d) if !host.contains('.') => format!("{host}.{}", d.trim_end_matches('.')),
            _ => host.clone(),
        }
        .to_ascii_lowercase();
        phase!(out, Phase::Dns, {
            let t = ctx.cfg.timeout;
            let a = net::lookup(dns, src, &format!("{fqdn}."), RecordType::A, t).await;
            let p = net::lookup(dns, src, &net::reverse_name(lease.ip), RecordType::PTR, t).await;
            match (a, p) {
                (Ok(net::Answer::Addrs(a)), _) if a != vec![lease.ip] => {
                    Err(format!("{fqdn} A {a:?}, not {}", lease.ip))
                }
                (_, Ok(net::Answer::Ptr(p))) if p != vec![fqdn.clone()] => {
                    Err(format!("PTR of {} is {p:?}, not {fqdn}", lease.ip))
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
                _ => Ok(()),
            }
        });
    }
    out.booted = Some(t0.elapsed());
    out
}

/// The node file a configuration points the installer at, and the progress URL beside it:
/// the first `http://…/nodes/<mac>/…` URL in it (a directory URL, as cloud-init's `s=`
/// takes, means its `user-data`).
fn installer_urls(config: &str, mac_hyphen: &str) -> Option<(String, String)> {
    let marker = format!("/nodes/{mac_hyphen}/");
    config
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ';' | '=' | ','))
        .filter(|t| t.starts_with("http://"))
        .find_map(|t| {
            let at = t.find(&marker)? + marker.len();
            let dir = &t[..at];
            let file = if at == t.len() {
                format!("{dir}user-data")
            } else {
                t.to_owned()
            };
            Some((file, format!("{dir}progress")))
        })
}

/// A run's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Machines powered on.
    pub machines: u64,
    /// Booted (kernel and initrds fetched, or told to boot from disk), DNS checked.
    pub booted: u64,
    /// Of those, told to boot from disk.
    pub local: u64,
    /// Failed.
    pub failed: u64,
    /// From the first power-on to the last machine booted.
    pub time_to_all_booted_s: f64,
    /// Power-on (of the run) to booted, per machine.
    pub time_to_booted: Latency,
    /// Each phase's latency.
    pub phases: BTreeMap<String, Latency>,
    /// Failures by phase and reason.
    pub failures: BTreeMap<String, u64>,
    /// Sends repeated after a silence, by phase (DHCP retries, TFTP resends of an RRQ or an
    /// ACK): where loss or delay was.
    pub resends: BTreeMap<String, u64>,
    /// The generator's own CPU time during the run (a saturated generator measures itself).
    pub generator_cpu_s: f64,
    /// Bytes fetched in all.
    pub bytes: u64,
    /// Machines DHCP gave no hostname (name checks and DNS skipped for them).
    pub unnamed: u64,
    /// Machines DHCP gave no DNS server (lookups skipped).
    pub no_dns: u64,
}

/// Sums outcomes up.
pub fn report(outcomes: &[Outcome]) -> Report {
    let mut booted = Samples::default();
    let mut phases: BTreeMap<Phase, Samples> = BTreeMap::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut resends: BTreeMap<String, u64> = BTreeMap::new();
    let mut last = Duration::ZERO;
    for o in outcomes {
        for (p, d) in &o.phases {
            phases.entry(*p).or_default().record(*d);
        }
        for (p, n) in &o.resends {
            *resends.entry(p.name().to_owned()).or_default() += u64::from(*n);
        }
        if let Some(b) = o.booted {
            booted.record(b);
            last = last.max(b);
        }
        if let Some((p, why)) = &o.failure {
            *failures.entry(format!("{}: {why}", p.name())).or_default() += 1;
        }
    }
    Report {
        machines: outcomes.len() as u64,
        booted: outcomes.iter().filter(|o| o.booted.is_some()).count() as u64,
        local: outcomes
            .iter()
            .filter(|o| o.local && o.booted.is_some())
            .count() as u64,
        failed: outcomes.iter().filter(|o| o.booted.is_none()).count() as u64,
        time_to_all_booted_s: last.as_secs_f64(),
        time_to_booted: booted.summary(),
        phases: phases
            .into_iter()
            .map(|(p, s)| (p.name().to_owned(), s.summary()))
            .collect(),
        failures,
        resends,
        generator_cpu_s: 0.0,
        bytes: outcomes.iter().map(|o| o.bytes).sum(),
        unnamed: outcomes.iter().filter(|o| o.unnamed).count() as u64,
        no_dns: outcomes.iter().filter(|o| o.no_dns).count() as u64,
    }
}

/// Powers on every machine and waits for them (or the deadline). `progress` prints a live
/// line to stderr every second.
pub async fn run(cfg: Config, sock: tokio::net::UdpSocket, progress: bool) -> Report {
    let servers = std::iter::once(cfg.server)
        .chain(cfg.proxy)
        .map(SocketAddr::V4)
        .collect();
    let mux = Mux::start(sock, servers, mux::xid4);
    // DHCPv6 from the relay's address, port 547 (where servers send RELAY-REPLs).
    let mux6 = match cfg.dhcp6 {
        Some(d) => match crate::dhcp::run::socket(SocketAddr::from((d.relay, 547)))
            .and_then(|s| Ok(tokio::net::UdpSocket::from_std(s)?))
        {
            Ok(s) => Some(Mux::start(s, vec![d.server], mux::xid6)),
            Err(e) => {
                eprintln!("pserv-storm: the DHCPv6 relay socket: {e:#}");
                None
            }
        },
        None => None,
    };
    let cpu0 = cpu_seconds();
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        mux,
        mux6,
        files: Mutex::new(HashMap::new()),
    });
    let t0 = Instant::now();
    let n = cfg.machines;
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let ctx = ctx.clone();
        let done = done.clone();
        let at = cfg.ramp.mul_f64(f64::from(i) / f64::from(n.max(1)));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(at).await;
            let o = RESENDS
                .scope(std::cell::Cell::new(0), machine(i, ctx, t0))
                .await;
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            o
        }));
    }
    let ticker = progress.then(|| {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprint!(
                    "\r{:>6.1}s  machines done {:>6} / {n}   ",
                    t0.elapsed().as_secs_f64(),
                    done.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
        })
    });
    let deadline = tokio::time::Instant::from_std(t0 + cfg.deadline);
    let mut outcomes = Vec::with_capacity(n as usize);
    for (i, mut t) in tasks.into_iter().enumerate() {
        match tokio::time::timeout_at(deadline, &mut t).await {
            Ok(Ok(o)) => outcomes.push(o),
            _ => {
                t.abort();
                let n = (i as u32).to_be_bytes();
                let [a, b] = cfg.mac_prefix;
                outcomes.push(Outcome {
                    mac: [a, b, n[0], n[1], n[2], n[3]],
                    ip: None,
                    booted: None,
                    local: false,
                    phases: Vec::new(),
                    resends: Vec::new(),
                    failure: Some((Phase::Deadline, "not booted by the deadline".to_owned())),
                    bytes: 0,
                    unnamed: false,
                    no_dns: false,
                });
            }
        }
    }
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    let mut r = report(&outcomes);
    r.generator_cpu_s = cpu_seconds() - cpu0;
    r
}

/// This process's CPU time so far (user and system, all threads), from `/proc/self/stat`; 0
/// where there is none.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // After the command name (in parentheses, which may hold spaces): state is field 3;
    // utime and stime are fields 14 and 15, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installer_step_follows_the_configurations_node_file_url() {
        let m = "52-54-00-00-00-01";
        assert_eq!(
            installer_urls(
                "kernel http://10.0.0.2:5248/k auto=true url=http://10.0.0.2:5248/nodes/52-54-00-00-00-01/preseed.cfg log_host=x",
                m
            ),
            Some((
                "http://10.0.0.2:5248/nodes/52-54-00-00-00-01/preseed.cfg".to_owned(),
                "http://10.0.0.2:5248/nodes/52-54-00-00-00-01/progress".to_owned()
            ))
        );
        assert_eq!(
            installer_urls(
                "APPEND ds=nocloud-net;s=http://h:1/nodes/52-54-00-00-00-01/ x",
                m
            ),
            Some((
                "http://h:1/nodes/52-54-00-00-00-01/user-data".to_owned(),
                "http://h:1/nodes/52-54-00-00-00-01/progress".to_owned()
            ))
        );
        assert_eq!(
            installer_urls("url=http://h/nodes/52-54-00-00-00-02/a", m),
            None
        );
        assert_eq!(installer_urls("kernel http://h/k", m), None);
    }

    #[test]
    fn report_counts_booted_failed_and_phases() {
        let o = |booted: Option<u64>, failure: Option<(Phase, &str)>| Outcome {
            mac: [0; 6],
            ip: None,
            booted: booted.map(Duration::from_millis),
            local: false,
            phases: vec![(Phase::Dhcp, Duration::from_millis(3))],
            resends: vec![(Phase::Dhcp, 2), (Phase::BootFile, 1)],
            failure: failure.map(|(p, s)| (p, s.to_owned())),
            bytes: 10,
            unnamed: false,
            no_dns: booted.is_none(),
        };
        let r = report(&[
            o(Some(100), None),
            o(Some(300), None),
            o(None, Some((Phase::Kernel, "timed out"))),
            o(None, Some((Phase::Kernel, "timed out"))),
        ]);
        assert_eq!((r.machines, r.booted, r.failed), (4, 2, 2));
        assert_eq!(r.time_to_all_booted_s, 0.3);
        assert_eq!(r.time_to_booted.max_ms, 300.0);
        assert_eq!(r.failures.get("kernel: timed out"), Some(&2));
        assert_eq!(r.phases["dhcp"].samples, 4);
        assert_eq!(r.bytes, 40);
        assert_eq!((r.unnamed, r.no_dns), (0, 2));
        assert_eq!(
            (r.resends["dhcp"], r.resends[Phase::BootFile.name()]),
            (8, 4)
        );
    }
}
