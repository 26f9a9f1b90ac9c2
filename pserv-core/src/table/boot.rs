//! Boot intent and the per-node boot configurations (issue 11), compiled with the table.
//!
//! A snapshot's `boot_profiles` and `boot_templates` become one [`BootPlan`]: every template
//! (each profile's command line, each loader's netboot form, the fixed local-boot forms) is
//! compiled once, at publish, into a strict environment (an undefined variable is an error,
//! never an empty string) with fuel, so a template cannot loop forever. The compiler renders
//! every template for every node it applies to, so a push whose template fails for any node
//! is rejected whole. At request time [`crate::Table::render_boot`] renders one node's file
//! from the compiled templates: CPU only, nothing to wait on.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};
use serde::Serialize;

use crate::MacAddr;
use crate::snapshot::{BootMode, BootProfile};

/// A boot loader pserv renders configuration for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loader {
    /// The per-node iPXE script (HTTP `/ipxe/<mac>`).
    Ipxe,
    /// GRUB's `grub/grub.cfg-01-<mac>` (and `grub/grub.cfg-<mac>`).
    Grub,
    /// pxelinux's `pxelinux.cfg/01-<mac>`.
    Pxelinux,
}

impl Loader {
    /// Every loader.
    pub const ALL: [Self; 3] = [Self::Ipxe, Self::Grub, Self::Pxelinux];

    /// The loader's name (events, metrics, template keys).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ipxe => "ipxe",
            Self::Grub => "grub",
            Self::Pxelinux => "pxelinux",
        }
    }

    fn netboot_template(self) -> &'static str {
        match self {
            Self::Ipxe => "netboot/ipxe",
            Self::Grub => "netboot/grub",
            Self::Pxelinux => "netboot/pxelinux",
        }
    }

    fn local_template(self) -> &'static str {
        match self {
            Self::Ipxe => "local/ipxe",
            Self::Grub => "local/grub",
            Self::Pxelinux => "local/pxelinux",
        }
    }
}

/// What a client is to be given at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Intent {
    /// No boot intent: only the explicit boot files of the snapshot, as before profiles.
    #[default]
    Legacy,
    /// Netboot this profile (an index into the plan's profiles).
    Netboot(u32),
    /// Boot from the local disk.
    Local,
    /// No boot fields at all.
    Ignore,
}

impl Intent {
    /// Whether pserv renders configuration for this client (and its default chain applies).
    pub fn renders(self) -> bool {
        matches!(self, Self::Netboot(_) | Self::Local)
    }
}

/// One compiled profile.
#[derive(Debug)]
pub(crate) struct Profile {
    pub(crate) name: Box<str>,
    kernel: Box<str>,
    initrd: Vec<Box<str>>,
    vars: BTreeMap<String, String>,
    /// Its node files' names, sorted (their templates are `file/<profile>/<name>`).
    files: Vec<Box<str>>,
}

/// Every boot template of one snapshot, compiled. See the module docs.
#[derive(Debug)]
pub struct BootPlan {
    env: Environment<'static>,
    pub(crate) profiles: Vec<Profile>,
    /// Which loaders' netboot templates the snapshot overrides (indexed like
    /// [`Loader::ALL`]); the others are pserv's own.
    overridden: [bool; 3],
}

/// Where the client reached pserv: the address and HTTP port its URLs name, and the syslog
/// receiver it is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The server address (the subnet's `next_server`, else the address the request reached:
    /// IPv6 for a machine that asked over IPv6).
    pub server: IpAddr,
    /// The HTTP boot port.
    pub http_port: u16,
    /// The syslog receiver, when one runs; an unspecified address means `server` (the address
    /// the machine reached pserv at).
    pub syslog: Option<std::net::SocketAddr>,
}

/// Who a configuration is rendered for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) id: &'a str,
    pub(crate) hostname: &'a str,
    pub(crate) domain: &'a str,
    pub(crate) fqdn: &'a str,
    pub(crate) mac: MacAddr,
    pub(crate) ipv4: Option<Ipv4Addr>,
    pub(crate) ipv6: Option<Ipv6Addr>,
    pub(crate) vars: Option<&'a BTreeMap<String, String>>,
    /// The subnet it asked in: its `cidr`, `domain` and first router.
    pub(crate) subnet: Option<SubnetOf<'a>>,
}

