//! The compiler: a snapshot in, a [`Table`] or every [`Problem`] out, in one pass that builds
//! each index while it checks the rule the index enforces.

use super::*;
use crate::snapshot::BootMode;

/// Validation of `snap` on its own: [`Table::compile`] without keeping the table.
pub fn validate(snap: &Snapshot, current: Option<u64>) -> Result<(), Vec<Problem>> {
    Table::compile(snap, current).map(drop)
}

pub(super) fn compile_dns(d: &snapshot::DnsSettings, problems: &mut Vec<Problem>) -> DnsInfo {
    let at = |field: &str| Site::Snapshot {
        field: format!("dns.{field}"),
    };
    if d.ttl > i32::MAX as u32 {
        problems.push(Problem::Invalid {
            at: at("ttl"),
            message: format!("TTL {} is above 2147483647 (RFC 2181)", d.ttl),
        });
    }
    for (field, value) in [("soa_mname", &d.soa_mname), ("soa_rname", &d.soa_rname)] {
        if let Err(reason) = check_soa_name(value) {
            problems.push(Problem::InvalidName {
                name: value.clone(),
                at: at(field),
                reason,
            });
        }
    }
    let mut upstreams = Vec::with_capacity(d.upstreams.len());
    for (i, u) in d.upstreams.iter().enumerate() {
        match snapshot::parse_upstream(u) {
            Some(sa) => upstreams.push(sa),
            None => problems.push(Problem::Invalid {
                at: at(&format!("upstreams[{i}]")),
                message: format!("{u:?} is not IP or IP:PORT"),
            }),
        }
    }
    DnsInfo {
        ttl: d.ttl,
        soa_mname: name::normalize(&d.soa_mname).into(),
        soa_rname: name::normalize(&d.soa_rname).into(),
        upstreams,
    }
}

/// SOA names: like a domain, but a mailbox's first label may hold '_' too.
fn check_soa_name(name: &str) -> Result<(), &'static str> {
    let relaxed: String = name.replace('_', "-").replace("--", "-a");
    name::check_domain(&relaxed)
}

/// The state of one compilation: the table being built and the problems found so far.
pub(super) struct Compiler<'s> {
    snap: &'s Snapshot,
    problems: Vec<Problem>,
    boot: BootPlan,
    /// Nodes whose templates validation renders, once every node is read.
    renders: Vec<RenderJob>,
    /// The (profile, mode) pairs a job is already marked first for (see [`BootPlan::check`]).
    firsts: hashbrown::HashSet<(Option<u32>, u8)>,
    hasher: DefaultHashBuilder,
    name_seed: u64,
}

fn subnet_site(index: usize, cidr: &str, field: impl Into<String>) -> Site {
    Site::Subnet {
        index,
        cidr: cidr.to_owned(),
        field: field.into(),
    }
}

fn node_site(index: usize, node: &Node, field: impl Into<String>) -> Site {
    Site::Node {
        index,
        id: node.id.clone(),
        field: field.into(),
    }
}

impl<'s> Compiler<'s> {
    pub(super) fn new(snap: &'s Snapshot) -> Self {
        let hasher = DefaultHashBuilder::default();
        Self {
            snap,
            problems: Vec::new(),
            boot: BootPlan::empty(),
            renders: Vec::new(),
            firsts: hashbrown::HashSet::new(),
            name_seed: hasher.hash_one(0x7073_6572_7600_u64),
            hasher,
        }
    }

    pub(super) fn run(mut self, current: Option<u64>) -> Result<Table, Vec<Problem>> {
        let snap = self.snap;
        if let Some(current) = current
            && snap.generation <= current
        {
            self.problems.push(Problem::StaleGeneration {
                generation: snap.generation,
                current,
            });
        }
        let dns = compile_dns(&snap.dns, &mut self.problems);
        let (plan, found) = BootPlan::compile(&snap.boot_profiles, &snap.boot_templates);
        self.boot = plan;
        // A node file that does not compile is left out of its profile, so every node can
        // still be rendered with the rest and every problem is reported at once; a loader
        // template or a command line that does not compile would fail for every node.
        let templates_ok = found.iter().all(|p| p.file.is_some());
        self.problems
            .extend(found.into_iter().map(|p| match p.file {
                Some(file) => Problem::NodeFile {
                    profile: p.profile,
                    file,
                    at: Site::Snapshot { field: p.field },
                    line: p.line,
                    message: p.message,
                },
                None => Problem::Template {
                    profile: p.profile,
                    template: p.template,
                    at: Site::Snapshot { field: p.field },
                    message: match p.line {
                        Some(l) => format!("{} (line {l})", p.message),
                        None => p.message,
                    },
                },
            }));
        let (subnets, subnets6) = self.subnets();
        if templates_ok {
            self.check_unknown_profiles(&subnets);
        }
        let nodes = self.nodes(&subnets, &subnets6, templates_ok);
        let subnets_v6 = subnets6.iter().map(|s| (s.network, s.prefix_len)).collect();

        let mut domains: Vec<Box<str>> = Vec::new();
        let subnet_domains = subnets.iter().filter_map(|s| s.domain.as_deref());
        for d in subnet_domains.chain(subnets6.iter().filter_map(|s| s.domain.as_deref())) {
            if !domains.iter().any(|x| &**x == d) {
                domains.push(d.into());
            }
        }
        for d in &nodes.domains {
            if !domains.iter().any(|x| x == d) {
                domains.push(d.clone());
            }
        }

        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        Ok(Table {
            generation: snap.generation,
            id: next_table_id(),
            dns,
            domains,
            subnets,
            subnets_v6,
            subnets6,
            strings: nodes.strings,
            nodes: nodes.nodes,
            ifaces: nodes.ifaces,
            v6: nodes.v6,
            extras: nodes.extras,
            by_mac: nodes.by_mac,
            by_name: nodes.by_name,
            by_v4: nodes.by_v4,
            by_v6: nodes.by_v6,
            hasher: self.hasher,
            name_seed: self.name_seed,
            boot: self.boot,
        })
    }

