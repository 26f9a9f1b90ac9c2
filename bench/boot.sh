#!/usr/bin/env bash
# Boot storm: $MACHINES simulated machines powered on at once (pserv-storm boot), booted from
# pserv alone, from dnsmasq (DHCP + its TFTP + its DNS: the all-in-one a user would pick
# instead) and from Kea + tftpd-hpa + nginx, with the same files, in the same namespaces, in
# one run.
#
#   sudo bench/boot.sh     (root: network namespaces; apt-installs dnsmasq, kea-dhcp4-server,
#                           tftpd-hpa and nginx-light when missing, without starting them)
#
# Two namespaces joined by a veth pair: the server side in one (10.88.0.1, pinned to core 0),
# the generator in the other (10.88.0.2, pinned to core 1) posing as the relay of the machines'
# link, 10.89.0.0/16 (giaddr 10.89.0.1), which the server reaches through it, as a routed
# provisioning network is. The machines' reserved addresses are local to the generator's
# namespace, so each machine fetches and looks up from its own address. (Routed rather than on
# one link with the server: 1,000 neighbours would otherwise overflow the kernel's ARP table,
# gc_thresh3 = 1024 for all namespaces together, and measure that instead of the servers.) Every machine is a node of the controller:
# MAC, reserved address, hostname; each server is given the same facts in its own form (pserv a
# snapshot; dnsmasq dhcp-host lines and per-MAC pxelinux configs, as cobbler writes them; Kea
# host reservations and per-address iPXE scripts under nginx).
#
# What each machine does (BIOS, option 93 = 0), as its firmware would:
#   pserv:   DORA -> undionly.kpxe (TFTP) -> iPXE DORA -> its script (HTTP) -> kernel and initrd
#            (HTTP) -> DNS A and PTR of itself (pserv's DNS)
#   dnsmasq: DORA -> pxelinux.0 (TFTP) -> pxelinux.cfg/01-<mac> (TFTP) -> kernel and initrd
#            (TFTP) -> DNS A and PTR (dnsmasq's DNS)
#   Kea:     DORA -> undionly.kpxe (tftpd-hpa) -> iPXE DORA -> script (nginx) -> kernel and
#            initrd (nginx); Kea serves no DNS, so no lookups
# With INSTALLER=1 each machine then runs the installer's step (issue 21): it fetches its
# preseed from the URL on its command line and reports a progress stage beside it. pserv
# renders each machine's preseed from the profile's node_files and serves it only to that
# machine; Kea's stack serves hand-written per-MAC files from nginx, which answers the
# progress URL 204 (what cobbler's web server does); dnsmasq has no HTTP, so its machines
# skip the step.
# Every file fetched is compared with the boot directory's, byte for byte; every configuration
# must name the machine. Printed: machines booted, failures by phase, time to all booted, and
# pserv's time against the others'.
set -euo pipefail
cd "$(dirname "$0")/.."
MACHINES=${MACHINES:-1000}
KERNEL_MB=${KERNEL_MB:-4}
INITRD_MB=${INITRD_MB:-8}
DEADLINE=${DEADLINE:-300}
SERVERS=${SERVERS:-"pserv dnsmasq kea"}
# pserv-grub (issue 22; add it to SERVERS): pserv with boot.chain "grub", the machines
# alternating BIOS (iPXE, as above) and x86-64 UEFI, which take Debian's signed chain: shim
# over TFTP, its three look-ups beside itself, GRUB, GRUB's /grub/grub.cfg, kernel and initrd
# over TFTP (Debian's signed GRUB has no HTTP).
# pserv-proxy and dnsmasq-proxy (issue 23; add them to SERVERS): the addresses come from a
# site DHCP server pserv does not run (dnsmasq, addresses only, the same reservations, in its
# own namespace at 10.86.0.1), the boot from a proxyDHCP server at 10.88.0.1: pserv with the
# subnet proxy_dhcp, against dnsmasq's own proxy mode (dhcp-range=...,proxy, its TFTP, the
# same per-MAC pxelinux configs). The generator relays every DHCP message to both, as a relay
# configured with both servers does; each machine takes its address from the site server's
# offer and its boot file from the proxy's.
# pserv-page (issue 25; add it to SERVERS beside pserv): pserv as above with its status page
# open in headless Chromium for the whole storm (started in the server's namespace, where the
# control API is, pinned to the generator's core at nice 19: an operator's browser is not on
# the server), so the two times compare the storm with the page closed and open in one run.
# The page must be live (one /v1/events listener) before and after the storm; the browser's
# CPU time during the storm is printed. PAGE_CLIENT=curl streams /v1/events with curl
# instead of the browser (what serving the stream costs pserv, without a browser's CPU).
# pserv-dual (issue 27; add it to SERVERS): a dual-stack storm: every second machine boots
# over IPv6 (x86-64 UEFI with its IPv4 PXE off): relayed DHCPv6 (link fd00:89::/64, the relay
# at fd00:89::1) with option 61, `tftp://[fd00:88::1]/shimx64.efi`, the grub chain over TFTP on
# IPv6 from its own address, PTR and AAAA lookups over IPv6; the others BIOS iPXE over IPv4 as
# above. pserv listens on dual-stack wildcards for TFTP and HTTP boot.
# PERF=FILE records pserv's profile during its storm (perf record -g) into FILE, PERF_STORM=FILE
# the generator's (of the last storm run).
INSTALLER=${INSTALLER:-0}
want() { [[ " $SERVERS " == *" $1 "* ]]; }
S=pbbs$$; C=pbbc$$; A=pbba$$
. bench/common.sh
bench_init boot

