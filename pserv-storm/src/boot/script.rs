//! What a simulated loader reads from its configuration: the kernel and initrds an iPXE
//! script or a pxelinux config names. Pure functions over text.

/// The files a configuration boots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Boots {
    /// The kernel.
    pub kernel: Option<String>,
    /// The initrds, in order.
    pub initrds: Vec<String>,
    /// Whether it boots from local disk instead (iPXE `sanboot`/`exit`, pxelinux `LOCALBOOT`).
    pub local: bool,
}

/// An iPXE script: `kernel URL args...` (or `chain`/`imgexec` of a kernel), `initrd URL`
/// lines (`--name x` options skipped); `sanboot` or `exit` means local boot.
pub fn ipxe(text: &str) -> Boots {
    let mut b = Boots::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(cmd) = words.next() else { continue };
        // The first argument that is not an option (nor the value of `--name x`, `-n x`,
        // `--timeout x`, `-t x`).
        let mut arg = || {
            while let Some(w) = words.next() {
                match w {
                    "--name" | "-n" | "--timeout" | "-t" => {
                        words.next();
                    }
                    w if w.starts_with('-') => {}
                    w => return Some(w),
                }
            }
            None
        };
        match cmd {
            "kernel" | "linux" | "imgexec" => {
                if let Some(a) = arg() {
                    b.kernel = Some(a.to_owned());
                }
            }
            "initrd" | "module" => {
                if let Some(a) = arg() {
                    b.initrds.push(a.to_owned());
                }
            }
            "sanboot" | "exit" => b.local = b.kernel.is_none(),
            _ => {}
        }
    }
    b
}

/// A GRUB configuration: the last `linux PATH args...` and `initrd PATH...` lines (GRUB runs
/// the first menu entry; where pserv writes an HTTP attempt with a TFTP fallback, the
/// fallback is what Debian's signed GRUB, which has no HTTP, loads). `(http,host)/path` is
/// read as `http://host/path`. A configuration with `chainloader` or `exit` and no `linux`
/// boots from local disk.
pub fn grub(text: &str) -> Boots {
    let mut b = Boots::default();
    let mut local = false;
    let path = |p: &str| match p.strip_prefix("(http,").and_then(|r| r.split_once(')')) {
        Some((host, rest)) => format!("http://{host}{rest}"),
        None => p.to_owned(),
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("linux" | "linuxefi") => b.kernel = words.next().map(path),
            Some("initrd" | "initrdefi") => b.initrds = words.map(path).collect(),
            Some("chainloader" | "exit") => local = true,
            _ => {}
        }
    }
    b.local = local && b.kernel.is_none();
    b
}