    /// The profile called `name`, or a problem at `at` saying there is none.
    fn profile_ref(&mut self, name: &str, at: Site) -> Option<u32> {
        let p = self.boot.profile_index(name);
        if p.is_none() {
            self.problems.push(Problem::Invalid {
                at,
                message: format!("no boot profile {name:?} in boot_profiles"),
            });
        }
        p
    }

    /// Renders each subnet's profile for unknown clients once, for a client with no name.
    fn check_unknown_profiles(&mut self, subnets: &[SubnetInfo]) {
        for s in subnets {
            let Some(b) = &s.boot else { continue };
            let Some(p) = b.unknown_profile else { continue };
            let index = self
                .snap
                .subnets
                .iter()
                .position(|x| *x.cidr == *s.cidr)
                .unwrap_or(0);
            let who = boot::Subject {
                id: "",
                hostname: "",
                domain: "",
                fqdn: "",
                mac: MacAddr([0x02, 0, 0, 0, 0, 1]),
                ipv4: s.dynamic.first().map(|r| r.start),
                ipv6: None,
                vars: None,
                subnet: Some(boot::SubnetOf::V4(s)),
            };
            let at = subnet_site(index, &s.cidr, "boot.unknown_profile");
            let failures = self.boot.check(
                Intent::Netboot(p),
                Some(p),
                &who,
                validation_endpoint(b.next_server),
                true,
            );
            self.report(failures, p, &at);
        }
    }

    /// Problems at `at` for the templates of profile `profile` that failed.
    fn report(&mut self, failures: Vec<boot::Failure>, profile: u32, at: &Site) {
        let profile = self.boot.profile_name(profile).unwrap_or("");
        self.problems.extend(
            failures
                .into_iter()
                .map(|f| failure_problem(f, profile, at)),
        );
    }

    /// Renders every template of every node that has any (each loader's file for a netbooting
    /// node, each node file), on every core: on 100,000 nodes this is most of a publish.
    fn check_renders(&mut self, subnets: &[SubnetInfo]) {
        let jobs = std::mem::take(&mut self.renders);
        if jobs.is_empty() {
            return;
        }
        let (plan, snap) = (&self.boot, self.snap);
        let run = |jobs: &[RenderJob]| -> Vec<(u32, Vec<boot::Failure>)> {
            jobs.iter()
                .filter_map(|j| {
                    let failures = check_node(plan, &snap.nodes[j.node as usize], j, subnets);
                    (!failures.is_empty()).then_some((j.node, failures))
                })
                .collect()
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(16);
        // Small snapshots are not worth a thread.
        let chunk = jobs.len().div_ceil(threads).max(512);
        let found: Vec<Result<Vec<_>, ()>> = if jobs.len() <= chunk {
            vec![Ok(run(&jobs))]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = jobs
                    .chunks(chunk)
                    .map(|c| scope.spawn(move || run(c)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().map_err(drop))
                    .collect()
            })
        };
        for part in found {
            let Ok(part) = part else {
                self.problems.push(Problem::Invalid {
                    at: Site::Snapshot {
                        field: "boot_profiles".to_owned(),
                    },
                    message: "rendering the boot templates failed unexpectedly".to_owned(),
                });
                continue;
            };
            for (ni, failures) in part {
                let node = &snap.nodes[ni as usize];
                let at = node_site(ni as usize, node, "boot.profile");
                let profile = node
                    .boot
                    .as_ref()
                    .and_then(|b| b.profile.as_deref())
                    .unwrap_or("");
                self.problems.extend(
                    failures
                        .into_iter()
                        .map(|f| failure_problem(f, profile, &at)),
                );
            }
        }
    }

    fn subnets(&mut self) -> (Vec<SubnetInfo>, Vec<SubnetInfo6>) {
        // (position in the snapshot, compiled subnet)
        let mut v4: Vec<(usize, SubnetInfo)> = Vec::new();
        let mut v6: Vec<(usize, SubnetInfo6)> = Vec::new();
        for (i, s) in self.snap.subnets.iter().enumerate() {
            let Ok(net) = s.cidr.parse::<IpNet>() else {
                self.problems.push(Problem::Invalid {
                    at: subnet_site(i, &s.cidr, "cidr"),
                    message: format!("{:?} is not an address/prefix-length", s.cidr),
                });
                continue;
            };
            if net.trunc() != net {
                self.problems.push(Problem::Invalid {
                    at: subnet_site(i, &s.cidr, "cidr"),
                    message: format!(
                        "{} has host bits set; the network is {}",
                        s.cidr,
                        net.trunc()
                    ),
                });
                continue;
            }
            match net {
                IpNet::V4(n) => {
                    if let Some(info) = self.subnet_v4(i, s, n) {
                        v4.push((i, info));
                    }
                }
                IpNet::V6(n) => v6.push((i, self.subnet_v6(i, s, n))),
            }
        }
        v4.sort_by_key(|(_, s)| s.network);
        v6.sort_by_key(|(_, s)| s.network);
        // Sorted by start: a subnet overlaps an earlier one iff it starts before that one ends.
        // Compare against every earlier subnet still "open", so nested subnets are all reported.
        for (k, (i, s)) in v4.iter().enumerate() {
            for (j, p) in v4[..k].iter().filter(|(_, p)| p.broadcast >= s.network) {
                self.problems.push(Problem::OverlappingSubnets {
                    first: subnet_site(*j, &p.cidr, ""),
                    second: subnet_site(*i, &s.cidr, ""),
                });
            }
        }
        // The last address of an IPv6 network.
        let last = |n: &Ipv6Addr, len: u8| {
            u128::from(*n) | (u128::MAX.checked_shr(u32::from(len)).unwrap_or(0))
        };
        for (k, (i, s)) in v6.iter().enumerate() {
            for (j, _) in v6[..k]
                .iter()
                .filter(|(_, p)| last(&p.network, p.prefix_len) >= u128::from(s.network))
            {
                self.problems.push(Problem::OverlappingSubnets {
                    first: subnet_site(*j, &self.snap.subnets[*j].cidr, ""),
                    second: subnet_site(*i, &self.snap.subnets[*i].cidr, ""),
                });
            }
        }
        (
            v4.into_iter().map(|(_, s)| s).collect(),
            v6.into_iter().map(|(_, s)| s).collect(),
        )
    }

