//! The boot fields of a reply: which file (by architecture, the node's over its subnet's, the
//! iPXE script for iPXE, pserv's own chain where nothing is named), and which next server.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, OptionCode};
use pserv_core::MacAddr;
use pserv_core::snapshot::Arch;
use pserv_core::table::{BootFiles, Intent, names};

use crate::server::Exchange;

/// pserv's own boot chain, offered when a subnet names no boot files and the client has
/// something to boot (a profile, or `local`): each architecture gets its iPXE binary over TFTP
/// ([`names::chain_file`]), iPXE its per-node script ([`names::ipxe_script_path`]), and UEFI
/// HTTP boot an http URL of the same iPXE binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootChain {
    /// The HTTP boot port the URLs name (the address is the subnet's `next_server`, else the
    /// address the request reached).
    pub http_port: u16,
}

/// The boot fields of one reply.
pub(crate) struct Boot<'t> {
    /// The boot file (`file` and option 67), if any.
    pub(crate) file: Option<Cow<'t, str>>,
    /// Whether it is an HTTP boot URL (the reply then carries option 60 "HTTPClient").
    pub(crate) http: bool,
    /// The next bootstrap server (`siaddr`, and option 66), or 0.
    pub(crate) siaddr: Ipv4Addr,
}

impl<'a> Exchange<'a> {
    /// The boot fields for this client. RFC 2131 Table 3: siaddr is the next bootstrap server
    /// whenever there is one (not only with a boot file), except for a machine told to ignore
    /// network boot, which gets no boot field at all and falls through to its next boot
    /// device.
    pub(crate) fn boot(&self) -> Boot<'a> {
        let intent = Intent::of(self.iface, Some(self.subnet));
        if intent == Intent::Ignore {
            return Boot {
                file: None,
                http: false,
                siaddr: Ipv4Addr::UNSPECIFIED,
            };
        }
        let configured = self.subnet.boot.as_ref().and_then(|b| b.next_server);
        let chain = self
            .chain
            .filter(|_| intent.renders())
            .map(|c| (c, configured.unwrap_or(self.server_id)));
        let next_server = chain
            .map(|(_, server)| server)
            .or(configured)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let (file, http) = boot_file(
            self.req.msg,
            self.req.mac,
            self.subnet.boot.as_ref().map(|b| &b.files),
            self.iface.and_then(|i| i.node().boot()),
            chain,
        );
        let siaddr = if file.is_none() && configured.is_none() {
            Ipv4Addr::UNSPECIFIED
        } else {
            next_server
        };
        Boot { file, http, siaddr }
    }
}

/// Whether the request comes from iPXE: user class "iPXE", or option 175 present.
pub(crate) fn is_ipxe(msg: &Message) -> bool {
    matches!(msg.opts().get(OptionCode::UserClass),
        Some(DhcpOption::UserClass(uc)) if uc.windows(4).any(|w| w == b"iPXE"))
        || msg.opts().get(OptionCode::Unknown(175)).is_some()
}

/// Picks the boot file: by client architecture (option 93), the node's own file over the
/// subnet's, and for iPXE (user class "iPXE", or option 175 present) the iPXE script URL
/// instead, so iPXE does not chain-load itself forever. Where neither names one and `chain`
/// is given (the client has something to boot, on `server`), pserv's own chain. Returns the
/// file and whether it is an HTTP boot URL.
fn boot_file<'t>(
    msg: &Message,
    mac: MacAddr,
    subnet: Option<&'t BootFiles>,
    node: Option<&'t BootFiles>,
    chain: Option<(BootChain, Ipv4Addr)>,
) -> (Option<Cow<'t, str>>, bool) {
    let arch_code = match msg.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => None,
    };
    let Some(arch) = Arch::from_client_arch(arch_code) else {
        return (None, false);
    };
    let ipxe = is_ipxe(msg);
    // The node's chain over its subnet's; iPXE where neither names one.
    let chain_of = node
        .and_then(|n| n.chain)
        .or_else(|| subnet.and_then(|s| s.chain))
        .unwrap_or_default();
    let by_arch = node
        .and_then(|n| n.file(arch))
        .or_else(|| subnet.and_then(|s| s.file(arch)));
    let file = if ipxe {
        node.and_then(|n| n.ipxe_url.as_deref())
            .or_else(|| subnet.and_then(|s| s.ipxe_url.as_deref()))
            .or(by_arch)
    } else {
        by_arch
    };
    let file = match (file, chain) {
        (Some(f), _) => Some(Cow::Borrowed(f)),
        (None, Some((c, server))) if ipxe => Some(Cow::Owned(format!(
            "http://{server}:{}{}",
            c.http_port,
            names::ipxe_script_path(mac)
        ))),
        (None, Some((c, server))) if arch.is_http() => Some(Cow::Owned(format!(
            "http://{server}:{}/{}",
            c.http_port,
            names::chain_file(arch, chain_of)
        ))),
        (None, Some(_)) => Some(Cow::Borrowed(names::chain_file(arch, chain_of))),
        (None, None) => None,
    };
    let http = arch.is_http() && file.is_some();
    (file, http)
}
