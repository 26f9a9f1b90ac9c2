//! The whole server's lifecycle: [`serve`] recovers the leases, publishes the first snapshot,
//! binds every socket, starts every service on one shutdown signal, and returns a [`Handle`];
//! [`Handle::shutdown`] stops them all and reports whether the lease journal closed cleanly.
//!
//! Order matters and is fixed here: leases are recovered before anything answers (a restart
//! must know every acknowledged lease), and every socket is bound before any service starts
//! (a port in use fails the start, with nothing half-running).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pserv_core::journal::{Journal, JournalError, Options};
use pserv_core::lease::owner::unix_now;
use pserv_core::lease::{LeaseLog, Leases};

use crate::control::LeaseMonitor;
use pserv_core::lease::{LeaseBoard, LeaseEvent};
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_core::{MacAddr, PublishError, Published, Snapshot, Store, Table};
use pserv_dns::respond::Responder;
use pserv_net::Running;
use pserv_net::service::{Join, StopError};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::{App, Publisher, PushStats};
use crate::events::{Event, Events, Retention};

/// Why the server could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The state directory or the lease journal cannot be opened.
    #[error("opening the lease journal {path}: {source}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file of the state directory other than the journal (the DHCPv6 server DUID) cannot
    /// be read or written.
    #[error("the state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The snapshot file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The snapshot file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The first snapshot is refused (every problem is in the message).
    #[error("{source_name} is {}", describe(.error))]
    Snapshot {
        /// Where it came from.
        source_name: String,
        /// Why it was refused.
        error: PublishError,
    },
    /// A socket cannot be bound.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which service.
        what: &'static str,
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A service could not start (a thread could not be spawned).
    #[error("starting {what}: {source}")]
    Start {
        /// Which service.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The lease journal failed, or failed to flush at shutdown: leases decided since its last
    /// sync may not be durable.
    #[error("lease journal: {0}")]
    JournalFailed(#[from] JournalError),
}

fn describe(e: &PublishError) -> String {
    match e {
        PublishError::Invalid(problems) => format!(
            "invalid:\n{}",
            problems
                .iter()
                .map(|p| format!("  {p}\n"))
                .collect::<String>()
        ),
        other => format!("refused: {other}"),
    }
}

/// A running server. Dropping it without [`Handle::shutdown`] leaves the services running
/// until the runtime ends.
pub struct Handle {
    /// DNS addresses (UDP and TCP), port 0 resolved.
    pub dns: Vec<SocketAddr>,
    /// The DHCP address.
    pub dhcp: SocketAddr,
    /// The DHCPv6 address, when DHCPv6 runs.
    pub dhcp6: Option<SocketAddr>,
    /// The control API address.
    pub control: SocketAddr,
    /// The TFTP address, when a boot directory is served.
    pub tftp: Option<SocketAddr>,
    /// The HTTP boot address, when a boot directory is served.
    pub boot_http: Option<SocketAddr>,
    /// The syslog receiver's address (UDP), with boot serving.
    pub syslog: Option<SocketAddr>,
    publisher: Arc<Publisher>,
    leases: Arc<LeaseBoard>,
    shutdown: CancellationToken,
    /// Every service's join, by name, in the order they started.
    services: Vec<(&'static str, Join)>,
    /// What the first publish did, and where its snapshot came from.
    published: (Published, String),
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("dns", &self.dns)
            .field("dhcp", &self.dhcp)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// Starts the whole server from `config` inside the caller's tokio runtime. See the module
/// docs for the order of things.
pub async fn serve(config: Config) -> Result<Handle, Error> {
    // Leases first: a restart must know every acknowledged lease before it answers anyone.
    // In cluster mode they are etcd's: the instance starts with none and answers no dynamic
    // client until it has read them (reserved nodes are served from the start).
    let (leases_recovered, log, lease_monitor): (_, Box<dyn LeaseLog>, _) = match &config.cluster {
        Some(c) => {
            let mut cc = pserv_cluster::Config::new(c.endpoints.clone(), &c.name, &c.instance);
            cc.ttl = c.ttl;
            cc.max_txn_ops = c.max_txn_ops;
            let (log, monitor) = pserv_cluster::join(cc).map_err(|source| Error::Start {
                what: "cluster",
                source,
            })?;
            tracing::info!(cluster = %c.name, instance = %c.instance, etcd = ?c.endpoints, "cluster mode: leases on etcd");
            (Leases::new(), Box::new(log), LeaseMonitor::Cluster(monitor))
        }
        None => {
            let dir = config.state_dir.clone().unwrap_or_else(|| {
                let d = std::env::temp_dir().join(format!("pserv-{}", std::process::id()));
                tracing::warn!(
                    dir = %d.display(),
                    "no --state-dir: leases are journaled in a directory of this process and will not \
                     survive a restart"
                );
                d
            });
            let path = dir.join("leases.journal");
            let journal_err = |source| Error::Journal {
                path: path.clone(),
                source,
            };
            std::fs::create_dir_all(&dir).map_err(journal_err)?;
            let (journal, recovery) =
                Journal::open(&path, Options::default(), unix_now()).map_err(journal_err)?;
            tracing::info!(
                path = %path.display(),
                leases = recovery.leases.len(),
                records = recovery.records,
                "lease journal recovered"
            );
            let monitor = LeaseMonitor::Journal(journal.monitor());
            (recovery.leases, Box::new(journal), monitor)
        }
    };
    let leases = Arc::new(LeaseBoard::new());

    let store = Arc::new(Store::new());
    let publisher = Arc::new(Publisher {
        store: store.clone(),
        pushes: PushStats::default(),
        events: Events::new(Retention {
            // `Config::resolve` refuses 0; a config built by hand keeps at least one.
            events: NonZeroUsize::new(config.events_buffer).unwrap_or(NonZeroUsize::MIN),
            bytes: config.events_buffer_bytes,
        }),
    });
    let (bytes, source_name) = match &config.snapshot {
        Some(p) => (
            std::fs::read(p).map_err(|source| Error::Read {
                path: p.clone(),
                source,
            })?,
            p.display().to_string(),
        ),
        None => (
            EXAMPLE_JSON.as_bytes().to_vec(),
            "the bundled example snapshot".to_owned(),
        ),
    };
    // Compiling a large snapshot takes a while: keep it off the runtime's threads.
    let first = {
        let publisher = publisher.clone();
        tokio::task::spawn_blocking(move || publisher.publish_json(&bytes))
            .await
            .map_err(|e| Error::Start {
                what: "the first publish",
                source: std::io::Error::other(e),
            })?
    };
    let published = first.map_err(|error| Error::Snapshot {
        source_name: source_name.clone(),
        error,
    })?;

    // Every socket, before any service starts: a port in use fails the start with nothing
    // running.
    let bound = Bound::bind(&config, &store)?;
    let control = bound.control_addr;
    let syslog = bound.syslog_addr();
    let shared = Shared {
        store,
        board: leases,
        events: publisher.events.clone(),
    };

    let shutdown = CancellationToken::new();
    // A service that cannot start stops the ones already started.
    let started = shutdown.clone().drop_guard();
    // The services, in the order they start; adding one is one more entry here.
    let chain = bound.boot.as_ref().map(|b| pserv_dhcp::BootChain {
        http_port: b.http_port,
    });
    // One decision-maker for both DHCP front ends (port 67, and the PXE boot server on 4011).
    let dhcp_server = pserv_dhcp::Server::new()
        .with_boot_chain(chain)
        .with_ignore_link_selection(config.dhcp_ignore_link_selection);
    let dhcp6 = match bound.dhcp6 {
        Some(sock) => Some(pserv_dhcp::io::Setup6 {
            sock,
            server: pserv_dhcp::v6::Server6::new(server_duid(config.state_dir.as_deref())?)
                .with_boot_chain(chain),
            on_netboot: {
                let events = shared.events.clone();
                Arc::new(move |n: &pserv_dhcp::v6::Netboot6| {
                    events.emit(|| Event::Dhcp6(n.clone()));
                })
            },
        }),
        None => None,
    };
    let mut services = vec![
        start_dns(bound.dns, &shared, &config, &shutdown)?,
        start_dhcp(
            bound.dhcp,
            dhcp6,
            (leases_recovered, log),
            dhcp_server,
            &shared,
            &shutdown,
        )?,
    ];
    if let Some(sock) = bound.pxe {
        let setup = pserv_dhcp::boot_server::Setup {
            store: shared.store.clone(),
            server: dhcp_server,
            board: shared.board.clone(),
            server_id: None,
            on_proxy: proxy_events(&shared),
        };
        services.push(
            pserv_dhcp::boot_server::start(sock, setup, shutdown.clone())
                .map_err(start_error("the PXE boot server"))?,
        );
    }
    if let Some(boot) = bound.boot {
        services.extend(start_boot(boot, &shared, &shutdown)?);
    }
    if let Some(syslog) = bound.syslog {
        services.push(start_syslog(syslog, &shared, &config, &shutdown)?);
    }
    let addrs = |name: &str| {
        services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.addrs.clone())
            .unwrap_or_default()
    };
    let (dns, dhcp, dhcp6) = (
        addrs("DNS"),
        addrs("DHCP")[0],
        addrs("DHCP").get(1).copied(),
    );
    let (tftp, boot_http) = (
        addrs("TFTP").first().copied(),
        addrs("HTTP boot").first().copied(),
    );
    // What the status reports as listening: every service, then the control API.
    let mut listening: Vec<(&'static str, Vec<SocketAddr>)> =
        services.iter().map(|s| (s.name, s.addrs.clone())).collect();
    listening.push(("control API", vec![control]));
    let mut service_metrics = Vec::with_capacity(services.len());
    let mut joins = Vec::with_capacity(services.len() + 1);
    for s in services {
        service_metrics.push(Arc::from(s.metrics));
        joins.push((s.name, s.join));
    }
    // The control API last: it reports every other service's metrics.
    let app = Arc::new(App {
        publisher: publisher.clone(),
        leases: shared.board.clone(),
        service_metrics,
        lease_log: lease_monitor,
        connections: Arc::default(),
        token: config.token.clone(),
        started: Instant::now(),
        listening,
    });
    joins.push((
        "control API",
        start_control(bound.control, app, &config, &shutdown),
    ));
    started.disarm();
    Ok(Handle {
        dns,
        dhcp,
        dhcp6,
        control,
        tftp,
        boot_http,
        syslog,
        publisher,
        leases: shared.board,
        shutdown,
        services: joins,
        published: (published, source_name),
    })
}

/// What the services share: the served table, the published lease view, the event stream.
struct Shared {
    store: Arc<Store>,
    board: Arc<LeaseBoard>,
    events: Events,
}

/// Every socket the server serves on, bound before any service starts.
struct Bound {
    dns: pserv_dns::server::Sockets,
    dhcp: (std::net::UdpSocket, pserv_dhcp::io::Config),
    /// The DHCPv6 socket, when it runs.
    dhcp6: Option<std::net::UdpSocket>,
    /// The PXE boot server's (proxyDHCP), when configured.
    pxe: Option<std::net::UdpSocket>,
    control: tokio::net::TcpListener,
    control_addr: SocketAddr,
    /// With a boot directory, or a snapshot that renders boot files.
    boot: Option<BootSockets>,
    /// The syslog receiver's, with boot serving.
    syslog: Option<SyslogSocket>,
}

/// The syslog receiver's socket.
struct SyslogSocket {
    sock: std::net::UdpSocket,
    /// Where it is bound (port 0 resolved): what machines are told to log to.
    addr: SocketAddr,
}

impl Bound {
    /// The syslog receiver's address, when it runs (the `syslog_host` and `syslog_port`
    /// machines are given).
    fn syslog_addr(&self) -> Option<SocketAddr> {
        self.syslog.as_ref().map(|s| s.addr)
    }
}

struct BootSockets {
    tftp: tokio::net::UdpSocket,
    http: tokio::net::TcpListener,
    http_port: u16,
    /// The syslog receiver's address, named to machines as `syslog_host`/`syslog_port`.
    syslog: Option<SocketAddr>,
    dir: Option<pserv_boot::tree::BootDir>,
}

impl Bound {
    fn bind(config: &Config, store: &Store) -> Result<Self, Error> {
        let bind = |what, addr: String| move |source| Error::Bind { what, addr, source };
        let dns = pserv_dns::server::Sockets::bind(&config.dns_listen)
            .map_err(bind("DNS", format!("{:?}", config.dns_listen)))?;
        let dhcp_config = pserv_dhcp::io::Config {
            listen: config.dhcp_listen,
            interface: config.dhcp_interface.clone(),
            server_id: None,
        };
        let dhcp = pserv_dhcp::io::bind(&dhcp_config)
            .map_err(bind("DHCP", config.dhcp_listen.to_string()))?;
        let dhcp6 = match config.dhcp6_listen {
            None => None,
            Some(listen) => {
                let c = pserv_dhcp::io::Config6 {
                    listen,
                    interface: config.dhcp_interface.clone(),
                };
                match pserv_dhcp::io::bind6(&c) {
                    Ok(sock) => Some(sock),
                    // The default (loopback) where it cannot bind, as on a host without
                    // IPv6: DHCPv4 alone, said once. A configured address fails the start.
                    Err(e) if config.dhcp6_default => {
                        tracing::warn!(address = %listen, error = %e, "DHCPv6 not served");
                        None
                    }
                    Err(e) => return Err(bind("DHCPv6", listen.to_string())(e)),
                }
            }
        };
        let pxe = match config.pxe_listen {
            Some(addr) => Some(
                pserv_dhcp::boot_server::bind(addr)
                    .map_err(bind("the PXE boot server", addr.to_string()))?,
            ),
            None => None,
        };
        let control_err = || bind("the control API", config.control_listen.to_string());
        let control = pserv_net::tcp::bind(config.control_listen).map_err(control_err())?;
        let control_addr = control.local_addr().map_err(control_err())?;
        let boot = if config.boot_dir.is_some() || store.load().renders_boot() {
            let dir = match &config.boot_dir {
                Some(dir) => {
                    Some(
                        pserv_boot::tree::BootDir::new(dir).map_err(|source| Error::Read {
                            path: dir.clone(),
                            source,
                        })?,
                    )
                }
                None => None,
            };
            let tftp = pserv_net::udp::bind_tokio(config.tftp_listen, &Default::default())
                .map_err(bind("TFTP", config.tftp_listen.to_string()))?;
            let http_err = || bind("HTTP boot", config.boot_http_listen.to_string());
            let http = pserv_net::tcp::bind(config.boot_http_listen).map_err(http_err())?;
            let http_port = http.local_addr().map_err(http_err())?.port();
            // Installers log where boot serving sends them: the receiver runs with it.
            let syslog_err = || bind("syslog", config.syslog_listen.to_string());
            let sock = pserv_net::udp::bind(config.syslog_listen, &Default::default())
                .map_err(syslog_err())?;
            let addr = sock.local_addr().map_err(syslog_err())?;
            Some((
                BootSockets {
                    tftp,
                    http,
                    http_port,
                    syslog: Some(addr),
                    dir,
                },
                SyslogSocket { sock, addr },
            ))
        } else {
            None
        };
        let (boot, syslog) = boot.unzip();
        Ok(Self {
            dns,
            dhcp: (dhcp, dhcp_config),
            dhcp6,
            pxe,
            control,
            control_addr,
            boot,
            syslog,
        })
    }
}

/// The DHCPv6 server's DUID, the same across restarts (RFC 8415 §11: clients renew with the
/// server they were given): a DUID-UUID (type 4) made once, kept as `server.duid` in the
/// state directory. Without a state directory, a new one each run.
fn server_duid(state_dir: Option<&std::path::Path>) -> Result<pserv_core::lease::Duid, Error> {
    use std::io::Read;
    let err = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| Error::State { path, source }
    };
    let fresh = || -> std::io::Result<pserv_core::lease::Duid> {
        let mut b = [0u8; 18];
        b[1] = 4;
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b[2..])?;
        pserv_core::lease::Duid::new(&b).ok_or_else(|| std::io::Error::other("a DUID"))
    };
    let Some(dir) = state_dir else {
        return fresh().map_err(err(std::path::Path::new("/dev/urandom")));
    };
    let path = dir.join("server.duid");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes: Option<Vec<u8>> = text
                .trim()
                .split(':')
                .map(|h| u8::from_str_radix(h, 16).ok())
                .collect();
            bytes
                .as_deref()
                .and_then(pserv_core::lease::Duid::new)
                .ok_or_else(|| {
                    err(&path)(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "not a DUID in colon-separated hex",
                    ))
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let duid = fresh().map_err(err(&path))?;
            std::fs::create_dir_all(dir).map_err(err(&path))?;
            let tmp = dir.join("server.duid.new");
            std::fs::write(&tmp, format!("{duid}\n")).map_err(err(&path))?;
            std::fs::rename(&tmp, &path).map_err(err(&path))?;
            tracing::info!(path = %path.display(), duid = %duid, "DHCPv6 server DUID made");
            Ok(duid)
        }
        Err(e) => Err(err(&path)(e)),
    }
}