    /// An IPv6 subnet's DHCPv6 settings; a field that only IPv4 has is a problem.
    fn subnet_v6(&mut self, i: usize, s: &Subnet, n: ipnet::Ipv6Net) -> SubnetInfo6 {
        let site = |field: &str| subnet_site(i, &s.cidr, field);
        let v4_only = [
            ("router", s.router.is_some()),
            ("router_outside_subnet", s.router_outside_subnet),
            ("ignore_link_selection", s.ignore_link_selection),
            ("proxy_dhcp", s.proxy_dhcp),
        ];
        for (field, set) in v4_only {
            if set {
                self.problems.push(Problem::Invalid {
                    at: site(field),
                    message: "an IPv4 setting on an IPv6 subnet".to_owned(),
                });
            }
        }
        let domain = self.domain(site("domain"), s.domain.as_deref());
        let mut dns_servers = Vec::with_capacity(s.dns_servers.len());
        for (k, ip) in s.dns_servers.iter().enumerate() {
            match ip {
                IpAddr::V6(ip) if !ip.is_unspecified() && !ip.is_multicast() => {
                    dns_servers.push(*ip);
                }
                _ => self.problems.push(Problem::Invalid {
                    at: site(&format!("dns_servers[{k}]")),
                    message: format!("{ip} is not an IPv6 unicast address"),
                }),
            }
        }
        let preferred = s.preferred_seconds.unwrap_or(s.lease_seconds);
        let mut info = SubnetInfo6 {
            cidr: s.cidr.as_str().into(),
            network: n.network(),
            prefix_len: n.prefix_len(),
            dns_servers,
            domain,
            valid_seconds: s.lease_seconds,
            preferred_seconds: preferred,
            // RFC 8415 §21.4: T1 and T2 of 0.5 and 0.8 times the shortest preferred lifetime.
            renew_seconds: s.renew_seconds.unwrap_or(preferred / 2),
            rebind_seconds: s
                .rebind_seconds
                .unwrap_or((u64::from(preferred) * 4 / 5) as u32),
            dynamic: Vec::with_capacity(s.dynamic.len()),
            unknown_clients: s.unknown_clients.unwrap_or_default(),
            decline_seconds: s.decline_seconds,
            dynamic_dns: s.dynamic_dns,
            options: Vec::new(),
            boot: None,
        };
        if info.valid_seconds == 0 {
            self.problems.push(Problem::Invalid {
                at: site("lease_seconds"),
                message: "a valid lifetime of 0 seconds".to_owned(),
            });
        }
        if info.preferred_seconds > info.valid_seconds {
            self.problems.push(Problem::Invalid {
                at: site("preferred_seconds"),
                message: format!(
                    "the preferred lifetime ({}) is longer than the valid one (lease_seconds, {})",
                    info.preferred_seconds, info.valid_seconds
                ),
            });
        }
        if info.renew_seconds > info.rebind_seconds || info.rebind_seconds > info.valid_seconds {
            self.problems.push(Problem::Invalid {
                at: site("renew_seconds"),
                message: format!(
                    "timers must satisfy renew ({}) <= rebind ({}) <= lease ({})",
                    info.renew_seconds, info.rebind_seconds, info.valid_seconds
                ),
            });
        }
        for (k, r) in s.dynamic.iter().enumerate() {
            let at = site(&format!("dynamic[{k}]"));
            match (r.start, r.end) {
                (IpAddr::V6(start), IpAddr::V6(end))
                    if start <= end && info.contains(start) && info.contains(end) =>
                {
                    info.dynamic.push(Range6 { start, end });
                }
                (IpAddr::V6(start), IpAddr::V6(end)) if start > end => {
                    self.problems.push(Problem::Invalid {
                        at,
                        message: format!("range {start}-{end} is reversed"),
                    });
                }
                (start, end) => self.problems.push(Problem::Invalid {
                    at,
                    message: format!("range {start}-{end} is not inside {}", s.cidr),
                }),
            }
        }
        info.dynamic.sort_by_key(|r| r.start);
        for w in info.dynamic.windows(2) {
            if w[1].start <= w[0].end {
                self.problems.push(Problem::Invalid {
                    at: site("dynamic"),
                    message: format!(
                        "ranges {}-{} and {}-{} overlap",
                        w[0].start, w[0].end, w[1].start, w[1].end
                    ),
                });
            }
        }
        for (k, spec) in s.options.iter().enumerate() {
            match option::compile6(spec) {
                Ok(o) if info.options.iter().any(|p| p.code == o.code) => {
                    self.problems.push(Problem::Invalid {
                        at: site(&format!("options[{k}]")),
                        message: format!("option {} is given twice", o.code),
                    });
                }
                Ok(o) => info.options.push(o),
                Err(message) => self.problems.push(Problem::Invalid {
                    at: site(&format!("options[{k}]")),
                    message,
                }),
            }
        }
        info.options.sort_by_key(|o| o.code);
        if let Some(b) = &s.boot {
            let mut files = self.boot_files(&b.files, None, b.ipxe_url.as_deref(), &|f| {
                site(&format!("boot.{f}"))
            });
            files.chain = b.chain;
            for (field, set) in [
                ("boot.next_server", b.next_server.is_some()),
                ("boot.server_name", b.server_name.is_some()),
            ] {
                if set {
                    self.problems.push(Problem::Invalid {
                        at: site(field),
                        message: "a BOOTP field: DHCPv6 has none (the boot file URL names the \
                                  server)"
                            .to_owned(),
                    });
                }
            }
            let unknown_profile = b
                .unknown_profile
                .as_deref()
                .and_then(|name| self.profile_ref(name, site("boot.unknown_profile")));
            info.boot = Some(SubnetBootInfo {
                next_server: None,
                server_name: None,
                files,
                unknown_profile,
            });
        }
        info
    }