need_root "network namespaces"
want dnsmasq && need dnsmasq dnsmasq
want kea && need kea-dhcp4 kea-dhcp4-server
want kea && need in.tftpd tftpd-hpa
want kea && need nginx nginx-light
need python3 python3

cargo build --release -q -p pserv-bin -p pserv-storm
PSERV=$bin/pserv
STORM=$bin/pserv-storm

ns_pair "$S" "$C" 10.88.0.1/16 10.88.0.2/16
# The machines' link lives in the generator's namespace; the server routes to it.
ip -n "$C" route add local 10.89.0.0/16 dev lo
ip -n "$S" route add 10.89.0.0/16 via 10.88.0.2
if want pserv-dual; then
  # The same for IPv6: the machines' link fd00:89::/64 is local to the generator (which binds
  # its addresses: non-local binds allowed) and routed to it from the server.
  ip -n "$S" -6 addr add fd00:88::1/64 dev vsrv nodad
  ip -n "$C" -6 addr add fd00:88::2/64 dev vcli nodad
  ip -n "$C" -6 route add local fd00:89::/64 dev lo
  ip netns exec "$C" sysctl -qw net.ipv6.ip_nonlocal_bind=1
  ip -n "$S" -6 route add fd00:89::/64 via fd00:88::2
fi

# The same boot files for everyone: iPXE and pxelinux binaries (random bytes when the real
# ones are not installed: nothing executes them here), a kernel and an initrd.
root="$work/boot"; mkdir -p "$root/images" "$root/pxelinux.cfg" "$root/ipxe"
for f in undionly.kpxe ipxe.efi; do
  if [ -e "/usr/lib/ipxe/$f" ]; then cp "/usr/lib/ipxe/$f" "$root/"; else head -c 70000 /dev/urandom >"$root/$f"; fi
done
# The signed chain: Debian's shim and network GRUB when installed, else random bytes of their sizes.
if [ -e /usr/lib/shim/shimx64.efi.signed ]; then cp /usr/lib/shim/shimx64.efi.signed "$root/shimx64.efi"; else head -c 950000 /dev/urandom >"$root/shimx64.efi"; fi
if [ -e /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed ]; then cp /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed "$root/grubx64.efi"; else head -c 1900000 /dev/urandom >"$root/grubx64.efi"; fi
if [ -e /usr/lib/PXELINUX/pxelinux.0 ]; then cp /usr/lib/PXELINUX/pxelinux.0 "$root/"; else head -c 42000 /dev/urandom >"$root/pxelinux.0"; fi
head -c $((KERNEL_MB << 20)) /dev/urandom >"$root/images/vmlinuz"
head -c $((INITRD_MB << 20)) /dev/urandom >"$root/images/initrd.img"

