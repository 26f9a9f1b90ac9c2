//! What is wrong with a snapshot: one typed value per problem, each naming where it is.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::MacAddr;

/// Where in a snapshot a problem sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Site {
    /// A top-level field, e.g. `generation` or `dns.soa_mname`.
    Snapshot {
        /// The field's path.
        field: String,
    },
    /// A field of one subnet, e.g. `dynamic[0]` of `10.20.0.0/16`.
    Subnet {
        /// Position in `subnets`.
        index: usize,
        /// The subnet's `cidr` as written.
        cidr: String,
        /// The field's path inside the subnet.
        field: String,
    },
    /// A field of one node, e.g. `interfaces[1].mac` of node `4y3h7n`.
    Node {
        /// Position in `nodes`.
        index: usize,
        /// The node's `id`.
        id: String,
        /// The field's path inside the node.
        field: String,
    },
}

impl Site {
    /// The full path of the field in the snapshot document, e.g. `nodes[3].interfaces[0].mac`.
    pub fn path(&self) -> String {
        match self {
            Self::Snapshot { field } => field.clone(),
            Self::Subnet { index, field, .. } => join(format!("subnets[{index}]"), field),
            Self::Node { index, field, .. } => join(format!("nodes[{index}]"), field),
        }
    }

    /// The node this site belongs to, if any.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            Self::Node { id, .. } => Some(id),
            _ => None,
        }
    }
}

fn join(base: String, field: &str) -> String {
    if field.is_empty() {
        base
    } else {
        format!("{base}.{field}")
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Snapshot { field } => f.write_str(field),
            Self::Subnet { cidr, field, .. } if field.is_empty() => write!(f, "subnet {cidr}"),
            Self::Subnet { cidr, field, .. } => write!(f, "subnet {cidr} {field}"),
            Self::Node { id, field, .. } if field.is_empty() => write!(f, "node {id:?}"),
            Self::Node { id, field, .. } => write!(f, "node {id:?} {field}"),
        }
    }
}

