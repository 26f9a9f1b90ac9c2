//! The TOML configuration file, and the flags that override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the configuration's shape.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A setting, or a combination of them, that pserv refuses.
    #[error("{0}")]
    Invalid(String),
}

macro_rules! bail {
    ($($t:tt)*) => {
        return Err(ConfigError::Invalid(format!($($t)*)))
    };
}

/// Default DNS address: loopback, an unprivileged port.
pub const DEFAULT_DNS: &str = "127.0.0.1:5353";
/// Default DHCP address: loopback, an unprivileged port (replies go back to the sender).
pub const DEFAULT_DHCP: &str = "127.0.0.1:6767";
/// The default DHCPv6 address: loopback, an unprivileged port (on a network: `[::]:547`).
pub const DEFAULT_DHCP6: &str = "[::1]:6547";
/// Default control API address: loopback only.
pub const DEFAULT_CONTROL: &str = "127.0.0.1:5380";
/// Default TFTP address (served only with a boot directory): loopback, an unprivileged port.
/// On a provisioning network: `0.0.0.0:69`.
pub const DEFAULT_TFTP: &str = "127.0.0.1:6969";
/// Default HTTP boot address (served only with a boot directory): loopback. On a network, a
/// port of the operator's choosing (MAAS uses 5248).
pub const DEFAULT_BOOT_HTTP: &str = "127.0.0.1:5248";
/// Default syslog receiver address (served only with boot serving): loopback, an unprivileged
/// port. On a provisioning network: `0.0.0.0:514`.
pub const DEFAULT_SYSLOG: &str = "127.0.0.1:5514";
/// Default snapshot body limit: a million-node snapshot fits.
pub const DEFAULT_MAX_BODY: usize = 256 << 20;
/// Default bound of the `/v1/events` replay buffer, in events: what a listener that reconnects
/// can still resume (about 2 MB of boot and lease events).
pub const DEFAULT_EVENTS_BUFFER: usize = 10_000;
/// Default bound of the `/v1/events` replay buffer, in bytes: it holds this much at most, even
/// of large events (syslog lines), whatever `events_buffer` allows.
pub const DEFAULT_EVENTS_BUFFER_BYTES: usize = 16 << 20;

/// The configuration file (`pserv serve --config FILE`). Every field is optional; unknown
/// fields are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Snapshot file served at start and reloaded on SIGHUP.
    pub snapshot: Option<PathBuf>,
    /// DNS addresses (UDP and TCP).
    pub dns_listen: Option<Vec<SocketAddr>>,
    /// Control API address.
    pub control_listen: Option<SocketAddr>,
    /// DHCP address (`0.0.0.0:67` on a provisioning network).
    pub dhcp_listen: Option<SocketAddr>,
    /// Serve DHCP on this interface only.
    pub dhcp_interface: Option<String>,
    /// DHCPv6 address (`[::]:547` on a provisioning network); `"off"` is not an address: leave
    /// it out and set `dhcp6 = false` to turn DHCPv6 off.
    pub dhcp6_listen: Option<SocketAddr>,
    /// Whether DHCPv6 runs (default: yes).
    pub dhcp6: Option<bool>,
    /// The PXE boot server (UDP 4011) for proxyDHCP subnets.
    pub pxe_listen: Option<SocketAddr>,
    /// Ignore RFC 3527 link selection from every relay (Kea's
    /// `compatibility.ignore-rai-link-selection`), for relays whose address is in no subnet.
    pub dhcp_ignore_link_selection: Option<bool>,
    /// Where the lease journal lives.
    pub state_dir: Option<PathBuf>,
    /// Read-only directory of boot files, served over TFTP.
    pub boot_dir: Option<PathBuf>,
    /// TFTP address (with a boot directory).
    pub tftp_listen: Option<SocketAddr>,
    /// HTTP boot address (with a boot directory).
    pub boot_http_listen: Option<SocketAddr>,
    /// Syslog receiver address (with boot serving).
    pub syslog_listen: Option<SocketAddr>,
    /// Syslog messages per second each sender may send, sustained (default 200).
    pub syslog_rate: Option<u32>,
    /// Syslog messages each sender may send at once (default 2,000).
    pub syslog_burst: Option<u32>,
    /// Bearer token the control API requires (required off loopback).
    pub token: Option<String>,
    /// Largest snapshot body accepted, in bytes.
    pub max_body_bytes: Option<usize>,
    /// DNS-over-TCP connections open at once (per address).
    pub dns_tcp_max_connections: Option<usize>,
    /// Seconds a DNS-over-TCP client gets to send a query (from its first byte) or to read an
    /// answer.
    pub dns_tcp_idle_seconds: Option<u64>,
    /// Events the `/v1/events` replay buffer keeps at most (what a reconnecting listener can
    /// resume).
    pub events_buffer: Option<usize>,
    /// Bytes the `/v1/events` replay buffer keeps at most.
    pub events_buffer_bytes: Option<usize>,
    /// Cluster mode (`[cluster]`): dynamic leases shared with other instances on etcd.
    pub cluster: Option<ClusterFile>,
    /// `text` (default) or `json`: one object per line.
    pub log_format: Option<LogFormat>,
    /// Log every DHCP decision and boot request (the `pserv::dhcp` and `pserv::boot` targets
    /// at debug).
    pub log_dhcp: Option<bool>,
    /// Started as root: the user to run as once every socket is bound.
    pub user: Option<String>,
}

