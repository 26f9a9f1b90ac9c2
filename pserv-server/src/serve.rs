//! The whole server's lifecycle: [`serve`] recovers the leases, publishes the first snapshot,
//! binds every socket, starts every service on one shutdown signal, and returns a [`Handle`];
//! [`Handle::shutdown`] stops them all and reports whether the lease journal closed cleanly.
//!
//! Order matters and is fixed here: leases are recovered before anything answers (a restart
//! must know every acknowledged lease), and every socket is bound before any service starts
//! (a port in use fails the start, with nothing half-running).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pserv_core::journal::{Journal, JournalError, Options};
use pserv_core::lease::{LeaseLog, Leases};

use crate::control::LeaseMonitor;
use pserv_core::lease::{LeaseBoard, LeaseEvent};
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_core::{PublishError, Published, Snapshot, Store};
use pserv_dns::respond::Responder;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::{App, Publisher, PushStats};
use crate::events::{Event, Events};

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
    /// The control API address.
    pub control: SocketAddr,
    /// The TFTP address, when a boot directory is served.
    pub tftp: Option<SocketAddr>,
    /// The HTTP boot address, when a boot directory is served.
    pub boot_http: Option<SocketAddr>,
    /// TFTP's and HTTP boot's joins.
    boot_joins: Vec<pserv_net::service::Join>,
    publisher: Arc<Publisher>,
    leases: Arc<LeaseBoard>,
    shutdown: CancellationToken,
    dns_join: pserv_net::service::Join,
    dhcp_join: pserv_net::service::Join,
    control_task: tokio::task::JoinHandle<()>,
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
        events: Events::new(),
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

    // Every socket, before any service starts.
    let bind = |what, addr: String| move |source| Error::Bind { what, addr, source };
    let dns_sockets = pserv_dns::server::Sockets::bind(&config.dns_listen)
        .map_err(bind("DNS", format!("{:?}", config.dns_listen)))?;
    let dhcp_config = pserv_dhcp::io::Config {
        listen: config.dhcp_listen,
        interface: config.dhcp_interface.clone(),
        server_id: None,
    };
    let dhcp_sock =
        pserv_dhcp::io::bind(&dhcp_config).map_err(bind("DHCP", config.dhcp_listen.to_string()))?;
    let control_listener = std::net::TcpListener::bind(config.control_listen)
        .and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        })
        .map_err(bind("the control API", config.control_listen.to_string()))?;
    let control = control_listener
        .local_addr()
        .map_err(bind("the control API", config.control_listen.to_string()))?;
    // Boot serving: with a boot directory, or a snapshot that renders boot files.
    let renders = store.load().renders_boot();
    let boot = match (&config.boot_dir, renders) {
        (None, false) => None,
        (dir, _) => {
            let tree = match dir {
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
            let sock = pserv_net::udp::bind_tokio(config.tftp_listen, &Default::default())
                .map_err(bind("TFTP", config.tftp_listen.to_string()))?;
            let http = pserv_net::tcp::bind(config.boot_http_listen)
                .map_err(bind("HTTP boot", config.boot_http_listen.to_string()))?;
            let http_port = http
                .local_addr()
                .map_err(bind("HTTP boot", config.boot_http_listen.to_string()))?
                .port();
            Some((sock, http, tree, http_port))
        }
    };

    let shutdown = CancellationToken::new();
    // A service that cannot start stops the ones already started.
    let started = shutdown.clone().drop_guard();
    let responder = Arc::new(Responder::new(store.clone(), leases.clone()));
    let dns_service =
        pserv_dns::server::start(dns_sockets, responder, config.dns_tcp, shutdown.clone())
            .map_err(|source| Error::Start {
                what: "DNS",
                source,
            })?;
    let events = publisher.events.clone();
    let chain = boot
        .as_ref()
        .map(|b| pserv_dhcp::BootChain { http_port: b.3 });
    let dhcp_service = pserv_dhcp::io::start(
        dhcp_sock,
        pserv_dhcp::io::Setup {
            config: dhcp_config,
            store: store.clone(),
            server: pserv_dhcp::Server::new().with_boot_chain(chain),
            leases: leases_recovered,
            log,
            board: leases.clone(),
            on_event: Arc::new(move |e: &LeaseEvent| events.emit(|| Event::Lease(e.clone()))),
        },
        shutdown.clone(),
    )
    .map_err(|source| Error::Start {
        what: "DHCP",
        source,
    })?;
    let mut service_metrics = vec![
        Arc::from(dns_service.metrics),
        Arc::from(dhcp_service.metrics),
    ];
    // Boot serving: TFTP and HTTP boot over one virtual tree.
    let (mut tftp, mut boot_http, mut boot_joins) = (None, None, Vec::new());
    if let Some((sock, http, dir, http_port)) = boot {
        let events = &publisher.events;
        let tree = Arc::new(pserv_boot::vtree::Tree::new(
            dir,
            store.clone(),
            leases.clone(),
            http_port,
            {
                let events = events.clone();
                Arc::new(move |c: &pserv_boot::vtree::ConfigServed| {
                    events.emit(|| Event::BootConfig(c.clone()));
                })
            },
        ));
        let on_fetched = {
            let events = events.clone();
            Arc::new(move |f: &pserv_boot::tftp::service::Fetched| {
                events.emit(|| Event::Tftp(f.clone()));
            })
        };
        let on_served = {
            let events = events.clone();
            Arc::new(move |s: &pserv_boot::http::Served| events.emit(|| Event::Http(s.clone())))
        };
        let tftp_service = pserv_boot::tftp::service::start(
            sock,
            tree.clone(),
            pserv_boot::tftp::service::Config::default(),
            on_fetched,
            shutdown.clone(),
        )
        .map_err(|source| Error::Start {
            what: "TFTP",
            source,
        })?;
        let http_service = pserv_boot::http::start(http, tree, on_served, shutdown.clone())
            .map_err(|source| Error::Start {
                what: "HTTP boot",
                source,
            })?;
        tftp = tftp_service.addrs.first().copied();
        boot_http = http_service.addrs.first().copied();
        for service in [tftp_service, http_service] {
            service_metrics.push(Arc::from(service.metrics));
            boot_joins.push(service.join);
        }
    }
    let app = Arc::new(App {
        publisher: publisher.clone(),
        leases: leases.clone(),
        service_metrics,
        lease_log: lease_monitor,
        connections: Arc::default(),
        token: config.token.clone(),
        started: Instant::now(),
    });
    let router = app.router(config.max_body_bytes);
    let control_task = tokio::spawn(pserv_net::http::serve(
        control_listener,
        router,
        app.connections.clone(),
        pserv_net::http::Limits {
            what: "control API",
            max_connections: crate::control::MAX_CONNECTIONS,
        },
        shutdown.clone().cancelled_owned(),
    ));
    started.disarm();
    Ok(Handle {
        dns: dns_service.addrs,
        dhcp: dhcp_service.addrs[0],
        control,
        tftp,
        boot_http,
        boot_joins,
        publisher,
        leases,
        shutdown,
        dns_join: dns_service.join,
        dhcp_join: dhcp_service.join,
        control_task,
        published: (published, source_name),
    })
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
        let _ = self.control_task.await;
        for j in self.boot_joins {
            let _ = j.await;
        }
        if let Err(e) = self.dns_join.await {
            tracing::warn!(error = %e, "DNS service stopped");
        }
        self.dhcp_join
            .await
            .map_err(|e| JournalError(e.to_string().into()))?;
        Ok(())
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

/// The clock, read at the edge: the journal and the leases take `now` as an argument.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