# The controller's facts, in each server's form.
python3 - "$work" "$root" "$MACHINES" "$INSTALLER" <<'PY'
import json, os, sys
work, root, n, installer = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
PRESEED = ("d-i debian-installer/locale string en_US.UTF-8\nd-i netcfg/get_hostname string %s\n"
           "d-i netcfg/get_domain string lab\nd-i mirror/http/hostname string deb.debian.org\n"
           "d-i preseed/early_command string wget -q -O /dev/null '%s?stage=early'\n")
def mac(i): return "02:b0:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
def ip(i): return "10.89.%d.%d" % (1 + (i + 1) // 256, (i + 1) % 256)
nodes, hosts, kea = [], [], []
for i in range(n):
    h = "m%05d" % i
    nodes.append({"id": h, "hostname": h, "domain": "lab",
                  "interfaces": [{"mac": mac(i), "ipv4": ip(i)}],
                  "boot": {"profile": "install"}})
    hosts.append("%s,%s,%s" % (mac(i), ip(i), h))  # dhcp-hostsfile lines: dhcp-host= left out
    kea.append({"hw-address": mac(i), "ip-address": ip(i), "hostname": h})
    cmd = "console=ttyS0 pserv.host=%s" % h
    if installer:
        d = "nodes/%s" % mac(i).replace(":", "-")
        # Kea's stack serves them from its own directory: pserv renders its own.
        os.makedirs("%s/kea-www/%s" % (work, d), exist_ok=True)
        open("%s/kea-www/%s/preseed.cfg" % (work, d), "w").write(
            PRESEED % (h, "http://10.88.0.1:8080/%s/progress" % d))
        kea_cmd = cmd + " url=http://10.88.0.1:8080/%s/preseed.cfg" % d
    else:
        kea_cmd = cmd
    with open("%s/pxelinux.cfg/01-%s" % (root, mac(i).replace(":", "-")), "w") as f:
        f.write("DEFAULT install\nLABEL install\n  KERNEL images/vmlinuz\n  APPEND initrd=images/initrd.img %s\n" % cmd)
    with open("%s/ipxe/%s" % (root, ip(i)), "w") as f:
        f.write("#!ipxe\nkernel http://10.88.0.1:8080/images/vmlinuz %s\ninitrd http://10.88.0.1:8080/images/initrd.img\nboot\n" % kea_cmd)
profile = {"kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
           "cmdline": "console=ttyS0 pserv.host={{ node.hostname }}"}
if installer:
    profile["cmdline"] += " url={{ node_files_url }}preseed.cfg"
    profile["node_files"] = {"preseed.cfg": PRESEED % ("{{ node.hostname }}", "{{ progress_url }}")}
snap = {"generation": 1,
        "boot_profiles": {"install": profile},
        "subnets": [{"cidr": "10.89.0.0/16", "router": "10.89.0.1", "dns_servers": ["10.88.0.1"],
                     "domain": "lab", "lease_seconds": 3600, "unknown_clients": "ignore", "boot": {}}],
        "nodes": nodes}
json.dump(snap, open(work + "/snap.json", "w"))
snap["subnets"][0]["boot"] = {"chain": "grub"}
json.dump(snap, open(work + "/snap-grub.json", "w"))
snap["subnets"][0]["boot"] = {}
dual = json.loads(json.dumps(snap))
for i, node in enumerate(dual["nodes"]):
    node["interfaces"][0]["ipv6"] = "fd00:89::1:%x" % (i + 1)
dual["subnets"].append({"cidr": "fd00:89::/64", "dns_servers": ["fd00:88::1"], "domain": "lab",
                        "lease_seconds": 3600, "unknown_clients": "ignore", "boot": {"chain": "grub"}})
json.dump(dual, open(work + "/snap-dual.json", "w"))
snap["subnets"][0]["proxy_dhcp"] = True
snap["subnets"][0]["unknown_clients"] = "ignore"
snap["subnets"][0].pop("dns_servers", None)
json.dump(snap, open(work + "/snap-proxy.json", "w"))
open(work + "/dnsmasq.hosts", "w").write("\n".join(hosts) + "\n")
json.dump(kea, open(work + "/kea.hosts.json", "w"))
PY

declare -A ALL REPORT
# UDP datagrams a full socket buffer dropped, in namespace $1.
rcvbuf_errors() { ip netns exec "$1" awk '/^Udp:/ && !h {h=1; next} /^Udp:/ {print $6}' /proc/net/snmp; }
storm() { # NAME [ARCH [PROXY]]; STORM_EXTRA: more pserv-storm arguments
  local out s0 c0 arch=${2:-bios} server=10.88.0.1 proxy=()
  if [ -n "${3:-}" ]; then server=10.86.0.1; proxy=(--proxy "$3"); fi
  local extra=()
  read -ra extra <<<"${STORM_EXTRA:-}"
  proxy+=("${extra[@]}")
  s0=$(rcvbuf_errors "$S"); c0=$(rcvbuf_errors "$C")
  out=$(timeout $((DEADLINE + 60)) ip netns exec "$C" taskset -c 1 ${PERF_STORM:+perf record -F 999 -g -o "$PERF_STORM" --} "$STORM" boot --server "$server" "${proxy[@]}" \
        --relay 10.89.0.1 --machines "$MACHINES" --arch "$arch" --leased-source --boot-dir "$root" \
        --deadline "$DEADLINE" --json 2>/dev/null || true)
  REPORT[$1]=$out
  echo "  UDP datagrams dropped at full socket buffers: server side $(( $(rcvbuf_errors "$S") - s0 )), machines' side $(( $(rcvbuf_errors "$C") - c0 ))"
  local booted failed all
  booted=$(echo "$out" | sed -n 's/^  "booted": \([0-9]*\),*$/\1/p')
  failed=$(echo "$out" | sed -n 's/^  "failed": \([0-9]*\),*$/\1/p')
  all=$(echo "$out" | sed -n 's/^  "time_to_all_booted_s": \([0-9.e+-]*\),*$/\1/p')
  ALL[$1]=${all:-0}
  printf "%-8s booted %5s / %s  failed %5s  time to all booted %8.2f s\n" "$1" "${booted:-0}" "$MACHINES" "${failed:-$MACHINES}" "${all:-0}"
  echo "$out" | python3 -c '
import json, sys
try: r = json.load(sys.stdin)
except Exception: sys.exit(0)
for k, l in sorted(r["phases"].items()):
    print("    %-10s n=%-6d p50 %8.1f ms  p99 %8.1f ms  max %8.1f ms" % (k, l["samples"], l["p50_ms"], l["p99_ms"], l["max_ms"]))
print("    %-10s        p50 %8.1f ms  p99 %8.1f ms  max %8.1f ms" % ("booted", r["time_to_booted"]["p50_ms"], r["time_to_booted"]["p99_ms"], r["time_to_booted"]["max_ms"]))
for why, n in r["failures"].items(): print("    failed %5d  %s" % (n, why))
print("    generator CPU %.2f s" % r.get("generator_cpu_s", 0))
if r.get("resends"): print("    resent after a silence (DHCP retries, TFTP RRQ/ACK resends): " + ", ".join("%s %d" % kv for kv in r["resends"].items()))
if r["unnamed"] or r["no_dns"]: print("    not checked: %d machines got no hostname (name check, DNS skipped), %d no DNS server" % (r["unnamed"], r["no_dns"]))
'
}

echo "== $MACHINES machines at once; kernel ${KERNEL_MB} MiB, initrd ${INITRD_MB} MiB =="
if want pserv; then
  RUST_LOG=warn ip netns exec "$S" taskset -c 0 "$PSERV" serve --snapshot "$work/snap.json" \
    --boot-dir "$root" --dhcp-listen 10.88.0.1:67 --tftp-listen 10.88.0.1:69 \
    --boot-http-listen 10.88.0.1:5248 --dns-listen 10.88.0.1:53 --control-listen 127.0.0.1:5381 \
    --state-dir "$work/pserv-state" >"$work/pserv.log" 2>&1 &
  p=$!; started "$p"; sleep 1
  p0=$(cpu_ticks "$p")
  perf_pid=""
  if [ -n "${PERF:-}" ]; then perf record -F 999 -g -o "$PERF" -p "$p" 2>/dev/null & perf_pid=$!; started "$perf_pid"; fi
  storm pserv
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; forget "$perf_pid"; fi
  echo "  pserv CPU during the storm: $(( $(cpu_ticks "$p") - p0 )) ticks (1/100 s); its TFTP: $(ip netns exec "$S" curl -s http://127.0.0.1:5381/metrics | awk '/^pserv_tftp_(trouble|dropped)_total/ && $2 > 0 {printf "%s %s  ", $1, $2}')"
  stop_pid "$p"
fi

if want pserv-page; then
  need chromium chromium
  RUST_LOG=warn ip netns exec "$S" taskset -c 0 "$PSERV" serve --snapshot "$work/snap.json" \
    --boot-dir "$root" --dhcp-listen 10.88.0.1:67 --tftp-listen 10.88.0.1:69 \
    --boot-http-listen 10.88.0.1:5248 --dns-listen 10.88.0.1:53 --control-listen 127.0.0.1:5380 \
    --state-dir "$work/pserv-page-state" >"$work/pserv-page.log" 2>&1 &
  p=$!; started "$p"; sleep 1
  if [ "${PAGE_CLIENT:-chromium}" = curl ]; then
    ip netns exec "$S" taskset -c 1 nice -n 19 curl -sN 'http://127.0.0.1:5380/v1/events?since=0' \
      >"$work/curl-events.txt" 2>&1 &
  else
    ip netns exec "$S" taskset -c 1 nice -n 19 chromium --headless=new --no-sandbox --disable-gpu \
      --disable-dev-shm-usage --no-first-run --user-data-dir="$work/chromium" \
      --window-size=1400,1200 http://127.0.0.1:5380/ >"$work/chromium.log" 2>&1 &
  fi
  b=$!; started "$b"
  c0=$(cpu_ticks "$b"); p0=$(cpu_ticks "$p")
  listeners() { ip netns exec "$S" curl -s http://127.0.0.1:5380/metrics | sed -n 's/^pserv_events_listeners //p'; }
  for _ in $(seq 100); do [ "$(listeners)" = 1 ] && break; sleep 0.1; done
  echo "  status page open: $(listeners) event listener(s)"
  storm pserv-page
  echo "  CPU ticks (1/100 s) during the storm: the page's client $(( $(cpu_ticks "$b") - c0 )), pserv $(( $(cpu_ticks "$p") - p0 ))"
  echo "  status page still open after the storm: $(listeners) event listener(s)"
  stop_pid "$b"; stop_pid "$p"
fi

if want pserv-grub; then
  RUST_LOG=warn ip netns exec "$S" taskset -c 0 "$PSERV" serve --snapshot "$work/snap-grub.json" \
    --boot-dir "$root" --dhcp-listen 10.88.0.1:67 --tftp-listen 10.88.0.1:69 \
    --boot-http-listen 10.88.0.1:5248 --dns-listen 10.88.0.1:53 --control-listen 127.0.0.1:0 \
    --state-dir "$work/pserv-grub-state" >"$work/pserv-grub.log" 2>&1 &
  p=$!; started "$p"; sleep 1
  storm pserv-grub mix
  stop_pid "$p"
fi

if want pserv-dual; then
  RUST_LOG=warn ip netns exec "$S" taskset -c 0 "$PSERV" serve --snapshot "$work/snap-dual.json" \
    --boot-dir "$root" --dhcp-listen 10.88.0.1:67 --dhcp6-listen "[fd00:88::1]:547" \
    --tftp-listen "[::]:69" --boot-http-listen "[::]:5248" --dns-listen 10.88.0.1:53 \
    --dns-listen "[fd00:88::1]:53" --control-listen 127.0.0.1:0 \
    --state-dir "$work/pserv-dual-state" >"$work/pserv-dual.log" 2>&1 &
  p=$!; started "$p"; sleep 1
  p0=$(cpu_ticks "$p")
  STORM_EXTRA="--server6 [fd00:88::1]:547 --relay6 fd00:89::1 --ipv6-every 2" storm pserv-dual bios
  echo "  pserv CPU during the storm: $(( $(cpu_ticks "$p") - p0 )) ticks (1/100 s)"
  stop_pid "$p"
fi

if want dnsmasq; then
  cat >"$work/dnsmasq.conf" <<CONF
listen-address=10.88.0.1
bind-interfaces
domain=lab
local=/lab/
dhcp-range=10.89.1.1,10.89.255.254,255.255.0.0,1h
dhcp-option=option:router,10.89.0.1
dhcp-option=option:dns-server,10.88.0.1
dhcp-hostsfile=$work/dnsmasq.hosts
dhcp-leasefile=$work/dnsmasq.leases
dhcp-authoritative
dhcp-boot=pxelinux.0,,10.88.0.1
enable-tftp
tftp-root=$root
tftp-max=2000
no-ping
quiet-dhcp
no-resolv
CONF
  ip netns exec "$S" taskset -c 0 dnsmasq --no-daemon --conf-file="$work/dnsmasq.conf" --user=root \
    --pid-file="$work/dnsmasq.pid" --log-facility=/dev/null >"$work/dnsmasq.out" 2>&1 &
  p=$!; started "$p"; sleep 1
  storm dnsmasq
  stop_pid "$p"
fi

if want kea; then
  mkdir -p "$work/kea"
  cat >"$work/kea/kea-dhcp4.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "vsrv" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea/leases4.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "client-classes": [
    { "name": "ipxe", "test": "option[77].hex == 'iPXE'", "boot-file-name": "http://10.88.0.1:8080/boot.ipxe" },
    { "name": "pxe", "test": "not member('ipxe')", "next-server": "10.88.0.1", "boot-file-name": "undionly.kpxe" } ],
  "subnet4": [ { "id": 1, "subnet": "10.89.0.0/16", "option-data": [ { "name": "routers", "data": "10.89.0.1" } ],
    "reservations": $(cat "$work/kea.hosts.json") } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$work/kea/kea.log" } ], "severity": "WARN" } ]
} }
JSON
  cat >"$work/nginx.conf" <<NGINX