/// The subnet a machine asked in, of either family.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SubnetOf<'a> {
    V4(&'a super::SubnetInfo),
    V6(&'a super::SubnetInfo6),
}

impl SubnetOf<'_> {
    fn cidr(&self) -> &str {
        match self {
            Self::V4(s) => &s.cidr,
            Self::V6(s) => &s.cidr,
        }
    }
    fn domain(&self) -> &str {
        match self {
            Self::V4(s) => s.domain.as_deref(),
            Self::V6(s) => s.domain.as_deref(),
        }
        .unwrap_or("")
    }
    /// The first router (IPv6 routers announce themselves: none).
    fn router(&self) -> String {
        match self {
            Self::V4(s) => s
                .routers
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            Self::V6(_) => String::new(),
        }
    }
}

/// `ip` as a URL's host: an IPv6 address in brackets (RFC 3986).
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// A rendered configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The file's text.
    pub text: String,
    /// `netboot` or `local`.
    pub mode: BootMode,
    /// The profile rendered (netboot only).
    pub profile: Option<String>,
    /// The node's id (`None` for an unknown client).
    pub node: Option<String>,
}

/// A rendered node file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// The file's text.
    pub text: String,
    /// The profile it belongs to.
    pub profile: String,
    /// The node's id (`None` for an unknown client).
    pub node: Option<String>,
}

/// Why no configuration was rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// Nothing to render for this MAC: no profile, not `local`, or `ignore` (for a node file:
    /// no profile, or no file by that name in it).
    #[error("nothing to render for this machine")]
    NoIntent,
    /// The template failed (validation rendered it for this node, so this is rare: a filter
    /// that fails only on a request-time value such as the client's address).
    #[error("rendering failed: {0}")]
    Failed(String),
}

const NETBOOT_IPXE: &str = "#!ipxe
# pserv: {{ node.fqdn or node.mac }} netboots profile {{ profile }}
kernel {{ kernel_url }}{% for n in initrd_names %} initrd={{ n }}{% endfor %} {{ cmdline }}
{% for url in initrd_urls %}initrd {{ url }}
{% endfor %}boot
";

const NETBOOT_GRUB: &str = "# pserv: {{ node.fqdn or node.mac }} netboots profile {{ profile }}
set default=0
set timeout=0
menuentry 'pserv {{ profile }}' {
{% if kernel_grub_http %}  if linux {{ kernel_grub_http }} {{ cmdline }}; then
{% if initrd_grub_http %}    initrd {{ initrd_grub_http | join(' ') }}
{% endif %}  else
    linux {{ kernel_grub }} {{ cmdline }}
{% if initrd_grub %}    initrd {{ initrd_grub | join(' ') }}
{% endif %}  fi
{% else %}  linux {{ kernel_grub }} {{ cmdline }}
{% if initrd_grub %}  initrd {{ initrd_grub | join(' ') }}
{% endif %}{% endif %}}
";

const NETBOOT_PXELINUX: &str = "# pserv: {{ node.fqdn or node.mac }} netboots profile {{ profile }}
DEFAULT pserv
PROMPT 0
TIMEOUT 0
LABEL pserv
  KERNEL {{ kernel_path }}
{% if initrd_paths %}  INITRD {{ initrd_paths | join(',') }}
{% endif %}  APPEND {{ cmdline }}
";

const LOCAL_IPXE: &str = "#!ipxe
# pserv: {{ node.fqdn or node.mac }} boots from its local disk
iseq ${platform} efi && goto exit ||
sanboot --no-describe --drive 0x80 ||
:exit
exit
";