/// One thing wrong with a snapshot. Validation reports every one of them at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The generation does not move forward.
    #[error("generation: {generation} is not above the current generation {current}")]
    StaleGeneration {
        /// The pushed generation.
        generation: u64,
        /// The generation being served.
        current: u64,
    },
    /// Two nodes share an `id`.
    #[error("{second}: duplicate node id, also nodes[{}]", first_index(first))]
    DuplicateId {
        /// The earlier node.
        first: Site,
        /// The later node.
        second: Site,
    },
    /// Two nodes claim one FQDN (compared case-insensitively): the rename race.
    #[error("{second}: FQDN {fqdn} is also claimed by {first}")]
    DuplicateFqdn {
        /// The name, lower-cased.
        fqdn: String,
        /// The earlier claimant.
        first: Site,
        /// The later claimant.
        second: Site,
    },
    /// Two interfaces share a MAC.
    #[error("{second}: MAC {mac} is also on {first}")]
    DuplicateMac {
        /// The address.
        mac: MacAddr,
        /// The earlier interface.
        first: Site,
        /// The later interface.
        second: Site,
    },
    /// Two interfaces reserve one address.
    #[error("{second}: address {ip} is also reserved by {first}")]
    DuplicateIp {
        /// The address.
        ip: IpAddr,
        /// The earlier reservation.
        first: Site,
        /// The later reservation.
        second: Site,
    },
    /// A reservation in no subnet.
    #[error("{at}: address {ip} is outside every subnet")]
    OutsideSubnets {
        /// The address.
        ip: IpAddr,
        /// The reservation.
        at: Site,
    },
    /// A reservation inside a dynamic range, where a dynamic client could also get it.
    #[error("{at}: address {ip} is inside dynamic range {range} of subnet {subnet}")]
    InDynamicRange {
        /// The address.
        ip: IpAddr,
        /// The reservation.
        at: Site,
        /// The subnet's cidr.
        subnet: String,
        /// The range, `start-end`.
        range: String,
    },
    /// A network or broadcast address used as a host address.
    #[error("{at}: {ip} is the network or broadcast address of {subnet}")]
    NotAHostAddress {
        /// The address.
        ip: IpAddr,
        /// Where it is used.
        at: Site,
        /// The subnet's cidr.
        subnet: String,
    },
    /// Two subnets overlap.
    #[error("{second}: overlaps {first}")]
    OverlappingSubnets {
        /// The earlier subnet.
        first: Site,
        /// The later subnet.
        second: Site,
    },
    /// A value that does not parse or is out of its allowed set or range.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: Site,
        /// What is wrong, with the offending value.
        message: String,
    },
    /// A hostname or domain that breaks RFC 1123.
    #[error("{at}: invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as written.
        name: String,
        /// Where.
        at: Site,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A boot template that does not compile, or that fails to render for a node it applies to.
    #[error("{at}: boot profile {profile:?}, {template}: {message}")]
    Template {
        /// The profile the node (or subnet) uses; empty for a template with no profile.
        profile: String,
        /// Which template: `cmdline`, `ipxe`, `grub` or `pxelinux`.
        template: &'static str,
        /// Where: the node or subnet it failed for, or the template's own field.
        at: Site,
        /// The template engine's error.
        message: String,
    },
    /// A node file (issue 21) whose name is not servable, whose template does not compile, or
    /// that fails to render for a node it applies to or renders into an invalid format (a
    /// cloud-init file that is not YAML, an Ignition file that is not JSON).
    #[error("{at}: boot profile {profile:?}, node file {file:?}{}: {message}", line_suffix(*.line))]
    NodeFile {
        /// The profile holding the file.
        profile: String,
        /// The file's served name.
        file: String,
        /// Where: the node it failed for, or the file's own field.
        at: Site,
        /// The line (1-based) in the template, or in the rendered file for a format error.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A value longer than the field (BOOTP file/sname, an option) it must fit in.
    #[error("{at}: {len} bytes is too long, at most {max} fit")]
    TooLong {
        /// Where.
        at: Site,
        /// The value's length in bytes.
        len: usize,
        /// The most that fits.
        max: usize,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map_or_else(String::new, |l| format!(", line {l}"))
}

fn first_index(site: &Site) -> usize {
    match site {
        Site::Node { index, .. } | Site::Subnet { index, .. } => *index,
        Site::Snapshot { .. } => 0,
    }
}

impl Problem {
    /// Every site the problem names (both nodes of a duplicate, for instance).
    pub fn sites(&self) -> Vec<&Site> {
        match self {
            Self::StaleGeneration { .. } => Vec::new(),
            Self::DuplicateId { first, second }
            | Self::DuplicateFqdn { first, second, .. }
            | Self::DuplicateMac { first, second, .. }
            | Self::DuplicateIp { first, second, .. }
            | Self::OverlappingSubnets { first, second } => vec![first, second],
            Self::OutsideSubnets { at, .. }
            | Self::InDynamicRange { at, .. }
            | Self::NotAHostAddress { at, .. }
            | Self::Invalid { at, .. }
            | Self::InvalidName { at, .. }
            | Self::Template { at, .. }
            | Self::NodeFile { at, .. }
            | Self::TooLong { at, .. } => vec![at],
        }
    }

    /// The ids of every node the problem names.
    pub fn node_ids(&self) -> Vec<&str> {
        self.sites().into_iter().filter_map(Site::node_id).collect()
    }

    /// The document path of the (last-named) field at fault.
    pub fn path(&self) -> String {
        self.sites()
            .last()
            .map_or_else(|| "generation".to_owned(), |s| s.path())
    }
}

/// The JSON form of a problem for the control API: message, path and the nodes it names.
impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Problem", 3)?;
        st.serialize_field("message", &self.to_string())?;
        st.serialize_field("path", &self.path())?;
        st.serialize_field("nodes", &self.node_ids())?;
        st.end()
    }
}