user root;
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  server { listen 10.88.0.1:8080; root $root;
    location = /boot.ipxe { rewrite ^ /ipxe/\$remote_addr break; default_type text/plain; }
    location /nodes/ { root $work/kea-www; default_type text/plain; }
    location ~ ^/nodes/[^/]+/progress\$ { return 204; } }
}
NGINX
  KEA_LOCKFILE_DIR="$work/kea" KEA_PIDFILE_DIR="$work/kea" ip netns exec "$S" taskset -c 0 \
    kea-dhcp4 -c "$work/kea/kea-dhcp4.json" >"$work/kea/out" 2>&1 &
  k=$!; started "$k"
  ip netns exec "$S" taskset -c 0 in.tftpd -L -a 10.88.0.1:69 -u root -s "$root" >"$work/tftpd.log" 2>&1 &
  t=$!; started "$t"
  ip netns exec "$S" taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" &
  n=$!; started "$n"; sleep 1
  storm kea
  stop_pid "$n"; stop_pid "$t"; stop_pid "$k"
fi

if want pserv-proxy || want dnsmasq-proxy; then
  # The site's DHCP server: addresses only, the same reservations, no boot options, no DNS,
  # leases in memory (leasefile-ro): writing a lease file, dnsmasq answers ~400 DORA/s and is
  # then what both stacks measure (bench/README.md, issue 23).
  add_ns "$A"
  veth "$A" vsite 10.86.0.1/16 "$C" vaddr 10.86.0.2/16
  ip -n "$A" route add 10.89.0.0/16 via 10.86.0.2
  cat >"$work/site.conf" <<CONF