const LOCAL_GRUB: &str = "# pserv: {{ node.fqdn or node.mac }} boots from its local disk
set timeout=0
if [ \"${grub_cpu}\" = \"arm64\" ]; then set pserv_efi=/EFI/BOOT/BOOTAA64.EFI; else set pserv_efi=/EFI/BOOT/BOOTX64.EFI; fi
if search --no-floppy --file --set=pserv_esp ${pserv_efi}; then
  chainloader (${pserv_esp})${pserv_efi}
  boot
fi
exit
";

const LOCAL_PXELINUX: &str = "# pserv: {{ node.fqdn or node.mac }} boots from its local disk
DEFAULT local
PROMPT 0
TIMEOUT 0
LABEL local
  LOCALBOOT 0
";

/// A template gets this much fuel per render (a plain config spends a few hundred).
const FUEL: u64 = 50_000;

/// What a profile's kernel and initrds look like to each loader.
#[derive(Serialize)]
struct Ctx<'a> {
    node: NodeCtx<'a>,
    subnet: SubnetCtx<'a>,
    vars: BTreeMap<&'a str, &'a str>,
    mode: &'static str,
    profile: &'a str,
    kernel: &'a str,
    kernel_url: String,
    kernel_path: String,
    kernel_grub: String,
    kernel_grub_http: String,
    initrd: Vec<&'a str>,
    initrd_urls: Vec<String>,
    initrd_paths: Vec<String>,
    initrd_grub: Vec<String>,
    initrd_grub_http: Vec<String>,
    initrd_names: Vec<&'a str>,
    server: String,
    boot_http: String,
    node_files_url: String,
    progress_url: String,
    syslog_host: String,
    syslog_port: String,
}

#[derive(Serialize)]
struct NodeCtx<'a> {
    id: &'a str,
    hostname: &'a str,
    domain: &'a str,
    fqdn: &'a str,
    mac: String,
    mac_hyphen: String,
    ipv4: String,
    ipv6: String,
}

#[derive(Serialize)]
struct SubnetCtx<'a> {
    cidr: &'a str,
    domain: &'a str,
    router: String,
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Why a kernel or initrd path cannot be served, if it cannot.
fn bad_path(v: &str) -> Option<&'static str> {
    if v.is_empty() {
        Some("is empty")
    } else if v.chars().any(char::is_control) {
        Some("has a control character")
    } else if v.chars().any(char::is_whitespace) {
        Some("has white space")
    } else if !is_url(v) && v.split(['/', '\\']).any(|c| c == "..") {
        Some("climbs out of the boot directory with ..")
    } else {
        None
    }
}

/// A kernel or initrd as GRUB names it: a boot-directory file as `/path`, read over TFTP
/// from the server GRUB booted from; an `http://host[:port]/path` URL as
/// `(http,host[:port])/path` (the port dropped when it is 80).
fn grub_path(s: &str) -> String {
    if let Some(rest) = s.strip_prefix("http://") {
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = host.strip_suffix(":80").unwrap_or(host);
        return format!("(http,{host})/{path}");
    }
    if is_url(s) {
        return s.to_owned();
    }
    format!("/{}", s.trim_start_matches('/'))
}

/// A boot-directory file over HTTP for GRUB, where GRUB can name pserv's listener: GRUB's
/// TFTP has no windowsize (a 40 MB initrd takes seconds), but GRUB 2.06 cannot name a port in
/// `(http,host)` (it always asks port 80), and Debian 12's signed GRUB has no HTTP at all. So
/// when HTTP boot listens on port 80 the configuration tries `(http,<server>)/path` first and
/// falls back to TFTP; otherwise (and for URLs, already HTTP) there is only one form.
/// GRUB names an IPv6 server bare (`(http,2001:db8::1)`): its device parser takes everything
/// after the comma as the host.
fn grub_http(s: &str, server: IpAddr, http_port: u16) -> Option<String> {
    (http_port == 80 && !is_url(s))
        .then(|| format!("(http,{server})/{}", s.trim_start_matches('/')))
}

impl BootPlan {
    /// The plan of a snapshot without profiles: only the local-boot forms.
    pub(crate) fn empty() -> Self {
        Self::compile(&BTreeMap::new(), &Default::default()).0
    }

