#!/usr/bin/env bash
# Captures real clients talking to pserv and turns their requests into fuzz seeds:
# udhcpc, dhclient and perfdhcp for fuzz/corpus/dhcp_datagram, dig and kdig for
# fuzz/corpus/dns_query (seed-capture-<client>-NN; the hand-made seeds stay beside them).
#
# Needs root, tcpdump, python3 and the clients. Every packet stays inside the two network
# namespaces this script creates (joined by a veth pair); they and every process it starts are
# removed on exit. Usage: sudo fuzz/capture/capture.sh   (from a built workspace)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pserv=${PSERV:-$root/target/release/pserv}
[ -x "$pserv" ] || { echo "build first: cargo build --release -p pserv-bin" >&2; exit 2; }
for t in ip tcpdump python3 udhcpc dhclient perfdhcp dig kdig; do
  command -v "$t" >/dev/null || { echo "capture needs $t" >&2; exit 2; }
done

srv=pscap$$s cli=pscap$$c p=10.20
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pkill -f "dhclient .*$work" 2>/dev/null || true
  sleep 0.3
  ip netns del "$cli" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && cp "$work"/clients.log "$work"/*.pcap "$work"/*.err "$KEEP"
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$srv"; ip netns add "$cli"
ip link add "v$$s" type veth peer name "v$$c"
ip link set "v$$s" netns "$srv" name vsrv
ip link set "v$$c" netns "$cli" name vcli
# The bundled example snapshot (the one the fuzz targets serve): 10.20.0.0/16, server .0.2.
ip -n "$srv" addr add "$p.0.2/16" dev vsrv
for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
ip -n "$srv" link set vsrv up
ip -n "$cli" link set vcli address 52:54:00:12:34:56
ip -n "$cli" link set vcli up

ip netns exec "$srv" "$pserv" serve \
  --dhcp-listen 0.0.0.0:67 --dhcp-interface vsrv --dns-listen "$p.0.2:53" \
  --control-listen 127.0.0.1:0 --state-dir "$work/state" >"$work/pserv.log" 2>&1 &
pids+=($!)
sleep 1

# One capture per client, so each seed is named after the client that sent it.
dump=
phase() {
  if [ -n "$dump" ]; then sleep 0.5; kill "$dump"; wait "$dump" 2>/dev/null || true; fi
  dump=
  [ -n "${1:-}" ] || return 0
  ip netns exec "$srv" tcpdump -i vsrv --immediate-mode -U -s 0 -w "$work/$1.pcap" udp >/dev/null 2>"$work/$1.err" &
  dump=$!; pids+=("$dump")
  for _ in $(seq 100); do grep -q "listening on" "$work/$1.err" && break; sleep 0.1; done
  sleep 0.2
}

c() { timeout 30 ip netns exec "$cli" "$@" >>"$work/clients.log" 2>&1 || true; }
mac() { ip -n "$cli" link set vcli address "$1"; ip -n "$cli" addr flush dev vcli; }

# udhcpc: the reserved node, a PXE client, an unknown client with hostname, client id,
# requested address and FQDN; then one kept running that renews (SIGUSR1, unicast) and
# releases (SIGUSR2). Its script configures the address inside the client namespace only.
phase udhcpc
U=(udhcpc -i vcli -t 3 -T 1)
c "${U[@]}" -n -q -f -s /bin/true
c "${U[@]}" -n -q -f -s /bin/true -V PXEClient:Arch:00007:UNDI:003016 -x 0x5d:0007 -O tftp -O bootfile
mac 02:00:00:00:99:01
c "${U[@]}" -n -q -f -s /bin/true -x hostname:probe -x 0x3d:01020000009901 -r "$p.200.7" -F probe.maas -O search
printf '#!/bin/sh\ncase "$1" in bound|renew) ip addr replace "$ip/16" dev "$interface" ;; deconfig) ip addr flush dev "$interface" ;; esac\nexit 0\n' >"$work/udhcpc.sh"
chmod +x "$work/udhcpc.sh"
ip netns exec "$cli" "${U[@]}" -f -s "$work/udhcpc.sh" -x hostname:probe >"$work/udhcpc.log" 2>&1 &
upid=$!; pids+=("$upid")
for _ in $(seq 100); do grep -q obtained "$work/udhcpc.log" && break; sleep 0.1; done
kill -USR1 "$upid"; sleep 1
kill -USR2 "$upid"; sleep 1
kill "$upid"; wait "$upid" 2>/dev/null || true
cat "$work/udhcpc.log" >>"$work/clients.log"

phase dhclient
printf '#!/bin/sh\ncase "$reason" in BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/16" dev "$interface" ;; esac\nexit 0\n' >"$work/hook.sh"
chmod +x "$work/hook.sh"
D=(dhclient -4 -1 -v -sf "$work/hook.sh" -lf "$work/dh.leases" -pf "$work/dh.pid")
mac 52:54:00:12:34:56
c "${D[@]}" vcli; pkill -f "dhclient .*$work" || true
c "${D[@]}" vcli; pkill -f "dhclient .*$work" || true
printf 'send user-class "iPXE";\nsend vendor-class-identifier "HTTPClient:Arch:00016:UNDI:003016";\nrequest subnet-mask, routers, domain-name-servers, domain-name, host-name, bootfile-name, tftp-server-name;\n' >"$work/dh.conf"
mac 02:00:00:00:99:02
c "${D[@]}" -cf "$work/dh.conf" vcli; pkill -f "dhclient .*$work" || true
c "${D[@]}" -r vcli; pkill -f "dhclient .*$work" || true

# perfdhcp: random MACs, full exchanges (broadcast), then relayed from an address (giaddr).
phase perfdhcp
# (perfdhcp binds to an address of its interface even when it broadcasts.)
mac 02:00:00:00:99:03
ip -n "$cli" addr add "$p.0.5/16" dev vcli
c perfdhcp -4 -l vcli -r 10 -n 20 -R 20 -p 4
c perfdhcp -4 -l "$p.0.5" -r 10 -n 10 -R 10 -p 3 "$p.0.2"
c perfdhcp -4 -l "$p.0.5" -r 10 -n 5 -R 5 -p 3 -o 60,50584543 -o 77,69505845 "$p.0.2"

# dig and kdig: the record types and options a resolver or an operator sends.
S=@$p.0.2
phase dig
for q in "aaa.maas A" "aaa.maas AAAA" "maas SOA" "maas NS" "nope.maas A" \
         "bbb.maas TXT" "ccc.maas A" "20.10.in-addr.arpa SOA" "AaA.MaAs A" "-x $p.0.10" "-x fd00:20::10" "example.com A"; do
  c dig "$S" +time=1 +tries=1 $q
done
c dig "$S" +time=1 +tries=1 +noedns aaa.maas A
c dig "$S" +time=1 +tries=1 +dnssec +nsid +bufsize=1232 aaa.maas A
c dig "$S" +time=1 +tries=1 +subnet=10.1.0.0/16 +cookie aaa.maas A
c dig "$S" +time=1 +tries=1 +edns=1 aaa.maas A
c dig "$S" +time=1 +tries=1 +norec +qr aaa.maas MX
c dig "$S" +time=1 +tries=1 version.bind TXT CH
c dig "$S" +time=1 +tries=1 +notcp aaa.maas ANY   # dig asks ANY over TCP unless told
phase kdig
c kdig "$S" +time=1 +retry=0 aaa.maas A
c kdig "$S" +time=1 +retry=0 +padding=64 +nsid +dnssec aaa.maas AAAA
c kdig "$S" +time=1 +retry=0 -x "$p.0.10"
phase

rm -f "$root"/fuzz/corpus/dhcp_datagram/seed-capture-* "$root"/fuzz/corpus/dns_query/seed-capture-*
for client in udhcpc dhclient perfdhcp; do
  python3 "$here/pcap2seeds.py" "$work/$client.pcap" 67 "$root/fuzz/corpus/dhcp_datagram" "capture-$client"
done
for client in dig kdig; do
  python3 "$here/pcap2seeds.py" "$work/$client.pcap" 53 "$root/fuzz/corpus/dns_query" "capture-$client"
done
