//! `pserv`: serve DNS (and, with issue 4, DHCP) from controller snapshots; check, push, leases.
//!
//! Exit codes of the client commands: 0 success; 1 the snapshot is invalid (every problem is
//! printed, one per line); 2 usage or I/O error; 3 stale generation; 4 unauthorized; 5 the
//! server could not be reached or answered unexpectedly.

mod config;
mod control;
mod dynamic;
mod http;
mod notify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use parking_lot::Mutex;
use pserv_core::journal::{Journal, Options};
use pserv_core::lease::Leases;
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_core::{PublishError, Snapshot, Store, Table};
use pserv_dns::server::Service;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{DEFAULT_CONTROL, Overrides, Settings};
use crate::control::App;

#[derive(Parser)]
#[command(
    name = "pserv",
    version,
    about = "DHCP and authoritative DNS for provisioning networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DHCP and DNS from a snapshot, with the control API. With no arguments: the bundled
    /// example snapshot on loopback and unprivileged ports.
    Serve {
        /// TOML configuration file; flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: Overrides,
    },
    /// Validate a snapshot file: exit 0 with a summary, or 1 with every problem, one per line.
    Check {
        /// The snapshot file.
        file: PathBuf,
    },
    /// Push a snapshot file to a running pserv: exit 0 with the new generation.
    Push {
        /// The snapshot file.
        file: PathBuf,
        /// The control API.
        #[arg(long, default_value_t = format!("http://{DEFAULT_CONTROL}"))]
        to: String,
        /// Bearer token.
        #[arg(long, env = "PSERV_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// List the leases of a running pserv (dynamic and reserved).
    Leases {
        /// The control API.
        #[arg(long, default_value_t = format!("http://{DEFAULT_CONTROL}"))]
        from: String,
        /// Bearer token.
        #[arg(long, env = "PSERV_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Push { file, to, token } => push(&file, &to, token.as_deref()),
        Command::Leases { from, token } => leases(&from, token.as_deref()),
        Command::Serve { config, flags } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let settings = config
                .as_deref()
                .map_or_else(|| Ok(config::File::default()), config::File::load)
                .and_then(|file| Settings::resolve(file, flags));
            let settings = match settings {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("pserv: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pserv: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pserv: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(file: &Path) -> ExitCode {
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

fn push(file: &Path, to: &str, token: Option<&str>) -> ExitCode {
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

fn leases(from: &str, token: Option<&str>) -> ExitCode {
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
        "{:<17}  {:<15}  {:<8}  {:<12}  HOSTNAME",
        "MAC", "IP", "STATE", "EXPIRES"
    );
    for l in &list {
        let s = |k: &str| l[k].as_str().map(str::to_owned).unwrap_or_default();
        let expires = l["expires"]
            .as_u64()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<17}  {:<15}  {:<8}  {:<12}  {}",
            s("mac"),
            s("ip"),
            s("state"),
            expires,
            s("hostname")
        );
    }
    ExitCode::SUCCESS
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Raises the soft limit on open descriptors to the hard one. Every DNS-over-TCP connection
/// holds a descriptor until it goes idle for 10 s; at a 1,024 soft limit, a thousand idle
/// connections would leave none for the lease journal or the control API. (Go's runtime does
/// the same at start; `contrib/pserv.service` sets the hard limit.)
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    raise_open_file_limit();
    // Leases first: a restart must know every acknowledged lease before it answers anyone.
    let dir = settings.state_dir.clone().unwrap_or_else(|| {
        let d = std::env::temp_dir().join(format!("pserv-{}", std::process::id()));
        tracing::warn!(
            dir = %d.display(),
            "no --state-dir: leases are journaled in a directory of this process and will not \
             survive a restart"
        );
        d
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("leases.journal");
    let now = unix_now();
    let (journal, recovery) = Journal::open(&path, Options::default(), now)
        .with_context(|| format!("opening {}", path.display()))?;
    tracing::info!(
        path = %path.display(),
        leases = recovery.changes.len(),
        records = recovery.records,
        "lease journal recovered"
    );
    let journal = Arc::new(journal);
    let dhcp_server = Arc::new(Mutex::new(pserv_dhcp::Server::new(Leases::restore(
        &recovery.changes,
        now,
    ))));
    let store = Arc::new(Store::new());
    let app = App::new(store.clone(), dhcp_server.clone(), settings.token.clone());

    let (bytes, source) = match &settings.snapshot {
        Some(p) => (
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            EXAMPLE_JSON.as_bytes().to_vec(),
            "the bundled example snapshot".to_owned(),
        ),
    };
    let published = app.publish(&bytes).map_err(|e| match e {
        PublishError::Invalid(problems) => anyhow::anyhow!(
            "{source} is invalid:\n{}",
            problems
                .iter()
                .map(|p| format!("  {p}\n"))
                .collect::<String>()
        ),
        other => anyhow::anyhow!("{source}: {other}"),
    })?;

    let names = Arc::new(dynamic::LeaseNames {
        server: dhcp_server.clone(),
        store: store.clone(),
    });
    let dns = Service::bind_with(&settings.dns_listen, store.clone(), names, settings.dns_tcp)
        .await
        .context("binding DNS")?;
    app.add_dns(dns.counters(), dns.forward_counters());
    let events = app.clone();
    let dhcp = pserv_dhcp::io::Service::spawn(
        pserv_dhcp::io::Config {
            listen: settings.dhcp_listen,
            interface: settings.dhcp_interface.clone(),
            server_id: None,
        },
        store.clone(),
        dhcp_server.clone(),
        journal.clone(),
        Arc::new(move |c: &pserv_core::lease::Change| {
            if let Ok(v) = serde_json::to_value(c) {
                let kind = v["event"].as_str().unwrap_or("lease").to_owned();
                events.emit(&kind, &v);
            }
        }),
    )
    .with_context(|| format!("binding DHCP on {}", settings.dhcp_listen))?;
    app.set_dhcp_counters(dhcp.counters.clone());
    app.set_journal(&journal);
    let listener = tokio::net::TcpListener::bind(settings.control_listen)
        .await
        .with_context(|| format!("binding the control API on {}", settings.control_listen))?;
    let control_addr = listener.local_addr()?;
    let router = app.router(settings.max_body_bytes);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let conn_counters = app.control_connections();
    let control = tokio::spawn(http::serve(listener, router, conn_counters, async {
        let _ = stop_rx.await;
    }));

    println!(
        "pserv: serving generation {} ({} nodes) from {source}",
        published.generation, published.nodes
    );
    let example = store
        .load()
        .nodes()
        .next()
        .map_or_else(|| "NAME".to_owned(), |n| n.fqdn().to_owned());
    for a in &dns.local {
        println!(
            "DNS on {a} (UDP and TCP): try  dig @{} -p {} {example}",
            a.ip(),
            a.port()
        );
    }
    println!("DHCP on {} (UDP)", dhcp.local);
    println!(
        "control API on http://{control_addr}: push with  pserv push FILE --to http://{control_addr}"
    );
    notify::notify("READY=1");

    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                // Compiling a large snapshot takes a while: keep it off the runtime's threads.
                let (app, path) = (app.clone(), settings.snapshot.clone());
                let _ = tokio::task::spawn_blocking(move || reload(&app, path.as_deref())).await;
            }
        }
    }
    println!("pserv: shutting down");
    notify::notify("STOPPING=1");
    let _ = stop_tx.send(());
    let _ = control.await;
    dns.shutdown().await;
    tokio::task::spawn_blocking(move || {
        dhcp.shutdown();
        // Everything queued is made durable before we exit.
        match Arc::try_unwrap(journal) {
            Ok(j) => j.close(),
            Err(_) => Ok(()),
        }
    })
    .await
    .context("stopping DHCP")?
    .context("flushing the lease journal")?;
    Ok(())
}

/// SIGHUP: re-reads the snapshot file and publishes it (same validation as a push). A bad file
/// changes nothing and is logged.
fn reload(app: &App, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no --snapshot file to reload (serving the bundled example)");
        return;
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "SIGHUP: cannot read the snapshot");
            return;
        }
    };
    match app.publish(&bytes) {
        Ok(p) => tracing::info!(
            file = %path.display(),
            generation = p.generation,
            nodes = p.nodes,
            parse = ?p.parse,
            compile = ?p.compile,
            "SIGHUP: snapshot reloaded"
        ),
        Err(PublishError::Invalid(problems)) => {
            for p in &problems {
                tracing::error!(file = %path.display(), "SIGHUP: {p}");
            }
            tracing::error!(
                problems = problems.len(),
                "SIGHUP: snapshot rejected; still serving the previous one"
            );
        }
        Err(e) => tracing::error!(file = %path.display(), error = %e, "SIGHUP: snapshot rejected"),
    }
}