port=0
interface=vsite
bind-interfaces
dhcp-range=10.89.1.1,10.89.255.254,255.255.0.0,1h
dhcp-option=option:router,10.89.0.1
dhcp-hostsfile=$work/dnsmasq.hosts
leasefile-ro
dhcp-authoritative
no-ping
quiet-dhcp
no-resolv
CONF
  site() { # the site server for one stack
    rm -f "$work/site.leases"
    ip netns exec "$A" taskset -c 0 dnsmasq --no-daemon --conf-file="$work/site.conf" --user=root \
      --pid-file="$work/site.pid" --log-facility=/dev/null >"$work/site.out" 2>&1 &
    a=$!; started "$a"
  }
fi

if want pserv-proxy; then
  site
  RUST_LOG=warn ip netns exec "$S" taskset -c 0 "$PSERV" serve --snapshot "$work/snap-proxy.json" \
    --boot-dir "$root" --dhcp-listen 10.88.0.1:67 --tftp-listen 10.88.0.1:69 \
    --boot-http-listen 10.88.0.1:5248 --dns-listen 10.88.0.1:53 --control-listen 127.0.0.1:0 \
    --state-dir "$work/pserv-proxy-state" >"$work/pserv-proxy.log" 2>&1 &
  p=$!; started "$p"; sleep 1
  storm pserv-proxy bios 10.88.0.1
  stop_pid "$p"; stop_pid "$a"