/// Why a service did not start.
fn start_error(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Start { what, source }
}

fn start_dns(
    sockets: pserv_dns::server::Sockets,
    shared: &Shared,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Running, Error> {
    let responder = Arc::new(Responder::new(shared.store.clone(), shared.board.clone()));
    pserv_dns::server::start(sockets, responder, config.dns_tcp, shutdown.clone())
        .map_err(start_error("DNS"))
}

/// proxyDHCP answers as `proxy` events.
fn proxy_events(shared: &Shared) -> pserv_dhcp::proxy::OnProxy {
    let events = shared.events.clone();
    Arc::new(move |a: &pserv_dhcp::proxy::ProxyAnswer| events.emit(|| Event::Proxy(a.clone())))
}

fn start_dhcp(
    (sock, config): (std::net::UdpSocket, pserv_dhcp::io::Config),
    v6: Option<pserv_dhcp::io::Setup6>,
    (leases, log): (Leases, Box<dyn LeaseLog>),
    server: pserv_dhcp::Server,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<Running, Error> {
    let events = shared.events.clone();
    let setup = pserv_dhcp::io::Setup {
        config,
        store: shared.store.clone(),
        server,
        leases,
        log,
        board: shared.board.clone(),
        on_event: Arc::new(move |e: &LeaseEvent| events.emit(|| Event::Lease(e.clone()))),
        on_proxy: proxy_events(shared),
        on_netboot: {
            let events = shared.events.clone();
            Arc::new(move |n: &pserv_dhcp::server::Netboot| events.emit(|| Event::Dhcp(n.clone())))
        },
        v6,
    };
    pserv_dhcp::io::start(sock, setup, shutdown.clone()).map_err(start_error("DHCP"))
}

/// The boot requests' log target (`--log-dhcp` turns it on with the DHCP decisions): one
/// line per TFTP transfer and HTTP boot request, with the client and how it ended.
pub const BOOT_LOG: &str = "pserv::boot";

/// The DHCP decision log's target (see `pserv_dhcp::log`).
pub const DHCP_LOG: &str = pserv_dhcp::log::TARGET;

/// TFTP and HTTP boot, over one virtual tree.
fn start_boot(
    sockets: BootSockets,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<[Running; 2], Error> {
    let on_tree = {
        let events = shared.events.clone();
        Arc::new(move |s: pserv_boot::vtree::Served| {
            events.emit(|| match s {
                pserv_boot::vtree::Served::Config(c) => Event::BootConfig(c),
                pserv_boot::vtree::Served::File(f) => Event::NodeFile(f),
            });
        })
    };
    let tree = Arc::new(pserv_boot::vtree::Tree::new(
        sockets.dir,
        shared.store.clone(),
        shared.board.clone(),
        pserv_boot::vtree::Urls {
            http_port: sockets.http_port,
            syslog: sockets.syslog,
        },
        on_tree,
    ));
    let on_fetched = {
        let events = shared.events.clone();
        Arc::new(move |f: &pserv_boot::tftp::service::Fetched| {
            // The name is the client's: escaped, so a line break in it cannot forge a line.
            let file = f.file.escape_debug();
            tracing::debug!(target: BOOT_LOG, client = %f.client, file = %file,
                outcome = ?f.outcome, bytes = f.bytes, size = f.size, seconds = f.seconds,
                "TFTP {file} from {}: {:?}", f.client, f.outcome);
            events.emit(|| Event::Tftp(f.clone()));
        })
    };
    let on_served = {
        let events = shared.events.clone();
        Arc::new(move |s: &pserv_boot::http::Served| {
            let (method, path) = (s.method.escape_debug(), s.path.escape_debug());
            tracing::debug!(target: BOOT_LOG, client = %s.client, method = %method,
                path = %path, status = s.status, bytes = s.bytes,
                "HTTP boot {method} {path} from {}: {}", s.client, s.status);
            events.emit(|| Event::Http(s.clone()));
        })
    };
    let tftp = pserv_boot::tftp::service::start(
        sockets.tftp,
        tree.clone(),
        pserv_boot::tftp::service::Config::default(),
        on_fetched,
        shutdown.clone(),
    )
    .map_err(start_error("TFTP"))?;
    let on_progress = {
        let events = shared.events.clone();
        Arc::new(move |p: &pserv_boot::http::Progress| {
            events.emit(|| Event::Progress(p.clone()));
        })
    };
    let http =
        pserv_boot::http::start(sockets.http, tree, on_served, on_progress, shutdown.clone())
            .map_err(start_error("HTTP boot"))?;
    Ok([tftp, http])
}

/// The syslog receiver: each message a `log` event, its sender resolved to a node.
fn start_syslog(
    socket: SyslogSocket,
    shared: &Shared,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Running, Error> {
    let resolve = {
        let (store, board) = (shared.store.clone(), shared.board.clone());
        Arc::new(move |ip: IpAddr| sender(&store.load(), &board, ip))
    };
    let on_log = {
        let events = shared.events.clone();
        Arc::new(move |l: &pserv_syslog::LogLine| events.emit(|| Event::Log(l.clone())))
    };
    let setup = pserv_syslog::Setup {
        limits: config.syslog_limits,
        resolve,
        on_log,
    };
    pserv_syslog::start(socket.sock, setup, shutdown.clone()).map_err(start_error("syslog"))
}

/// Who sent from `ip`: the node and MAC of the interface that reserves it, else the MAC of
/// the live lease on it, else of the machine that showed it in its PXE exchange on a proxyDHCP
/// subnet (and its node, for a known node's interface without a reservation).
fn sender(table: &Table, board: &LeaseBoard, ip: IpAddr) -> (Option<String>, Option<MacAddr>) {
    let ip = ip.to_canonical();
    let reserved = match ip {
        IpAddr::V4(v4) => table.by_ipv4(v4),
        IpAddr::V6(v6) => table.by_ipv6(v6),
    };
    if let Some(i) = reserved {
        return (Some(i.node().id().to_owned()), Some(i.mac()));
    }
    // A live lease, else (proxyDHCP) the machine that showed this address in its PXE exchange.
    let mac = match ip {
        IpAddr::V4(v4) => board
            .holder(v4)
            .map(|l| l.mac)
            .or_else(|| board.sighted_at(v4, pserv_core::lease::Now::read().unix)),
        IpAddr::V6(v6) => board.holder6(v6).and_then(|l| l.mac),
    };
    match mac {
        Some(mac) => (
            table.by_mac(mac).map(|i| i.node().id().to_owned()),
            Some(mac),
        ),
        None => (None, None),
    }
}

/// The control API: pushes, status, leases, events, and every service's metrics (its own
/// counters are part of the server's collector, `crate::metrics`). Resolves once drained.
fn start_control(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    config: &Config,
    shutdown: &CancellationToken,
) -> Join {
    let router = app.router(config.max_body_bytes);
    let task = tokio::spawn(pserv_net::http::serve(
        listener,
        router,
        app.connections.clone(),
        pserv_net::http::Limits {
            what: "control API",
            max_connections: crate::control::MAX_CONNECTIONS,
            zero_copy: false,
        },
        shutdown.clone().cancelled_owned(),
    ));
    Box::pin(async move { task.await.map_err(|e| Box::new(e) as StopError) })
}

impl Handle {
    /// The served table.
    pub fn store(&self) -> &Arc<Store> {
        &self.publisher.store
    }

    /// The first publish, and where its snapshot came from.
    pub fn first_publish(&self) -> (&Published, &str) {
        (&self.published.0, &self.published.1)
    }

    /// Publishes a snapshot built in code, as a push would (counted, announced on
    /// `/v1/events`). Blocking: compile large snapshots off the async threads.
    pub fn publish(&self, snap: &Snapshot) -> Result<Published, PublishError> {
        self.publisher.publish(snap)
    }

    /// Publishes a snapshot from JSON bytes, as a push would. Blocking, like
    /// [`Handle::publish`].
    pub fn publish_json(&self, bytes: &[u8]) -> Result<Published, PublishError> {
        self.publisher.publish_json(bytes)
    }

    /// Re-reads a snapshot file and publishes it (what SIGHUP does). Blocking.
    pub fn publish_file(&self, path: &Path) -> Result<Published, ReloadError> {
        let bytes = std::fs::read(path).map_err(ReloadError::Read)?;
        self.publish_json(&bytes).map_err(ReloadError::Publish)
    }

    /// The dynamic leases as the DHCP service publishes them.
    pub fn leases(&self) -> &LeaseBoard {
        &self.leases
    }

    /// The shutdown signal: cancel it from anywhere (a signal handler, a test) to stop every
    /// service; then await [`Handle::stopped`].
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every service and waits for them: the control API drains, DNS closes, DHCP sends
    /// the replies already decided once durable and closes the lease journal. Reports a
    /// journal that failed or did not flush.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shutdown.cancel();
        self.stopped().await
    }

    /// Waits until the shutdown signal has been given and every service has stopped; the
    /// result as for [`Handle::shutdown`].
    pub async fn stopped(self) -> Result<(), Error> {
        self.shutdown.cancelled().await;
        let mut result = Ok(());
        // The control API first (it drains), then the rest; every one is waited for.
        for (name, join) in self.services.into_iter().rev() {
            match join.await {
                Ok(()) => {}
                // The lease log's failure is the server's: leases may not be durable.
                Err(e) if name == "DHCP" => {
                    result = Err(Error::JournalFailed(match e.downcast::<JournalError>() {
                        Ok(j) => *j,
                        Err(e) => JournalError(e.to_string().into()),
                    }));
                }
                Err(e) => {
                    tracing::warn!(service = name, error = %e, "service did not stop cleanly");
                }
            }
        }
        result
    }
}

/// Why a snapshot file was not reloaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file cannot be read.
    #[error("cannot read the snapshot: {0}")]
    Read(std::io::Error),
    /// The snapshot is refused; the previous one keeps serving.
    #[error(transparent)]
    Publish(PublishError),
}