    fn domain(&mut self, at: Site, domain: Option<&str>) -> Option<Box<str>> {
        let d = domain?;
        match name::check_domain(d) {
            Ok(()) => Some(name::normalize(d).into()),
            Err(reason) => {
                self.problems.push(Problem::InvalidName {
                    name: d.to_owned(),
                    at,
                    reason,
                });
                None
            }
        }
    }

    fn subnet_v4(&mut self, i: usize, s: &Subnet, n: ipnet::Ipv4Net) -> Option<SubnetInfo> {
        let site = |field: &str| subnet_site(i, &s.cidr, field);
        let domain = self.domain(site("domain"), s.domain.as_deref());
        let mut info = SubnetInfo {
            cidr: s.cidr.as_str().into(),
            network: n.network(),
            prefix_len: n.prefix_len(),
            mask: n.netmask(),
            broadcast: n.broadcast(),
            routers: s
                .router
                .as_ref()
                .map_or_else(Vec::new, |r| r.addresses().to_vec()),
            ignore_link_selection: s.ignore_link_selection,
            dns_servers: Vec::with_capacity(s.dns_servers.len()),
            domain,
            lease_seconds: s.lease_seconds,
            renew_seconds: s.renew_seconds.unwrap_or(s.lease_seconds / 2),
            rebind_seconds: s
                .rebind_seconds
                .unwrap_or((u64::from(s.lease_seconds) * 7 / 8) as u32),
            dynamic: Vec::with_capacity(s.dynamic.len()),
            // A proxyDHCP subnet leases nothing: unknown clients get a boot answer only
            // through the subnet's unknown_profile.
            unknown_clients: if s.proxy_dhcp {
                UnknownClients::Ignore
            } else {
                s.unknown_clients.unwrap_or_default()
            },
            decline_seconds: s.decline_seconds,
            dynamic_dns: s.dynamic_dns,
            options: Vec::new(),
            boot: None,
            proxy_dhcp: s.proxy_dhcp,
        };
        if s.proxy_dhcp {
            if !s.dynamic.is_empty() {
                self.problems.push(Problem::Invalid {
                    at: site("dynamic"),
                    message: "a proxy_dhcp subnet hands out no addresses (another server does): \
                              it has no dynamic ranges"
                        .to_owned(),
                });
            }
            if s.unknown_clients == Some(UnknownClients::Serve) {
                self.problems.push(Problem::Invalid {
                    at: site("unknown_clients"),
                    message: "a proxy_dhcp subnet leases nothing, so it cannot serve unknown \
                              clients (their boot answer comes from boot.unknown_profile)"
                        .to_owned(),
                });
            }
        }
        for (k, ip) in s.dns_servers.iter().enumerate() {
            match ip {
                IpAddr::V4(ip) => info.dns_servers.push(*ip),
                IpAddr::V6(_) => self.problems.push(Problem::Invalid {
                    at: site(&format!("dns_servers[{k}]")),
                    message: format!("{ip} is an IPv6 address on an IPv4 subnet"),
                }),
            }
        }
        if s.preferred_seconds.is_some() {
            self.problems.push(Problem::Invalid {
                at: site("preferred_seconds"),
                message: "an IPv6 setting on an IPv4 subnet (the lease has one lifetime)"
                    .to_owned(),
            });
        }
        for (k, r) in info.routers.iter().enumerate() {
            let at = match &s.router {
                Some(snapshot::Routers::Many(_)) => site(&format!("router[{k}]")),
                _ => site("router"),
            };
            let message = if r.is_unspecified() || r.is_broadcast() || r.is_multicast() {
                format!("router {r} is not a unicast address")
            } else if info.routers[..k].contains(r) {
                format!("router {r} is given twice")
            } else if !info.is_host(*r) && (info.contains(*r) || !s.router_outside_subnet) {
                if info.contains(*r) {
                    format!(
                        "router {r} is the network or broadcast address of {}",
                        s.cidr
                    )
                } else {
                    format!(
                        "router {r} is not a host address inside {} (set router_outside_subnet \
                         to allow a gateway on another prefix)",
                        s.cidr
                    )
                }
            } else {
                continue;
            };
            self.problems.push(Problem::Invalid { at, message });
        }
        if info.lease_seconds == 0 {
            self.problems.push(Problem::Invalid {
                at: site("lease_seconds"),
                message: "a lease of 0 seconds".to_owned(),
            });
        }
        if !(info.renew_seconds <= info.rebind_seconds && info.rebind_seconds <= info.lease_seconds)
        {
            self.problems.push(Problem::Invalid {
                at: site("renew_seconds"),
                message: format!(
                    "timers must satisfy renew ({}) <= rebind ({}) <= lease ({})",
                    info.renew_seconds, info.rebind_seconds, info.lease_seconds
                ),
            });
        }
        for (k, r) in s.dynamic.iter().enumerate() {
            let at = site(&format!("dynamic[{k}]"));
            let (IpAddr::V4(start), IpAddr::V4(end)) = (r.start, r.end) else {
                self.problems.push(Problem::Invalid {
                    at,
                    message: format!("range {}-{} is not inside {}", r.start, r.end, s.cidr),
                });
                continue;
            };
            let r = Range4 { start, end };
            if r.start > r.end {
                self.problems.push(Problem::Invalid {
                    at,
                    message: format!("range {}-{} is reversed", r.start, r.end),
                });
            } else if !info.is_host(r.start) || !info.is_host(r.end) {
                self.problems.push(Problem::Invalid {
                    at,
                    message: format!(
                        "range {}-{} is not inside the host addresses of {}",
                        r.start, r.end, s.cidr
                    ),
                });
            } else {
                info.dynamic.push(r);
            }
        }
        info.dynamic.sort_by_key(|r| r.start);
        for w in info.dynamic.windows(2) {
            if w[1].start <= w[0].end {
                self.problems.push(Problem::Invalid {
                    at: site("dynamic"),
                    message: format!(
                        "ranges {}-{} and {}-{} overlap",
                        w[0].start, w[0].end, w[1].start, w[1].end
                    ),
                });
            }
        }
        info.options = self.options(&s.options, option::Scope::Subnet, &|f| site(f));
        if let Some(b) = &s.boot {
            let mut files = self.boot_files(&b.files, None, b.ipxe_url.as_deref(), &|f| {
                site(&format!("boot.{f}"))
            });
            files.chain = b.chain;
            if let Some(name) = &b.server_name {
                self.check_len(site("boot.server_name"), name, MAX_SERVER_NAME);
            }
            let unknown_profile = b
                .unknown_profile
                .as_deref()
                .and_then(|name| self.profile_ref(name, site("boot.unknown_profile")));
            info.boot = Some(SubnetBootInfo {
                next_server: b.next_server,
                server_name: b.server_name.as_deref().map(Into::into),
                files,
                unknown_profile,
            });
        }
        Some(info)
    }