fi

if want dnsmasq-proxy; then
  site
  cat >"$work/dnsmasq-proxy.conf" <<CONF
port=0
listen-address=10.88.0.1
bind-interfaces
dhcp-range=10.89.0.0,proxy,255.255.0.0
dhcp-boot=pxelinux.0,,10.88.0.1
pxe-service=x86PC,"pserv bench",pxelinux
enable-tftp
tftp-root=$root
tftp-max=2000
quiet-dhcp
no-resolv
CONF
  ip netns exec "$S" taskset -c 0 dnsmasq --no-daemon --conf-file="$work/dnsmasq-proxy.conf" --user=root \
    --pid-file="$work/dnsmasq-proxy.pid" --log-facility=/dev/null >"$work/dnsmasq-proxy.out" 2>&1 &
  p=$!; started "$p"; sleep 1
  storm dnsmasq-proxy bios 10.88.0.1
  stop_pid "$p"; stop_pid "$a"
fi

echo
if [ -n "${ALL[pserv-proxy]:-}" ] && [ -n "${ALL[dnsmasq-proxy]:-}" ]; then
  awk -v p="${ALL[pserv-proxy]}" -v d="${ALL[dnsmasq-proxy]}" 'BEGIN {
    if (p > 0 && d > 0) printf "time to all booted behind a site DHCP server: pserv proxy %.2f s, dnsmasq proxy %.2f s: pserv takes %.3f of its time\n", p, d, p / d }'