    /// Compiles profiles and templates, with every problem found.
    pub(crate) fn compile(
        profiles: &BTreeMap<String, BootProfile>,
        templates: &crate::snapshot::BootTemplates,
    ) -> (Self, Vec<TemplateProblem>) {
        let mut found = Vec::new();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_keep_trailing_newline(true);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(64);
        for (loader, own) in [
            (Loader::Ipxe, &templates.ipxe),
            (Loader::Grub, &templates.grub),
            (Loader::Pxelinux, &templates.pxelinux),
        ] {
            let builtin = match loader {
                Loader::Ipxe => NETBOOT_IPXE,
                Loader::Grub => NETBOOT_GRUB,
                Loader::Pxelinux => NETBOOT_PXELINUX,
            };
            let source = own.clone().unwrap_or_else(|| builtin.to_owned());
            if let Err(e) = env.add_template_owned(loader.netboot_template(), source) {
                found.push(TemplateProblem {
                    template: loader.name(),
                    field: format!("boot_templates.{}", loader.name()),
                    ..TemplateProblem::of(String::new(), &e)
                });
            }
        }
        for (loader, source) in [
            (Loader::Ipxe, LOCAL_IPXE),
            (Loader::Grub, LOCAL_GRUB),
            (Loader::Pxelinux, LOCAL_PXELINUX),
        ] {
            // Built in, and a unit test compiles them: cannot fail.
            if let Err(e) = env.add_template(loader.local_template(), source) {
                tracing::error!(error = %e, "built-in local boot template");
            }
        }
        let mut out = Vec::with_capacity(profiles.len());
        for (i, (name, p)) in profiles.iter().enumerate() {
            let field = |f: &str| format!("boot_profiles.{name}.{f}");
            let problem = |template, field, message| TemplateProblem {
                profile: name.clone(),
                template,
                field,
                message,
                file: None,
                line: None,
            };
            for (what, v) in std::iter::once((field("kernel"), &p.kernel)).chain(
                p.initrd
                    .iter()
                    .enumerate()
                    .map(|(k, f)| (field(&format!("initrd[{k}]")), f)),
            ) {
                if let Some(why) = bad_path(v) {
                    found.push(problem("path", what, format!("{v:?} {why}")));
                }
            }
            if name.is_empty() || name.chars().any(|c| c.is_control() || c == '/') {
                found.push(problem(
                    "name",
                    "boot_profiles".to_owned(),
                    "a profile name must be non-empty, without '/' or control characters"
                        .to_owned(),
                ));
            }
            if let Err(e) = env.add_template_owned(format!("cmdline/{i}"), p.cmdline.clone()) {
                found.push(problem("cmdline", field("cmdline"), error_text(&e)));
            }
            let mut files = Vec::with_capacity(p.node_files.len());
            for (file, source) in &p.node_files {
                let at = field(&format!("node_files.{file}"));
                if let Some(why) = bad_file_name(file) {
                    found.push(TemplateProblem {
                        file: Some(file.clone()),
                        ..problem("node_file", at, format!("the name {file:?} {why}"))
                    });
                } else if let Err(e) =
                    env.add_template_owned(file_template(i, file), source.clone())
                {
                    found.push(TemplateProblem {
                        template: "node_file",
                        field: at,
                        file: Some(file.clone()),
                        ..TemplateProblem::of(name.clone(), &e)
                    });
                } else {
                    files.push(file.as_str().into());
                }
            }
            out.push(Profile {
                name: name.as_str().into(),
                kernel: p.kernel.as_str().into(),
                initrd: p.initrd.iter().map(|s| s.as_str().into()).collect(),
                vars: p.vars.clone(),
                files,
            });
        }
        let overridden = [
            templates.ipxe.is_some(),
            templates.grub.is_some(),
            templates.pxelinux.is_some(),
        ];
        (
            Self {
                env,
                profiles: out,
                overridden,
            },
            found,
        )
    }

    /// The index of the profile called `name`.
    pub fn profile_index(&self, name: &str) -> Option<u32> {
        // Profiles come from a BTreeMap: sorted by name.
        self.profiles
            .binary_search_by(|p| (*p.name).cmp(name))
            .ok()
            .map(|i| i as u32)
    }

    /// The name of profile `i`.
    pub fn profile_name(&self, i: u32) -> Option<&str> {
        self.profiles.get(i as usize).map(|p| &*p.name)
    }

    /// The names of profile `i`'s node files, sorted.
    pub fn node_files(&self, i: u32) -> &[Box<str>] {
        self.profiles.get(i as usize).map_or(&[], |p| &p.files)
    }

    /// Whether profile `i` has a node file called `name`.
    pub fn has_node_file(&self, i: u32, name: &str) -> bool {
        self.node_files(i)
            .binary_search_by(|f| (**f).cmp(name))
            .is_ok()
    }