    fn check_len(&mut self, at: Site, value: &str, max: usize) -> bool {
        if value.len() > max {
            self.problems.push(Problem::TooLong {
                at,
                len: value.len(),
                max,
            });
            return false;
        }
        if value.is_empty() || value.bytes().any(|b| b == 0) {
            self.problems.push(Problem::Invalid {
                at,
                message: "must be non-empty, without NUL bytes".to_owned(),
            });
            return false;
        }
        true
    }

    fn boot_files(
        &mut self,
        files: &std::collections::BTreeMap<Arch, String>,
        all: Option<&str>,
        ipxe_url: Option<&str>,
        site: &dyn Fn(&str) -> Site,
    ) -> BootFiles {
        let mut out = BootFiles::default();
        if let Some(f) = all
            && self.check_len(site("file"), f, MAX_BOOT_FILE)
        {
            for slot in &mut out.files {
                *slot = Some(f.into());
            }
        }
        for (arch, f) in files {
            if self.check_len(site(&format!("files.{}", arch.key())), f, MAX_BOOT_FILE) {
                out.files[arch_index(*arch)] = Some(f.as_str().into());
            }
        }
        if let Some(u) = ipxe_url
            && self.check_len(site("ipxe_url"), u, MAX_BOOT_FILE)
        {
            out.ipxe_url = Some(u.into());
        }
        out
    }

    fn options(
        &mut self,
        specs: &[snapshot::OptionSpec],
        scope: option::Scope,
        site: &dyn Fn(&str) -> Site,
    ) -> Vec<RawOption> {
        let mut out: Vec<RawOption> = Vec::with_capacity(specs.len());
        for (k, spec) in specs.iter().enumerate() {
            let at = site(&format!("options[{k}]"));
            match option::compile(spec, scope) {
                Ok(o) if out.iter().any(|p| p.code == o.code) => {
                    self.problems.push(Problem::Invalid {
                        at,
                        message: format!("option {} is given twice", o.code),
                    });
                }
                Ok(o) => out.push(o),
                Err(message) => self.problems.push(Problem::Invalid { at, message }),
            }
        }
        out.sort_by_key(|o| o.code);
        out
    }

    /// Compiles the nodes in two passes. The first walks the snapshot once: per-node checks,
    /// the flat records, and every index key with its hash. The second builds each index by
    /// inserting its keys in bucket order, which finds the duplicates and, on a large snapshot,
    /// walks each hash table front to back instead of taking a cache and TLB miss per insert.
    fn nodes(
        &mut self,
        subnets: &[SubnetInfo],
        subnets6: &[SubnetInfo6],
        render: bool,
    ) -> NodesBuilt {
        let snap = self.snap;
        let n_nodes = snap.nodes.len();
        let n_ifaces: usize = snap.nodes.iter().map(|n| n.interfaces.len()).sum();
        let mut b = NodesBuilt {
            strings: String::with_capacity(
                snap.nodes
                    .iter()
                    .map(|n| n.id.len() + n.hostname.len() + n.domain.len() + 1)
                    .sum(),
            ),
            nodes: Vec::with_capacity(n_nodes),
            ifaces: Vec::with_capacity(n_ifaces),
            v6: Vec::new(),
            extras: Vec::new(),
            by_mac: HashTable::new(),
            by_name: HashTable::new(),
            by_v4: HashTable::new(),
            by_v6: HashTable::new(),
            domains: Vec::new(),
        };
        let first_node_problem = self.problems.len();
        let mut keys = Keys {
            ids: Vec::with_capacity(n_nodes),
            names: Vec::with_capacity(n_nodes),
            macs: Vec::with_capacity(n_ifaces),
            v4: Vec::with_capacity(n_ifaces),
            v6: Vec::new(),
        };
        let mut last_domain: (&str, Option<Box<str>>) = ("", None);
        let mut fqdn = String::with_capacity(MAX_NAME_LEN + 1);

        for (ni, node) in snap.nodes.iter().enumerate() {
            let site = |field: &str| node_site(ni, node, field);
            let node_index = ni as u32;
            if node.id.is_empty() {
                self.problems.push(Problem::Invalid {
                    at: site("id"),
                    message: "empty node id".to_owned(),
                });
            } else {
                keys.ids
                    .push((self.hasher.hash_one(node.id.as_bytes()), node_index));
            }

            // The name: hostname + domain, both checked, the domain memoized (nodes share few).
            let host_ok = match name::check_hostname(&node.hostname) {
                Ok(()) => true,
                Err(reason) => {
                    self.problems.push(Problem::InvalidName {
                        name: node.hostname.clone(),
                        at: site("hostname"),
                        reason,
                    });
                    false
                }
            };
            if last_domain.0 != node.domain || last_domain.1.is_none() {
                let d = self.domain(site("domain"), Some(&node.domain));
                last_domain = (&node.domain, d);
            }
            let domain = last_domain.1.clone();
            if let Some(d) = &domain
                && !b.domains.iter().any(|x| x == d)
            {
                b.domains.push(d.clone());
            }
            fqdn.clear();
            if let (true, Some(d)) = (host_ok, &domain) {
                fqdn.push_str(&node.hostname);
                fqdn.make_ascii_lowercase();
                fqdn.push('.');
                fqdn.push_str(d);
                if fqdn.len() > MAX_NAME_LEN {
                    self.problems.push(Problem::InvalidName {
                        name: format!("{}.{}", node.hostname, node.domain),
                        at: site("hostname"),
                        reason: "the FQDN is longer than 253 characters",
                    });
                    fqdn.clear();
                }
            }
            let id = b.push_str(&node.id);
            let fq = b.push_str(&fqdn);
            if !fqdn.is_empty() {
                keys.names.push((
                    name::hash_folded(self.name_seed, fqdn.as_bytes()),
                    node_index,
                ));
            }

            let primary = self.primary(ni, node);
            let first_iface = b.ifaces.len() as u32;
            for k in 0..node.interfaces.len() {
                self.interface(&mut b, &mut keys, ni, k, subnets, subnets6);
            }

            let extra = self.node_extra(ni, node, render);
            b.nodes.push(NodeRec {
                id,
                fqdn: fq,
                host_len: node.hostname.len().min(255) as u8,
                primary: primary.map_or(NONE, |p| first_iface + p as u32),
                extra: match extra {
                    Some(e) => {
                        b.extras.push(e);
                        (b.extras.len() - 1) as u32
                    }
                    None => NONE,
                },
            });
        }

        self.indexes(&mut b, keys);
        self.check_renders(subnets);
        // Report node problems in document order, whichever pass found them.
        self.problems[first_node_problem..].sort_by_key(|p| match p.sites().last() {
            Some(Site::Node { index, .. }) => *index,
            _ => 0,
        });
        b
    }

