//! `pserv`: the command line. `serve` runs the library's server ([`pserv_server::serve`]) with
//! signals and systemd readiness around it; `check`, `push` and `leases` are the client
//! commands (`client.rs`, with their exit codes).

mod client;
mod notify;
mod privilege;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pserv_core::PublishError;
use pserv_server::config::{DEFAULT_CONTROL, LogFormat, Overrides};
use pserv_server::{Config, ReloadError};
use tokio::signal::unix::{SignalKind, signal};

/// jemalloc, with background threads ([`main`] turns them on) that return freed pages to the
/// system within seconds even while the threads that freed them sleep: after a flood of offers
/// has ended, the lease set's memory leaves the process (glibc's allocator kept it resident).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "pserv",
    version,
    about = "DHCP, authoritative DNS and network boot (TFTP, HTTP boot, per-node boot files) for provisioning networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DHCP, DNS and network boot from a snapshot, with the control API. With no
    /// arguments: the bundled example snapshot on loopback and unprivileged ports.
    Serve {
        /// TOML configuration file; flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: Box<Overrides>,
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
    /// Print what a machine would be served: one of its node files, or a loader's
    /// configuration (as cobbler's `system getks`); with neither, what it has. Exit 1 with
    /// the problem when it cannot be rendered.
    Render {
        /// The snapshot file.
        snapshot: PathBuf,
        /// The machine: a node id or a MAC (a MAC the snapshot does not know is an unknown
        /// client, given its address with --address).
        #[arg(long)]
        node: String,
        /// A node file's name (`preseed.cfg`, `user-data`...).
        #[arg(long, conflicts_with = "loader")]
        file: Option<String>,
        /// A loader's configuration.
        #[arg(long, value_parser = ["ipxe", "grub", "pxelinux"])]
        loader: Option<String>,
        /// The machine's address, IPv4 or IPv6 (its IPv4 reservation by default): an IPv6
        /// address renders what the machine gets when it boots over IPv6.
        #[arg(long)]
        address: Option<std::net::IpAddr>,
        /// The server address URLs name [default: the subnet's next_server, else 127.0.0.1,
        /// or ::1 for an IPv6 --address].
        #[arg(long)]
        server: Option<std::net::IpAddr>,
        /// The HTTP boot port URLs name.
        #[arg(long, default_value_t = 5248)]
        http_port: u16,
        /// The syslog receiver `syslog_host`/`syslog_port` name.
        #[arg(long)]
        syslog: Option<std::net::SocketAddr>,
    },
    /// Write the man pages (DIR/man) and bash, zsh and fish completions (DIR/completions),
    /// generated from this CLI's definition (for packaging).
    #[command(hide = true)]
    Assets {
        /// Where to write them.
        dir: PathBuf,
    },
    /// Fill a boot directory from the distribution's installed packages: iPXE, the signed
    /// shim and GRUB (Secure Boot; ARM64 too when present), pxelinux. Prints what it copied,
    /// what is missing and the package that has it, and which boot paths are ready. A file
    /// already there with different bytes is kept unless --force. Exit 1 when one was kept,
    /// when nothing at all could be assembled, or on an I/O error.
    BootDir {
        /// The boot directory (created if absent): what `--boot-dir` serves.
        dir: PathBuf,
        /// Also look under this root (searched before `/`), e.g. a package unpacked with
        /// `dpkg-deb -x shim-signed_*_arm64.deb ROOT`.
        #[arg(long = "from", value_name = "ROOT")]
        from: Vec<PathBuf>,
        /// Replace files that differ from the packages'.
        #[arg(long)]
        force: bool,
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

/// `pserv boot-dir`: see [`pserv_boot::assemble`].
fn boot_dir(dir: &Path, mut roots: Vec<PathBuf>, force: bool) -> ExitCode {
    use pserv_boot::assemble::{BootPath, assemble};
    roots.push(PathBuf::from("/"));
    match assemble(dir, &roots, force) {
        Ok(report) => {
            print!("{report}");
            if report.kept() > 0 {
                eprintln!(
                    "pserv: {} file(s) in {} differ from the packages' and were kept (--force replaces them)",
                    report.kept(),
                    dir.display()
                );
                ExitCode::FAILURE
            } else if !BootPath::ALL.iter().any(|p| report.ready(*p)) {
                eprintln!(
                    "pserv: no boot path could be assembled: install the packages named above"
                );
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("pserv: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    #[cfg(feature = "jemalloc")]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!(
            "pserv: jemalloc background threads not started ({e}): freed memory returns more slowly"
        );
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => client::check(&file),
        Command::Push { file, to, token } => client::push(&file, &to, token.as_deref()),
        Command::Leases { from, token } => client::leases(&from, token.as_deref()),
        Command::BootDir { dir, from, force } => boot_dir(&dir, from, force),
        Command::Assets { dir } => match assets(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pserv: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Render {
            snapshot,
            node,
            file,
            loader,
            address,
            server,
            http_port,
            syslog,
        } => client::render(&client::RenderArgs {
            snapshot: &snapshot,
            node: &node,
            file: file.as_deref(),
            loader: loader.as_deref(),
            address,
            server,
            http_port,
            syslog,
        }),
        Command::Serve { config, flags } => {
            let settings = config
                .as_deref()
                .map_or_else(
                    || Ok(pserv_server::config::File::default()),
                    pserv_server::config::File::load,
                )
                .and_then(|file| Config::resolve(file, *flags));
            let settings = match settings {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("pserv: {e:#}");
                    return ExitCode::from(2);
                }
            };
            // Held to the end: dropping it writes out what the log thread still holds.
            let _log = init_logging(settings.log_format, settings.log_dhcp);
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

/// Man pages (one per command: pserv.1, pserv-serve.1, ...) and shell completions, from the
/// CLI definition itself, so they never drift from `--help`.
fn assets(dir: &Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    clap_mangen::generate_to(Cli::command(), &man).context("writing the man pages")?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "pserv", &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
    }
    Ok(())
}

/// The log: `RUST_LOG` (default `info`), plus the decision log with `--log-dhcp`; text, or one
/// JSON object per line with the event's fields at the top level. Lines are formatted where
/// they happen and written to stdout by a thread of their own, many lines a write (a line a
/// write cost the DHCP loop a system call per request with `--log-dhcp`); when that thread
/// falls 64k lines behind, loggers wait: no line is dropped. The guard flushes at exit.
fn init_logging(format: LogFormat, log_dhcp: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(65_536)
        .thread_name("pserv-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if log_dhcp {
        for target in [pserv_server::DHCP_LOG, pserv_server::BOOT_LOG] {
            if let Ok(d) = format!("{target}=debug").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            // Colours for a person at a terminal, plain text for journald and files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_writer(writer)
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .with_env_filter(filter)
            .init(),
    }
    guard
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

async fn serve(config: Config) -> anyhow::Result<()> {
    // Before anything says pserv is up: a SIGTERM right after the banner (or READY=1) must
    // shut down cleanly, not kill the process with the default action.
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    raise_open_file_limit();
    let snapshot = config.snapshot.clone();
    let json = config.log_format == LogFormat::Json;
    // --user: checked before anything is bound. It needs a state directory chosen for it (the
    // default one, in /tmp under a guessable name, could be another user's); cluster mode
    // keeps its leases on etcd and has none.
    let user = match &config.user {
        Some(name) => {
            if config.state_dir.is_none() && config.cluster.is_none() {
                anyhow::bail!(
                    "--user {name} needs --state-dir (state_dir): the directory it will own"
                );
            }
            Some(privilege::target(name)?)
        }
        None => None,
    };
    let state_dir = config
        .state_dir
        .clone()
        .filter(|_| config.cluster.is_none());
    let server = pserv_server::serve(config).await?;
    // Every socket is bound: what --user gives up is not needed any more.
    if let Some(t) = &user {
        tokio::task::block_in_place(|| privilege::drop_to(t, state_dir.as_deref()))?;
    }
    // The banner: lines on stdout, or with JSON logs, log events (stdout stays JSON).
    let say = |line: String| {
        if json {
            tracing::info!(target: "pserv", "{line}");
        } else {
            println!("{line}");
        }
    };
    let (published, source) = server.first_publish();
    say(format!(
        "pserv: serving generation {} ({} nodes) from {source}",
        published.generation, published.nodes
    ));
    let example = server
        .store()
        .load()
        .nodes()
        .next()
        .map_or_else(|| "NAME".to_owned(), |n| n.fqdn().to_owned());
    for a in &server.dns {
        say(format!(
            "DNS on {a} (UDP and TCP): try  dig @{} -p {} {example}",
            a.ip(),
            a.port()
        ));
    }
    say(format!("DHCP on {} (UDP)", server.dhcp));
    if let Some(d6) = server.dhcp6 {
        say(format!("DHCPv6 on {d6} (UDP)"));
    }
    if let Some(t) = server.tftp {
        say(format!("TFTP on {t} (read only)"));
    }
    if let Some(h) = server.boot_http {
        say(format!("HTTP boot on http://{h}/ (read only)"));
    }
    if let Some(s) = server.syslog {
        say(format!(
            "syslog on {s} (UDP): each message a `log` event on /v1/events"
        ));
    }
    let control = server.control;
    say(format!(
        "control API on http://{control}: push with  pserv push FILE --to http://{control}"
    ));
    notify::notify("READY=1");

    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                // Compiling a large snapshot takes a while: off the runtime's other tasks.
                tokio::task::block_in_place(|| reload(&server, snapshot.as_deref()));
            }
        }
    }
    say("pserv: shutting down".to_owned());
    notify::notify("STOPPING=1");
    server
        .shutdown()
        .await
        .context("stopping (the lease journal may not have flushed)")
}

/// SIGHUP: re-reads the snapshot file and publishes it (same validation as a push). A bad file
/// changes nothing and is logged.
fn reload(server: &pserv_server::Handle, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no --snapshot file to reload (serving the bundled example)");
        return;
    };
    match server.publish_file(path) {
        Ok(p) => tracing::info!(
            file = %path.display(),
            generation = p.generation,
            nodes = p.nodes,
            parse = ?p.parse,
            compile = ?p.compile,
            "SIGHUP: snapshot reloaded"
        ),
        Err(ReloadError::Publish(PublishError::Invalid(problems))) => {
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