    /// Renders `loader`'s file for `who` under `intent`. Errors carry the template's name.
    pub(crate) fn render(
        &self,
        loader: Loader,
        intent: Intent,
        who: &Subject<'_>,
        at: Endpoint,
    ) -> Result<Rendered, (&'static str, String)> {
        let ctx = self.prepare(intent, None, who, at)?;
        self.render_loader(loader, &ctx, who)
    }

    /// Renders profile `profile`'s node file `name` for `who` (whose boot is `intent`).
    /// `Ok(None)`: the profile has no such file.
    pub(crate) fn render_file(
        &self,
        profile: u32,
        name: &str,
        intent: Intent,
        who: &Subject<'_>,
        at: Endpoint,
    ) -> Result<Option<RenderedFile>, (&'static str, String)> {
        if !self.has_node_file(profile, name) {
            return Ok(None);
        }
        let ctx = self.prepare(intent, Some(profile), who, at)?;
        let text = self
            .render_template(&file_template(profile as usize, name), &ctx.value)
            .map_err(|e| ("node_file", error_text(&e)))?;
        Ok(Some(RenderedFile {
            text,
            profile: self.profile_name(profile).unwrap_or("").to_owned(),
            node: (!who.id.is_empty()).then(|| who.id.to_owned()),
        }))
    }

    /// Everything that fails for `who`, whose boot is `intent` and whose node files come from
    /// `files` (what validation runs for every node): the command line, each loader's file
    /// when `intent` renders, each node file, rendered and format-checked. Builds the context
    /// once.
    ///
    /// pserv's own loader templates are rendered only when `first` (the first node of its
    /// profile and mode): they read only variables every node has, and the work they do (their
    /// fuel) depends on the profile's initrd list, never on a node's values, so they fail for
    /// every node of a profile or for none. A snapshot's own templates, the command line and
    /// the node files may use anything, and are rendered for every node.
    pub(crate) fn check(
        &self,
        intent: Intent,
        files: Option<u32>,
        who: &Subject<'_>,
        at: Endpoint,
        first: bool,
    ) -> Vec<Failure> {
        let ctx = match self.prepare(intent, files, who, at) {
            Ok(c) => c,
            // The command line is shared by every loader and file: reported once.
            Err((template, message)) => {
                return vec![Failure {
                    template,
                    message,
                    file: None,
                    line: None,
                }];
            }
        };
        let mut out = Vec::new();
        if intent.renders() {
            for (k, loader) in Loader::ALL.into_iter().enumerate() {
                let own = self.overridden[k] && ctx.mode == BootMode::Netboot;
                if !(own || first) {
                    continue;
                }
                if let Err((template, message)) = self.render_loader(loader, &ctx, who) {
                    out.push(Failure {
                        template,
                        message,
                        file: None,
                        line: None,
                    });
                }
            }
        }
        let Some(p) = files.or(ctx.profile) else {
            return out;
        };
        for name in self.node_files(p) {
            let failure = |message, line| Failure {
                template: "node_file",
                message,
                file: Some(name.to_string()),
                line,
            };
            match self.render_template(&file_template(p as usize, name), &ctx.value) {
                Err(e) => out.push(failure(engine_message(&e), e.line())),
                Ok(text) => {
                    if let Err((message, line)) = check_format(name, &text) {
                        out.push(failure(message, line));
                    }
                }
            }
        }
        out
    }