/// How the log is written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// The `[cluster]` table of the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// etcd client URLs.
    pub etcd: Option<Vec<String>>,
    /// The cluster's name (instances with one name share leases); default `default`.
    pub name: Option<String>,
    /// This instance's name, unique in the cluster.
    pub instance: Option<String>,
    /// Heartbeat TTL in seconds (default 3): how soon survivors take over a dead instance.
    pub ttl_seconds: Option<u64>,
    /// Addresses per etcd transaction at most (default 128, etcd's `--max-txn-ops`).
    pub max_txn_ops: Option<usize>,
}

/// Cluster mode, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// The cluster's name.
    pub name: String,
    /// This instance's name.
    pub instance: String,
    /// Heartbeat TTL.
    pub ttl: std::time::Duration,
    /// Addresses per transaction at most.
    pub max_txn_ops: usize,
}

impl File {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }
}

/// The settings `serve` runs with: file values overridden by flags, defaults filled in.
#[derive(Debug, Clone)]
pub struct Config {
    /// Snapshot file, or `None` for the bundled example.
    pub snapshot: Option<PathBuf>,
    /// DNS addresses.
    pub dns_listen: Vec<SocketAddr>,
    /// Control API address.
    pub control_listen: SocketAddr,
    /// DHCP address.
    pub dhcp_listen: SocketAddr,
    /// DHCP interface.
    pub dhcp_interface: Option<String>,
    /// DHCPv6 address; `None`: DHCPv6 off.
    pub dhcp6_listen: Option<SocketAddr>,
    /// Whether `dhcp6_listen` is the default (a default that cannot bind, on a host without
    /// IPv6, is skipped with a warning; a configured one fails the start).
    pub dhcp6_default: bool,
    /// The PXE boot server's address (proxyDHCP, UDP 4011); `None`: not run.
    pub pxe_listen: Option<SocketAddr>,
    /// RFC 3527 link selection ignored from every relay.
    pub dhcp_ignore_link_selection: bool,
    /// Lease journal directory (`None`: a directory of this process under the temp dir).
    pub state_dir: Option<PathBuf>,
    /// Boot files served over TFTP; `None`: no TFTP.
    pub boot_dir: Option<PathBuf>,
    /// TFTP address (with a boot directory).
    pub tftp_listen: SocketAddr,
    /// HTTP boot address (with a boot directory).
    pub boot_http_listen: SocketAddr,
    /// Syslog receiver address (with boot serving).
    pub syslog_listen: SocketAddr,
    /// The syslog receiver's per-sender rate limit.
    pub syslog_limits: pserv_syslog::Limits,
    /// Control API token.
    pub token: Option<String>,
    /// Snapshot body limit.
    pub max_body_bytes: usize,
    /// DNS-over-TCP limits.
    pub dns_tcp: pserv_dns::tcp::Limits,
    /// Events the `/v1/events` replay buffer keeps at most.
    pub events_buffer: usize,
    /// Bytes the `/v1/events` replay buffer keeps at most.
    pub events_buffer_bytes: usize,
    /// Cluster mode; `None`: leases in the local journal (the default).
    pub cluster: Option<Cluster>,
    /// The log's format (the embedding program sets up logging; the `pserv` binary reads it).
    pub log_format: LogFormat,
    /// Log every DHCP decision and boot request (read by the binary, as `log_format`).
    pub log_dhcp: bool,
    /// The user to run as after binding, when started as root (read by the binary).
    pub user: Option<String>,
}