    /// The second pass of [`Compiler::nodes`]: builds the indexes, reporting duplicates.
    fn indexes(&mut self, b: &mut NodesBuilt, keys: Keys) {
        let snap = self.snap;
        let hasher = &self.hasher;
        let name_seed = self.name_seed;
        let problems = &mut self.problems;
        let node_at = |i: u32, field: &str| {
            let i = i as usize;
            node_site(i, &snap.nodes[i], field)
        };
        // An interface as "node X interfaces[k].what", k counted within its node.
        let iface_at = |b: &NodesBuilt, i: u32, what: &str| {
            let node = b.ifaces[i as usize].node;
            let nth = (0..i)
                .rev()
                .take_while(|&j| b.ifaces[j as usize].node == node)
                .count();
            node_at(node, &format!("interfaces[{nth}].{what}"))
        };

        build_index(
            keys.ids,
            |i| i,
            |&a, i| snap.nodes[a as usize].id == snap.nodes[i as usize].id,
            |&a| hasher.hash_one(snap.nodes[a as usize].id.as_bytes()),
            |&first, second| {
                problems.push(Problem::DuplicateId {
                    first: node_at(first, ""),
                    second: node_at(second, ""),
                });
            },
        );

        let (arena, nodes) = (b.strings.as_bytes(), &b.nodes);
        let fqdn_of = |i: u32| {
            let s = nodes[i as usize].fqdn;
            &arena[s.off as usize..(s.off + s.len) as usize]
        };
        b.by_name = build_index(
            keys.names,
            |i| {
                let name = fqdn_of(i);
                let mut head = [0u8; NAME_HEAD];
                let n = name.len().min(NAME_HEAD);
                head[..n].copy_from_slice(&name[..n]);
                NameSlot {
                    off: nodes[i as usize].fqdn.off,
                    node: i,
                    len: name.len() as u8,
                    head,
                }
            },
            |s, i| s.name(arena) == fqdn_of(i),
            |s| name::hash_folded(name_seed, s.name(arena)),
            |first, second| {
                problems.push(Problem::DuplicateFqdn {
                    fqdn: String::from_utf8_lossy(fqdn_of(second)).into_owned(),
                    first: node_at(first.node, "hostname"),
                    second: node_at(second, "hostname"),
                });
            },
        );

        let (ifaces, v6) = (&b.ifaces, &b.v6);
        let rec = |i: &u32| &ifaces[*i as usize];
        let by_mac = build_index(
            keys.macs,
            |i| i,
            |a, i| rec(a).mac == rec(&i).mac,
            |a| hasher.hash_one(rec(a).mac),
            |&first, second| {
                problems.push(Problem::DuplicateMac {
                    mac: MacAddr(rec(&second).mac),
                    first: iface_at(b, first, "mac"),
                    second: iface_at(b, second, "mac"),
                });
            },
        );
        let by_v4 = build_index(
            keys.v4,
            |i| i,
            |a, i| rec(a).ipv4 == rec(&i).ipv4,
            |a| hasher.hash_one(rec(a).ipv4),
            |&first, second| {
                problems.push(Problem::DuplicateIp {
                    ip: Ipv4Addr::from(rec(&second).ipv4).into(),
                    first: iface_at(b, first, "ipv4"),
                    second: iface_at(b, second, "ipv4"),
                });
            },
        );
        let v6_of = |i: &u32| v6[rec(i).ipv6 as usize];
        let by_v6 = build_index(
            keys.v6,
            |i| i,
            |a, i| v6_of(a) == v6_of(&i),
            |a| hasher.hash_one(u128::from(v6_of(a))),
            |&first, second| {
                problems.push(Problem::DuplicateIp {
                    ip: v6_of(&second).into(),
                    first: iface_at(b, first, "ipv6"),
                    second: iface_at(b, second, "ipv6"),
                });
            },
        );
        (b.by_mac, b.by_v4, b.by_v6) = (by_mac, by_v4, by_v6);
    }