    /// The context every template of one machine renders with: the command line rendered
    /// first (when a profile applies) and put in it. `files` names the profile whose node
    /// files are being rendered, when `intent` does not (a `local` node's files).
    fn prepare(
        &self,
        intent: Intent,
        files: Option<u32>,
        who: &Subject<'_>,
        at: Endpoint,
    ) -> Result<Prepared<'_>, (&'static str, String)> {
        let (mode, index) = match intent {
            Intent::Netboot(p) => (BootMode::Netboot, Some(p)),
            Intent::Local => (BootMode::Local, files),
            Intent::Ignore => (BootMode::Ignore, files),
            Intent::Legacy => (BootMode::Netboot, files),
        };
        let profile = match index {
            Some(p) => match self.profiles.get(p as usize) {
                Some(p) => Some(p),
                None => return Err(("profile", "no such profile".to_owned())),
            },
            None => None,
        };
        let base = format!("http://{}:{}", url_host(at.server), at.http_port);
        let url = |s: &str| {
            if is_url(s) {
                s.to_owned()
            } else {
                format!("{base}/{}", s.trim_start_matches('/'))
            }
        };
        let path = |s: &str| {
            if is_url(s) {
                s.to_owned()
            } else {
                format!("/{}", s.trim_start_matches('/'))
            }
        };
        let mut vars: BTreeMap<&str, &str> = BTreeMap::new();
        if let Some(p) = profile {
            vars.extend(p.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        if let Some(v) = who.vars {
            vars.extend(v.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let initrd: Vec<&str> =
            profile.map_or(Vec::new(), |p| p.initrd.iter().map(|s| &**s).collect());
        let kernel = profile.map_or("", |p| &p.kernel);
        let mac_hyphen = who.mac.to_string().replace(':', "-");
        let node_files_url = format!("{base}/nodes/{mac_hyphen}/");
        let (syslog_host, syslog_port) = match at.syslog {
            Some(sa) if sa.ip().is_unspecified() => (at.server.to_string(), sa.port().to_string()),
            Some(sa) => (sa.ip().to_string(), sa.port().to_string()),
            None => (String::new(), String::new()),
        };
        let ctx = Ctx {
            node: NodeCtx {
                id: who.id,
                hostname: who.hostname,
                domain: who.domain,
                fqdn: who.fqdn,
                mac: who.mac.to_string(),
                mac_hyphen,
                ipv4: who.ipv4.map(|ip| ip.to_string()).unwrap_or_default(),
                ipv6: who.ipv6.map(|ip| ip.to_string()).unwrap_or_default(),
            },
            subnet: SubnetCtx {
                cidr: who.subnet.as_ref().map_or("", SubnetOf::cidr),
                domain: who.subnet.as_ref().map_or("", SubnetOf::domain),
                router: who
                    .subnet
                    .as_ref()
                    .map(SubnetOf::router)
                    .unwrap_or_default(),
            },
            vars,
            mode: mode.name(),
            profile: profile.map_or("", |p| &p.name),
            kernel,
            kernel_url: if kernel.is_empty() {
                String::new()
            } else {
                url(kernel)
            },
            kernel_path: if kernel.is_empty() {
                String::new()
            } else {
                path(kernel)
            },
            kernel_grub: if kernel.is_empty() {
                String::new()
            } else {
                grub_path(kernel)
            },
            kernel_grub_http: if kernel.is_empty() {
                String::new()
            } else {
                grub_http(kernel, at.server, at.http_port).unwrap_or_default()
            },
            initrd_urls: initrd.iter().map(|s| url(s)).collect(),
            initrd_paths: initrd.iter().map(|s| path(s)).collect(),
            initrd_grub: initrd.iter().map(|s| grub_path(s)).collect(),
            // Each over HTTP where it can be, as the kernel in that branch is.
            initrd_grub_http: initrd
                .iter()
                .map(|s| grub_http(s, at.server, at.http_port).unwrap_or_else(|| grub_path(s)))
                .collect(),
            initrd_names: initrd
                .iter()
                .map(|s| s.rsplit(['/', '\\']).next().unwrap_or(s))
                .collect(),
            initrd,
            server: at.server.to_string(),
            progress_url: format!("{node_files_url}progress"),
            node_files_url,
            boot_http: base,
            syslog_host,
            syslog_port,
        };
        // One conversion to the engine's values: every template of this machine reads it.
        let without = Value::from_serialize(&ctx);
        let cmdline = match index {
            Some(i) => {
                let mut line = self
                    .render_template(
                        &format!("cmdline/{i}"),
                        &context! { cmdline => "", ..without.clone() },
                    )
                    .map_err(|e| ("cmdline", error_text(&e)))?;
                // One line: a template's stray newline must not end the loader's directive.
                if line.contains(['\n', '\r']) {
                    line = line.split_whitespace().collect::<Vec<_>>().join(" ");
                }
                line
            }
            None => String::new(),
        };
        Ok(Prepared {
            value: context! { cmdline => cmdline, ..without },
            mode,
            profile: index,
            netboot: match intent {
                Intent::Netboot(_) => profile,
                _ => None,
            },
        })
    }

    fn render_template(&self, name: &str, ctx: &Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name).and_then(|t| t.render(ctx))
    }

    fn render_loader(
        &self,
        loader: Loader,
        ctx: &Prepared<'_>,
        who: &Subject<'_>,
    ) -> Result<Rendered, (&'static str, String)> {
        let template = match ctx.mode {
            BootMode::Local => loader.local_template(),
            BootMode::Netboot if ctx.netboot.is_some() => loader.netboot_template(),
            _ => return Err(("mode", "nothing to render".to_owned())),
        };
        let text = self
            .render_template(template, &ctx.value)
            .map_err(|e| (loader.name(), error_text(&e)))?;
        Ok(Rendered {
            text,
            mode: ctx.mode,
            profile: ctx.netboot.map(|p| p.name.to_string()),
            node: (!who.id.is_empty()).then(|| who.id.to_owned()),
        })
    }
}

/// One machine's templates, ready to render.
struct Prepared<'p> {
    value: Value,
    mode: BootMode,
    /// The profile in the context (netboot's, or the one whose files are rendered).
    profile: Option<u32>,
    /// The profile netbooted, for netboot only.
    netboot: Option<&'p Profile>,
}

/// One template that failed for one machine, found by [`BootPlan::check`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) template: &'static str,
    pub(crate) message: String,
    /// The node file, for a node file's failure.
    pub(crate) file: Option<String>,
    /// The line in the template or in the rendered file.
    pub(crate) line: Option<usize>,
}