/// Flags of `pserv serve` that override the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Snapshot file served at start and reloaded on SIGHUP (default: the bundled example).
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// DNS address, UDP and TCP (repeatable) [default: 127.0.0.1:5353].
    #[arg(long)]
    pub dns_listen: Vec<SocketAddr>,
    /// Control API address [default: 127.0.0.1:5380].
    #[arg(long)]
    pub control_listen: Option<SocketAddr>,
    /// DHCP address [default: 127.0.0.1:6767; on a network: 0.0.0.0:67].
    #[arg(long)]
    pub dhcp_listen: Option<SocketAddr>,
    /// Serve DHCP on this interface only (SO_BINDTODEVICE; needs root or CAP_NET_RAW).
    #[arg(long)]
    pub dhcp_interface: Option<String>,
    /// DHCPv6 address [default: [::1]:6547; on a network: [::]:547, joining ff02::1:2 on the
    /// DHCP interface, or on every interface].
    #[arg(long)]
    pub dhcp6_listen: Option<SocketAddr>,
    /// Do not run DHCPv6.
    #[arg(long, conflicts_with = "dhcp6_listen")]
    pub no_dhcp6: bool,
    /// The PXE boot server for proxyDHCP subnets, UDP [default: the DHCP address's IP, port
    /// 4011, when DHCP is on port 67; else none].
    #[arg(long)]
    pub pxe_listen: Option<SocketAddr>,
    /// Ignore RFC 3527 link selection (option 82 sub-option 5) from every relay, not only
    /// from relays in a subnet with ignore_link_selection.
    #[arg(long)]
    pub dhcp_ignore_link_selection: bool,
    /// Directory of the lease journal.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Read-only directory of boot files, served over TFTP (no TFTP without it).
    #[arg(long)]
    pub boot_dir: Option<PathBuf>,
    /// TFTP address [default: 127.0.0.1:6969; on a network: 0.0.0.0:69].
    #[arg(long)]
    pub tftp_listen: Option<SocketAddr>,
    /// HTTP boot address, read only, no token [default: 127.0.0.1:5248].
    #[arg(long)]
    pub boot_http_listen: Option<SocketAddr>,
    /// Syslog receiver address, UDP (with boot serving) [default: 127.0.0.1:5514; on a network:
    /// 0.0.0.0:514].
    #[arg(long)]
    pub syslog_listen: Option<SocketAddr>,
    /// Bearer token the control API requires (required off loopback).
    #[arg(long, env = "PSERV_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Cluster mode: an etcd client URL (repeat for each member); with --instance.
    #[arg(long = "etcd", value_name = "URL")]
    pub etcd: Vec<String>,
    /// Cluster mode: the cluster's name (instances with one name share leases).
    #[arg(long = "cluster", value_name = "NAME")]
    pub cluster: Option<String>,
    /// Cluster mode: this instance's name, unique in the cluster.
    #[arg(long = "instance", value_name = "NAME")]
    pub instance: Option<String>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log every DHCP request with the decision (reply and address, or the drop's reason),
    /// and every TFTP and HTTP boot request with how it ended.
    #[arg(long)]
    pub log_dhcp: bool,
    /// Started as root: run as this user once every socket is bound, with no capability left
    /// (the state directory is given to the user).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

impl Config {
    /// Merges the file and the flags, and checks what must hold before anything starts.
    pub fn resolve(file: File, flags: Overrides) -> Result<Self, ConfigError> {
        let cluster = Self::resolve_cluster(file.cluster.clone(), &flags)?;
        let parse = |s: &str| s.parse::<SocketAddr>().expect("a valid default address");
        let s = Self {
            snapshot: flags.snapshot.or(file.snapshot),
            dns_listen: if flags.dns_listen.is_empty() {
                file.dns_listen.unwrap_or_else(|| vec![parse(DEFAULT_DNS)])
            } else {
                flags.dns_listen
            },
            control_listen: flags
                .control_listen
                .or(file.control_listen)
                .unwrap_or_else(|| parse(DEFAULT_CONTROL)),
            dhcp_listen: flags
                .dhcp_listen
                .or(file.dhcp_listen)
                .unwrap_or_else(|| parse(DEFAULT_DHCP)),
            dhcp_interface: flags.dhcp_interface.or(file.dhcp_interface),
            dhcp6_listen: if flags.no_dhcp6
                || (flags.dhcp6_listen.is_none() && file.dhcp6 == Some(false))
            {
                None
            } else {
                Some(
                    flags
                        .dhcp6_listen
                        .or(file.dhcp6_listen)
                        .unwrap_or_else(|| parse(DEFAULT_DHCP6)),
                )
            },
            dhcp6_default: flags.dhcp6_listen.is_none() && file.dhcp6_listen.is_none(),
            dhcp_ignore_link_selection: flags.dhcp_ignore_link_selection
                || file.dhcp_ignore_link_selection.unwrap_or(false),
            pxe_listen: flags.pxe_listen.or(file.pxe_listen).or_else(|| {
                let dhcp = flags.dhcp_listen.or(file.dhcp_listen)?;
                (dhcp.port() == 67).then(|| SocketAddr::new(dhcp.ip(), 4011))
            }),
            state_dir: flags.state_dir.or(file.state_dir),
            boot_dir: flags.boot_dir.or(file.boot_dir),
            tftp_listen: flags
                .tftp_listen
                .or(file.tftp_listen)
                .unwrap_or_else(|| parse(DEFAULT_TFTP)),
            boot_http_listen: flags
                .boot_http_listen
                .or(file.boot_http_listen)
                .unwrap_or_else(|| parse(DEFAULT_BOOT_HTTP)),
            syslog_listen: flags
                .syslog_listen
                .or(file.syslog_listen)
                .unwrap_or_else(|| parse(DEFAULT_SYSLOG)),
            syslog_limits: {
                let d = pserv_syslog::DEFAULT_LIMITS;
                pserv_syslog::Limits {
                    rate: file.syslog_rate.map_or(d.rate, f64::from),
                    burst: file.syslog_burst.unwrap_or(d.burst),
                    ..d
                }
            },
            token: flags.token.or(file.token).filter(|t| !t.is_empty()),
            max_body_bytes: file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            dns_tcp: {
                let d = pserv_dns::tcp::Limits::default();
                pserv_dns::tcp::Limits {
                    max_connections: file.dns_tcp_max_connections.unwrap_or(d.max_connections),
                    idle: file
                        .dns_tcp_idle_seconds
                        .map_or(d.idle, std::time::Duration::from_secs),
                }
            },
            events_buffer: file.events_buffer.unwrap_or(DEFAULT_EVENTS_BUFFER),
            events_buffer_bytes: file
                .events_buffer_bytes
                .unwrap_or(DEFAULT_EVENTS_BUFFER_BYTES),
            cluster,
            log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
            log_dhcp: flags.log_dhcp || file.log_dhcp.unwrap_or(false),
            user: flags.user.or(file.user).filter(|u| !u.is_empty()),
        };
        if !s.control_listen.ip().is_loopback() && s.token.is_none() {
            bail!(
                "the control API would listen on {} without a token: set `token` in the config, \
                 --token, or PSERV_TOKEN (anyone who can reach it could replace every node)",
                s.control_listen
            );
        }
        Self::check_cluster(s.cluster.as_ref())?;
        if s.syslog_limits.rate < 1.0 || s.syslog_limits.burst == 0 {
            bail!("syslog_rate and syslog_burst must be at least 1 (0 would drop every message)");
        }
        if s.dns_listen.is_empty() {
            bail!("no DNS address to listen on");
        }
        if s.dns_tcp.max_connections == 0 {
            bail!("dns_tcp_max_connections = 0 would refuse every DNS-over-TCP client");
        }
        if s.dns_tcp.idle.is_zero() {
            bail!("dns_tcp_idle_seconds = 0 would close every DNS-over-TCP connection at once");
        }
        if s.events_buffer == 0 {
            bail!(
                "events_buffer = 0 would keep no event: /v1/events delivers through its buffer \
                 (keep at least 1)"
            );
        }
        Ok(s)
    }
}

impl Config {
    /// Cluster mode from the file's `[cluster]` and the flags: on when etcd endpoints are
    /// given (by either).
    fn resolve_cluster(
        file: Option<ClusterFile>,
        flags: &Overrides,
    ) -> Result<Option<Cluster>, ConfigError> {
        let file = file.unwrap_or_default();
        let endpoints = if flags.etcd.is_empty() {
            file.etcd.unwrap_or_default()
        } else {
            flags.etcd.clone()
        };
        let instance = flags.instance.clone().or(file.instance);
        let name = flags.cluster.clone().or(file.name);
        if endpoints.is_empty() {
            if instance.is_some() || name.is_some() {
                bail!("cluster mode needs etcd endpoints (`etcd` in [cluster], or --etcd)");
            }
            return Ok(None);
        }
        let Some(instance) = instance else {
            bail!(
                "cluster mode needs this instance's name (`instance` in [cluster], or --instance)"
            );
        };
        Ok(Some(Cluster {
            endpoints,
            name: name.unwrap_or_else(|| "default".to_owned()),
            instance,
            ttl: std::time::Duration::from_secs(file.ttl_seconds.unwrap_or(3)),
            max_txn_ops: file.max_txn_ops.unwrap_or(128),
        }))
    }

    fn check_cluster(c: Option<&Cluster>) -> Result<(), ConfigError> {
        let Some(c) = c else { return Ok(()) };
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !name_ok(&c.name) {
            bail!(
                "cluster name {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                c.name
            );
        }
        if !name_ok(&c.instance) {
            bail!(
                "instance name {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                c.instance
            );
        }
        for e in &c.endpoints {
            if !e.starts_with("http://") {
                bail!("etcd endpoint {e:?}: give an http:// URL (etcd's client URL)");
            }
        }
        if !(1..=60).contains(&c.ttl.as_secs()) {
            bail!("cluster ttl_seconds must be 1-60");
        }
        if c.max_txn_ops == 0 {
            bail!("cluster max_txn_ops must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_in() {
        let file: File = toml::from_str(
            "snapshot = \"/etc/pserv/s.json\"\ndns_listen = [\"127.0.0.1:53\"]\ntoken = \"t\"\n",
        )
        .unwrap();
        let s = Config::resolve(
            file,
            Overrides {
                dns_listen: vec!["127.0.0.2:5353".parse().unwrap()],
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(s.snapshot.unwrap(), PathBuf::from("/etc/pserv/s.json"));
        assert_eq!(s.dns_listen, ["127.0.0.2:5353".parse().unwrap()]);
        assert_eq!(s.control_listen, DEFAULT_CONTROL.parse().unwrap());
        assert_eq!(s.token.as_deref(), Some("t"));
        assert_eq!(s.max_body_bytes, DEFAULT_MAX_BODY);
    }

    #[test]
    fn refuses_an_open_control_api_without_a_token() {
        let e = Config::resolve(
            File::default(),
            Overrides {
                control_listen: Some("0.0.0.0:5380".parse().unwrap()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("without a token"), "{e}");
    }

    #[test]
    fn dns_tcp_limits_from_the_file_and_refused_when_zero() {
        let file: File =
            toml::from_str("dns_tcp_max_connections = 64\ndns_tcp_idle_seconds = 3\n").unwrap();
        let s = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(s.dns_tcp.max_connections, 64);
        assert_eq!(s.dns_tcp.idle, std::time::Duration::from_secs(3));
        let d = Config::resolve(File::default(), Overrides::default()).unwrap();
        assert_eq!(d.dns_tcp, pserv_dns::tcp::Limits::default());
        for bad in ["dns_tcp_max_connections = 0", "dns_tcp_idle_seconds = 0"] {
            let file: File = toml::from_str(bad).unwrap();
            let e = Config::resolve(file, Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(&bad[..bad.len() - 4]), "{e}");
        }
    }

    #[test]
    fn pxe_listen_and_link_selection_from_the_file_or_the_flags() {
        let d = Config::resolve(File::default(), Overrides::default()).unwrap();
        assert_eq!(
            d.pxe_listen, None,
            "no boot server beside DHCP on an unprivileged port"
        );
        assert!(!d.dhcp_ignore_link_selection);
        let on_67 = Overrides {
            dhcp_listen: Some("10.0.0.2:67".parse().unwrap()),
            ..Overrides::default()
        };
        let s = Config::resolve(File::default(), on_67).unwrap();
        assert_eq!(s.pxe_listen, Some("10.0.0.2:4011".parse().unwrap()));
        let file: File =
            toml::from_str("dhcp_ignore_link_selection = true\npxe_listen = \"127.0.0.1:14011\"\n")
                .unwrap();
        let s = Config::resolve(file, Overrides::default()).unwrap();
        assert!(s.dhcp_ignore_link_selection);
        assert_eq!(s.pxe_listen, Some("127.0.0.1:14011".parse().unwrap()));
        let flag = Overrides {
            dhcp_ignore_link_selection: true,
            ..Overrides::default()
        };
        assert!(
            Config::resolve(File::default(), flag)
                .unwrap()
                .dhcp_ignore_link_selection
        );
    }

    #[test]
    fn syslog_address_and_limits_from_the_file_and_refused_when_zero() {
        let d = Config::resolve(File::default(), Overrides::default()).unwrap();
        assert_eq!(d.syslog_listen, DEFAULT_SYSLOG.parse().unwrap());
        assert_eq!(d.syslog_limits, pserv_syslog::DEFAULT_LIMITS);
        let file: File = toml::from_str(
            "syslog_listen = \"0.0.0.0:514\"\nsyslog_rate = 50\nsyslog_burst = 500\n",
        )
        .unwrap();
        let s = Config::resolve(
            file,
            Overrides {
                syslog_listen: Some("10.0.0.1:1514".parse().unwrap()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(s.syslog_listen, "10.0.0.1:1514".parse().unwrap());
        assert_eq!((s.syslog_limits.rate, s.syslog_limits.burst), (50.0, 500));
        for bad in ["syslog_rate = 0", "syslog_burst = 0"] {
            let file: File = toml::from_str(bad).unwrap();
            let e = Config::resolve(file, Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("at least 1"), "{e}");
        }
    }

    #[test]
    fn the_event_buffer_bounds_from_the_file_and_refused_when_zero() {
        let d = Config::resolve(File::default(), Overrides::default()).unwrap();
        assert_eq!(
            (d.events_buffer, d.events_buffer_bytes),
            (DEFAULT_EVENTS_BUFFER, DEFAULT_EVENTS_BUFFER_BYTES)
        );
        let file: File =
            toml::from_str("events_buffer = 500\nevents_buffer_bytes = 1048576\n").unwrap();
        let s = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!((s.events_buffer, s.events_buffer_bytes), (500, 1 << 20));
        let file: File = toml::from_str("events_buffer = 0").unwrap();
        let e = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("events_buffer = 0"), "{e}");
    }

    #[test]
    fn the_example_config_parses_with_every_commented_key_enabled() {
        let text = include_str!("../../contrib/pserv.toml");
        let enabled: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains(" = "))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        for t in [text, enabled.as_str()] {
            toml::from_str::<File>(t).unwrap_or_else(|e| panic!("{e}\n{t}"));
        }
    }

    #[test]
    fn unknown_config_fields_are_errors() {
        let e = toml::from_str::<File>("dns_lisen = []").unwrap_err();
        assert!(e.to_string().contains("dns_lisen"), "{e}");
    }

    #[test]
    fn cluster_mode_from_file_or_flags() {
        let file: File = toml::from_str(
            "[cluster]\netcd = [\"http://10.0.0.1:2379\"]\ninstance = \"a\"\nttl_seconds = 5\n",
        )
        .unwrap();
        let c = Config::resolve(file, Overrides::default())
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(
            (
                c.endpoints.as_slice(),
                c.name.as_str(),
                c.instance.as_str(),
                c.ttl.as_secs()
            ),
            (&["http://10.0.0.1:2379".to_owned()][..], "default", "a", 5)
        );
        let flags = |etcd: &[&str], instance: Option<&str>| Overrides {
            etcd: etcd.iter().map(|s| (*s).to_owned()).collect(),
            instance: instance.map(str::to_owned),
            ..Overrides::default()
        };
        assert!(
            Config::resolve(File::default(), flags(&[], None))
                .unwrap()
                .cluster
                .is_none()
        );
        for (etcd, instance, why) in [
            (&["http://e:2379"][..], None, "instance"),
            (&[][..], Some("a"), "etcd endpoints"),
            (&["e:2379"][..], Some("a"), "http://"),
            (&["http://e:2379"][..], Some("a b"), "instance name"),
        ] {
            let e = Config::resolve(File::default(), flags(etcd, instance)).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
    }
}
