//! `pserv`: serve DHCP and DNS from controller snapshots; check a snapshot file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_core::{PublishError, Snapshot, Store, Table};
use pserv_dns::NoLeases;
use pserv_dns::server::Service;
use tokio::signal::unix::{SignalKind, signal};

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
    /// Serve DNS (and, later, DHCP) from a snapshot. With no arguments: the bundled example
    /// snapshot on loopback and unprivileged ports.
    Serve {
        /// Snapshot file to serve (default: the bundled example).
        #[arg(long)]
        snapshot: Option<PathBuf>,
        /// DNS address (UDP and TCP).
        #[arg(long, default_value = "127.0.0.1:5353")]
        dns_listen: Vec<SocketAddr>,
    },
    /// Validate a snapshot file: exit 0 with a summary, or 1 with every problem, one per line.
    Check {
        /// The snapshot file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Serve {
            snapshot,
            dns_listen,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,hickory_server=warn".into()),
                )
                .init();
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pserv: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(snapshot, dns_listen)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pserv: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(file: &PathBuf) -> ExitCode {
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

/// SIGHUP: re-reads the snapshot file and publishes it (same validation as a push). A bad file
/// changes nothing and is logged.
fn reload(store: &Store, path: Option<&std::path::Path>) {
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
    match store.publish_json(&bytes) {
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

async fn serve(snapshot: Option<PathBuf>, dns_listen: Vec<SocketAddr>) -> anyhow::Result<()> {
    let store = Arc::new(Store::new());
    let (bytes, source) = match &snapshot {
        Some(p) => (
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            EXAMPLE_JSON.as_bytes().to_vec(),
            "the bundled example snapshot".to_owned(),
        ),
    };
    let published = store.publish_json(&bytes).map_err(|e| match e {
        PublishError::Invalid(problems) => anyhow::anyhow!(
            "{source} is invalid:\n{}",
            problems
                .iter()
                .map(|p| format!("  {p}\n"))
                .collect::<String>()
        ),
        other => anyhow::anyhow!("{source}: {other}"),
    })?;
    let dns = Service::bind(&dns_listen, store.clone(), Arc::new(NoLeases))
        .await
        .context("binding DNS")?;
    println!(
        "pserv: serving generation {} ({} nodes) from {source}",
        published.generation, published.nodes
    );
    for a in &dns.local {
        let example = store
            .load()
            .nodes()
            .next()
            .map_or_else(|| "NAME".to_owned(), |n| n.fqdn().to_owned());
        println!(
            "DNS on {a} (UDP and TCP): try  dig @{} -p {} {example}",
            a.ip(),
            a.port()
        );
    }
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                // Compiling a large snapshot takes a while: keep it off the runtime's threads.
                let (store, path) = (store.clone(), snapshot.clone());
                let _ = tokio::task::spawn_blocking(move || reload(&store, path.as_deref())).await;
            }
        }
    }
    println!("pserv: shutting down");
    dns.shutdown().await;
    Ok(())
}