fn file_template(profile: usize, name: &str) -> String {
    format!("file/{profile}/{name}")
}

/// Why a node file's name cannot be served, if it cannot.
fn bad_file_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may hold only A-Z, a-z, 0-9, '.', '_' and '-'")
    } else if name == "." || name == ".." {
        Some("is not a file name")
    } else if name == "progress" {
        Some("is the progress endpoint's")
    } else {
        None
    }
}

/// The format a node file's name (and, for `user-data`, its first line) says it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Yaml,
    Json,
}

/// What format `name`, rendered as `text`, must be in: cloud-init's `meta-data` and
/// `network-config`, and a `user-data` that is cloud-config, are YAML; `.json` and `.ign`
/// (Ignition) are JSON. Anything else is free text (a preseed, a kickstart, a script).
pub(crate) fn format_of(name: &str, text: &str) -> Option<Format> {
    if name.ends_with(".json") || name.ends_with(".ign") {
        Some(Format::Json)
    } else if name == "meta-data"
        || name == "network-config"
        || (name == "user-data" && text.starts_with("#cloud-config"))
        || name.ends_with(".yaml")
        || name.ends_with(".yml")
    {
        Some(Format::Yaml)
    } else {
        None
    }
}

/// Checks a rendered node file against the format its name says; the error's line is
/// 1-based, in the rendered text.
pub(crate) fn check_format(name: &str, text: &str) -> Result<(), (String, Option<usize>)> {
    match format_of(name, text) {
        None => Ok(()),
        Some(Format::Json) => serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map(drop)
            .map_err(|e| (format!("not valid JSON: {e}"), Some(e.line()))),
        Some(Format::Yaml) => {
            let mut parser = yaml_rust2::parser::Parser::new_from_str(text);
            loop {
                match parser.next_token() {
                    Ok((yaml_rust2::Event::StreamEnd, _)) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => {
                        return Err((
                            format!("not valid YAML: {}", e.info()),
                            Some(e.marker().line()),
                        ));
                    }
                }
            }
        }
    }
}

/// The engine's error without its internal template name (the line is reported apart).
fn engine_message(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// The error and where in the template, in one line.
fn error_text(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}

/// A problem found compiling the plan, before it becomes a [`crate::Problem`].
#[derive(Debug)]
pub(crate) struct TemplateProblem {
    pub(crate) profile: String,
    pub(crate) template: &'static str,
    pub(crate) field: String,
    pub(crate) message: String,
    /// The node file, for a node file's problem.
    pub(crate) file: Option<String>,
    /// The line in the template.
    pub(crate) line: Option<usize>,
}

impl TemplateProblem {
    /// A template of `profile` that does not compile (template and field to be filled in).
    fn of(profile: String, e: &minijinja::Error) -> Self {
        Self {
            profile,
            template: "",
            field: String::new(),
            message: engine_message(e),
            file: None,
            line: e.line(),
        }
    }
}