fi
if [ -n "${ALL[pserv]:-}" ] && [ -n "${ALL[pserv-page]:-}" ]; then
  awk -v c="${ALL[pserv]}" -v o="${ALL[pserv-page]}" 'BEGIN {
    if (c > 0 && o > 0) printf "time to all booted: pserv with the status page closed %.2f s, open %.2f s (%.3fx)\n", c, o, o / c }'
fi
if [ -n "${ALL[pserv-grub]:-}" ] && [ -n "${ALL[pserv-dual]:-}" ]; then
  awk -v g="${ALL[pserv-grub]}" -v d="${ALL[pserv-dual]}" 'BEGIN {
    if (g > 0 && d > 0) printf "time to all booted, half on the grub chain: over IPv4 %.2f s; that half over IPv6 %.2f s (%.2fx)\n", g, d, d / g }'
fi
if [ -n "${ALL[pserv]:-}" ] && [ -n "${ALL[pserv-grub]:-}" ]; then
  awk -v p="${ALL[pserv]}" -v g="${ALL[pserv-grub]}" 'BEGIN {
    if (p > 0 && g > 0) printf "time to all booted: pserv, all BIOS iPXE %.2f s; half x86-64 UEFI on the grub chain %.2f s (%.2fx)\n", p, g, g / p }'
fi
for other in dnsmasq kea; do
  [ -n "${ALL[pserv]:-}" ] && [ -n "${ALL[$other]:-}" ] || continue
  awk -v p="${ALL[pserv]}" -v o="${ALL[$other]}" -v n="$other" 'BEGIN {
    if (p > 0 && o > 0) printf "time to all booted: pserv %.2f s, %s %.2f s: pserv takes %.3f of %s'"'"'s time (%.1fx faster)\n", p, n, o, p / o, n, o / p }'
done