    /// Which interface is primary: the one marked, else the first. Two marked is a problem.
    fn primary(&mut self, ni: usize, node: &Node) -> Option<usize> {
        let mut marked = node
            .interfaces
            .iter()
            .enumerate()
            .filter(|(_, i)| i.primary);
        let first = marked.next().map(|(k, _)| k);
        if marked.next().is_some() {
            let all: Vec<String> = (0..node.interfaces.len())
                .filter(|&k| node.interfaces[k].primary)
                .map(|k| format!("interfaces[{k}]"))
                .collect();
            self.problems.push(Problem::Invalid {
                at: node_site(ni, node, "interfaces"),
                message: format!(
                    "{} interfaces are marked primary ({}); at most one may be",
                    all.len(),
                    all.join(", ")
                ),
            });
        }
        first.or((!node.interfaces.is_empty()).then_some(0))
    }

    /// First-pass work for one interface: checks, its record, and its index keys.
    fn interface(
        &mut self,
        b: &mut NodesBuilt,
        keys: &mut Keys,
        ni: usize,
        k: usize,
        subnets: &[SubnetInfo],
        subnets6: &[SubnetInfo6],
    ) {
        let node = &self.snap.nodes[ni];
        let iface = &node.interfaces[k];
        let site = |f: &str| node_site(ni, node, format!("interfaces[{k}].{f}"));
        let index = b.ifaces.len() as u32;
        let mut rec = IfaceRec {
            mac: iface.mac.0,
            node: ni as u32,
            ipv4: 0,
            ipv6: NONE,
        };
        let mac = iface.mac;
        if mac.0 == [0; 6] || mac.0[0] & 1 == 1 {
            self.problems.push(Problem::Invalid {
                at: site("mac"),
                message: format!("{mac} is not a unicast hardware address"),
            });
        }
        keys.macs.push((self.hasher.hash_one(mac.0), index));
        if let Some(ip) = iface.ipv4
            && self.check_v4_reservation(ip, site("ipv4"), subnets)
        {
            rec.ipv4 = u32::from(ip);
            keys.v4.push((self.hasher.hash_one(rec.ipv4), index));
        }
        if let Some(ip) = iface.ipv6 {
            let subnet = subnets6.iter().find(|s| s.contains(ip));
            let pool = subnet.and_then(|s| Some((s, s.dynamic_range_of(ip)?)));
            if let Some((s, r)) = pool {
                self.problems.push(Problem::InDynamicRange {
                    ip: ip.into(),
                    at: site("ipv6"),
                    subnet: s.cidr.to_string(),
                    range: format!("{}-{}", r.start, r.end),
                });
            } else if subnet.is_some() {
                rec.ipv6 = b.v6.len() as u32;
                b.v6.push(ip);
                keys.v6.push((self.hasher.hash_one(u128::from(ip)), index));
            } else {
                self.problems.push(Problem::OutsideSubnets {
                    ip: ip.into(),
                    at: site("ipv6"),
                });
            }
        }
        b.ifaces.push(rec);
    }

    /// A reserved IPv4 address must be a host address of some subnet, outside its dynamic
    /// ranges. Returns whether it is.
    fn check_v4_reservation(&mut self, ip: Ipv4Addr, at: Site, subnets: &[SubnetInfo]) -> bool {
        let i = subnets.partition_point(|s| s.network <= ip);
        let subnet = i
            .checked_sub(1)
            .map(|i| &subnets[i])
            .filter(|s| s.contains(ip))
            // Subnets may overlap in an invalid snapshot: search them all before saying none.
            .or_else(|| subnets.iter().find(|s| s.contains(ip)));
        let Some(s) = subnet else {
            self.problems
                .push(Problem::OutsideSubnets { ip: ip.into(), at });
            return false;
        };
        if !s.is_host(ip) {
            self.problems.push(Problem::NotAHostAddress {
                ip: ip.into(),
                at,
                subnet: s.cidr.to_string(),
            });
            return false;
        }
        if let Some(r) = s.dynamic_range_of(ip) {
            self.problems.push(Problem::InDynamicRange {
                ip: ip.into(),
                at,
                subnet: s.cidr.to_string(),
                range: format!("{}-{}", r.start, r.end),
            });
            return false;
        }
        true
    }

    fn node_extra(&mut self, ni: usize, node: &Node, render: bool) -> Option<NodeExtra> {
        if node.boot.is_none() && node.options.is_empty() {
            return None;
        }
        let site = |f: &str| node_site(ni, node, f);
        let options = self.options(&node.options, option::Scope::Node, &site);
        let (boot, (intent, profile), vars) = match &node.boot {
            Some(b) => (
                BootFiles {
                    chain: b.chain,
                    ..self.boot_files(&b.files, b.file.as_deref(), b.ipxe_url.as_deref(), &|f| {
                        site(&format!("boot.{f}"))
                    })
                },
                self.node_intent(ni, node, b, render),
                b.vars.clone(),
            ),
            None => (
                BootFiles::default(),
                (Intent::Legacy, None),
                Default::default(),
            ),
        };
        (!boot.is_empty()
            || !options.is_empty()
            || intent != Intent::Legacy
            || profile.is_some()
            || !vars.is_empty())
        .then_some(NodeExtra {
            boot,
            options,
            intent,
            profile,
            vars,
        })
    }