/// A pxelinux config: the first `LABEL`'s (or the `DEFAULT` one's) `KERNEL`/`LINUX` and
/// `INITRD` or `APPEND initrd=a,b`; `LOCALBOOT` means local boot. Keywords are
/// case-insensitive.
pub fn pxelinux(text: &str) -> Boots {
    let mut default: Option<String> = None;
    let mut labels: Vec<(String, Boots)> = Vec::new();
    let mut top = Boots::default();
    for line in text.lines() {
        let line = line.trim();
        let (kw, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let cur = match labels.last_mut() {
            Some((_, b)) => b,
            None => &mut top,
        };
        match kw.to_ascii_lowercase().as_str() {
            "default" => default = rest.split_whitespace().next().map(str::to_owned),
            "label" => labels.push((rest.to_owned(), Boots::default())),
            "kernel" | "linux" => cur.kernel = Some(rest.to_owned()),
            "initrd" => cur
                .initrds
                .extend(rest.split(',').map(|s| s.trim().to_owned())),
            "append" => {
                for w in rest.split_whitespace() {
                    if let Some(list) = w.strip_prefix("initrd=") {
                        cur.initrds.extend(list.split(',').map(str::to_owned));
                    }
                }
            }
            "localboot" => cur.local = true,
            _ => {}
        }
    }
    if let Some(d) = default
        && let Some((_, b)) = labels.iter().find(|(l, _)| *l == d)
    {
        return b.clone();
    }
    labels.into_iter().next().map_or(top, |(_, b)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipxe_scripts() {
        let s = "#!ipxe\nkernel http://10.0.0.1:5248/images/vmlinuz console=ttyS0 pserv.host=a\n\
                 initrd --name initrd.img http://10.0.0.1:5248/images/initrd.img\nboot\n";
        let b = ipxe(s);
        assert_eq!(
            b.kernel.as_deref(),
            Some("http://10.0.0.1:5248/images/vmlinuz")
        );
        assert_eq!(b.initrds, vec!["http://10.0.0.1:5248/images/initrd.img"]);
        assert!(!b.local);
        assert!(ipxe("#!ipxe\nsanboot --no-describe --drive 0x80 || exit\n").local);
    }

    #[test]
    fn grub_configurations_as_pserv_renders_them() {
        use pserv_core::table::{Endpoint, Loader};
        let snap: pserv_core::Snapshot = serde_json::from_value(serde_json::json!({
            "generation": 1,
            "boot_profiles": { "live": { "kernel": "images/vmlinuz",
                "initrd": ["images/initrd.img", "x.img"], "cmdline": "console=ttyS0" } },
            "subnets": [ { "cidr": "10.0.0.0/24" } ],
            "nodes": [
                { "id": "a", "hostname": "a", "domain": "lab", "boot": { "profile": "live" },
                  "interfaces": [ { "mac": "52:54:00:00:00:01", "ipv4": "10.0.0.5" } ] },
                { "id": "b", "hostname": "b", "domain": "lab",
                  "boot": { "profile": "live", "mode": "local" },
                  "interfaces": [ { "mac": "52:54:00:00:00:02", "ipv4": "10.0.0.6" } ] } ]
        }))
        .unwrap();
        let t = pserv_core::Table::compile(&snap, None).unwrap();
        for port in [5248, 80] {
            let at = Endpoint {
                server: "10.0.0.1".parse().unwrap(),
                http_port: port,
                syslog: None,
            };
            let cfg = t
                .render_boot(Loader::Grub, "52:54:00:00:00:01".parse().unwrap(), None, at)
                .unwrap()
                .text;
            // Over TFTP either way: the HTTP attempt's fallback, on port 80.
            let b = grub(&cfg);
            assert_eq!(b.kernel.as_deref(), Some("/images/vmlinuz"), "{cfg}");
            assert_eq!(b.initrds, vec!["/images/initrd.img", "/x.img"], "{cfg}");
            assert!(!b.local);
            let local = t
                .render_boot(Loader::Grub, "52:54:00:00:00:02".parse().unwrap(), None, at)
                .unwrap()
                .text;
            assert!(grub(&local).local, "{local}");
        }
        let h = grub("linux (http,10.0.0.1)/k a=b\ninitrd (http,10.0.0.1)/i\n");
        assert_eq!(h.kernel.as_deref(), Some("http://10.0.0.1/k"));
        assert_eq!(h.initrds, vec!["http://10.0.0.1/i"]);
    }

    #[test]
    fn pxelinux_configs() {
        let s = "DEFAULT install\nLABEL other\n KERNEL x\nLABEL install\n  KERNEL images/vmlinuz\n  \
                 APPEND initrd=images/initrd.img,extra.img console=ttyS0\n";
        let b = pxelinux(s);
        assert_eq!(b.kernel.as_deref(), Some("images/vmlinuz"));
        assert_eq!(b.initrds, vec!["images/initrd.img", "extra.img"]);
        let l = pxelinux("DEFAULT local\nLABEL local\n LOCALBOOT 0\n");
        assert!(l.local && l.kernel.is_none());
        let top = pxelinux("kernel k\ninitrd i\n");
        assert_eq!((top.kernel.as_deref(), top.initrds.len()), (Some("k"), 1));
    }
}