    /// A node's boot intent (its mode, `netboot` by default when it names a profile) and the
    /// profile it names, whatever its mode (its node files are served in every mode: a
    /// machine installed and now booting `local` still reads its cloud-init files). A node
    /// with templates to render is queued for [`Compiler::check_renders`], so that a template
    /// failing for it rejects the push.
    fn node_intent(
        &mut self,
        ni: usize,
        node: &Node,
        b: &snapshot::NodeBoot,
        render: bool,
    ) -> (Intent, Option<u32>) {
        let site = |f: &str| node_site(ni, node, f);
        let profile = b
            .profile
            .as_deref()
            .and_then(|name| self.profile_ref(name, site("boot.profile")));
        let intent = match (b.mode, profile) {
            (Some(BootMode::Ignore), _) => Intent::Ignore,
            (Some(BootMode::Local), _) => Intent::Local,
            (Some(BootMode::Netboot) | None, Some(p)) => Intent::Netboot(p),
            (Some(BootMode::Netboot) | None, None) => Intent::Legacy,
        };
        let files = profile.filter(|&p| !self.boot.node_files(p).is_empty());
        if render && (matches!(intent, Intent::Netboot(_)) || files.is_some()) {
            let key = match intent {
                Intent::Netboot(p) => (Some(p), 0),
                Intent::Local => (None, 1),
                _ => (None, 2),
            };
            let first = self.firsts.insert(key);
            self.renders.push(RenderJob {
                node: ni as u32,
                intent,
                files,
                first,
            });
        }
        (intent, profile)
    }
}

/// The endpoint validation renders URLs with (a request renders with the address it reached).
fn validation_endpoint(next_server: Option<Ipv4Addr>) -> Endpoint {
    let server = next_server.unwrap_or(Ipv4Addr::new(192, 0, 2, 1));
    Endpoint {
        server: server.into(),
        http_port: 5248,
        syslog: Some(std::net::SocketAddr::from((server, 514))),
    }
}

/// A node whose templates validation renders.
struct RenderJob {
    /// Its index in the snapshot.
    node: u32,
    /// Its boot intent.
    intent: Intent,
    /// The profile whose node files it gets.
    files: Option<u32>,
    /// The first node of its profile and mode: pserv's own loader templates are rendered for
    /// it (see [`BootPlan::check`]).
    first: bool,
}

/// Every template of `node` that fails (see [`BootPlan::check`]).
fn check_node(
    plan: &BootPlan,
    node: &Node,
    job: &RenderJob,
    subnets: &[SubnetInfo],
) -> Vec<boot::Failure> {
    let primary = node
        .interfaces
        .iter()
        .find(|i| i.primary)
        .or(node.interfaces.first());
    let ipv4 = primary.and_then(|i| i.ipv4);
    let subnet = ipv4.and_then(|ip| subnets.iter().find(|s| s.contains(ip)));
    let hostname = node.hostname.to_ascii_lowercase();
    let domain = name::normalize(&node.domain);
    let fqdn = format!("{hostname}.{domain}");
    let who = boot::Subject {
        id: &node.id,
        hostname: &hostname,
        domain: &domain,
        fqdn: &fqdn,
        mac: primary.map_or(MacAddr([0x02, 0, 0, 0, 0, 1]), |i| i.mac),
        ipv4,
        ipv6: primary.and_then(|i| i.ipv6),
        vars: node.boot.as_ref().map(|b| &b.vars),
        subnet: subnet.map(boot::SubnetOf::V4),
    };
    let next_server = subnet
        .and_then(|s| s.boot.as_ref())
        .and_then(|b| b.next_server);
    plan.check(
        job.intent,
        job.files,
        &who,
        validation_endpoint(next_server),
        job.first,
    )
}

/// The problem a failed template is, at `at`.
fn failure_problem(f: boot::Failure, profile: &str, at: &Site) -> Problem {
    match f.file {
        Some(file) => Problem::NodeFile {
            profile: profile.to_owned(),
            file,
            at: at.clone(),
            line: f.line,
            message: f.message,
        },
        None => Problem::Template {
            profile: profile.to_owned(),
            template: f.template,
            at: at.clone(),
            message: f.message,
        },
    }
}

/// Index keys gathered by the first pass: (hash, position) pairs.
struct Keys {
    ids: Vec<(u64, u32)>,
    names: Vec<(u64, u32)>,
    macs: Vec<(u64, u32)>,
    v4: Vec<(u64, u32)>,
    v6: Vec<(u64, u32)>,
}

/// Builds a hash index from (hash, position) keys. Keys are inserted in the order hashbrown
/// will place them (`hash & (buckets - 1)`, then position), so the table fills front to back;
/// that order is a performance hint only, never a correctness assumption. A key equal to one
/// already inserted is not inserted: `dup(first, second)` reports it, `first` being the earlier
/// position among equal keys.
fn build_index<T>(
    mut keys: Vec<(u64, u32)>,
    slot: impl Fn(u32) -> T,
    same: impl Fn(&T, u32) -> bool,
    rehash: impl Fn(&T) -> u64,
    mut dup: impl FnMut(&T, u32),
) -> HashTable<T> {
    let n = keys.len();
    let buckets = if n < 8 {
        8
    } else {
        (n * 8 / 7).next_power_of_two()
    };
    let mask = buckets as u64 - 1;
    keys.sort_unstable_by_key(|&(h, i)| (h & mask, i));
    let mut table = HashTable::with_capacity(n);
    for (h, i) in keys {
        match table.find(h, |s| same(s, i)) {
            Some(first) => dup(first, i),
            None => {
                table.insert_unique(h, slot(i), &rehash);
            }
        }
    }
    table
}

/// The node part of a table under construction.
struct NodesBuilt {
    strings: String,
    nodes: Vec<NodeRec>,
    ifaces: Vec<IfaceRec>,
    v6: Vec<Ipv6Addr>,
    extras: Vec<NodeExtra>,
    by_mac: HashTable<u32>,
    by_name: HashTable<NameSlot>,
    by_v4: HashTable<u32>,
    by_v6: HashTable<u32>,
    domains: Vec<Box<str>>,
}

impl NodesBuilt {
    fn push_str(&mut self, s: &str) -> Span {
        let off = self.strings.len() as u32;
        self.strings.push_str(s);
        Span {
            off,
            len: s.len() as u32,
        }
    }
}
