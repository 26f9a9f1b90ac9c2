#!/usr/bin/env bash
# DHCP benchmark: pserv, ISC Kea (memfile, persist on) and dnsmasq side by side, in one run.
#
#   sudo bench/dhcp.sh      (root: it makes two network namespaces; apt-installs kea, dnsmasq
#                            and perfdhcp (kea-admin) when missing)
#
# Two namespaces joined by a veth pair: the server in one (10.77.0.1, pinned to core 0), perfdhcp
# in the other (10.77.0.2, pinned to core 1) acting as a relay: giaddr 10.77.0.2, up to $CLIENTS
# distinct clients, unicast to the server, replies to the relay on port 67. Every step is bounded
# ($PERIOD seconds). For each server:
#   1. sweep: the offered DORA rates in $RATES (and a flood, 0); reported: the highest rate
#      achieved with under 1% drops (both DISCOVER-OFFER and REQUEST-ACK);
#   2. fixed: $FIXED DORA/s offered; the server's CPU time per exchange from /proc (all its
#      processes and threads).
# SERVERS="pserv kea" picks which servers run (default: all three). With
# BASELINE=/path/to/an/older/pserv, that binary runs the same steps in the same run, and the
# summary gives the ratios against it (a change's before and after on one machine state).
# pserv journals every lease and fsyncs before each ACK during all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
PERIOD=${PERIOD:-8}
CLIENTS=${CLIENTS:-50000}
RATES=${RATES:-"5000 10000 15000 20000 25000 30000 35000 0"}
FIXED=${FIXED:-8000}
SERVERS=${SERVERS:-"pserv kea dnsmasq"}
BASELINE=${BASELINE:-}
want() { [[ " $SERVERS " == *" $1 "* ]]; }
S=pbsrv$$; C=pbcli$$
work=$(mktemp -d /tmp/pserv-dhcp-bench.XXXXXX)
server_pid=""
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill "$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
cleanup() {
  stop_server
  ip netns del "$C" 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
need() {
  command -v "$1" >/dev/null && return
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need perfdhcp kea-admin
need kea-dhcp4 kea-dhcp4-server
need dnsmasq dnsmasq

cargo build --release -q -p pserv-bin

ip netns add "$S"; ip netns add "$C"
ip link add "v$$s" type veth peer name "v$$c"
ip link set "v$$s" netns "$S" name vsrv
ip link set "v$$c" netns "$C" name vcli
ip -n "$S" addr add 10.77.0.1/16 dev vsrv
ip -n "$C" addr add 10.77.0.2/16 dev vcli
for ns in "$S" "$C"; do ip -n "$ns" link set lo up; done
ip -n "$S" link set vsrv up
ip -n "$C" link set vcli up

. bench/common.sh
hz=$(getconf CLK_TCK)

# UDP datagrams dropped because a socket's receive buffer was full, in namespace $1: on the
# client side these are replies perfdhcp could not read in time (a limit of the harness, not
# of the server), so each step reports them.
rcvbuf_errors() {
  ip netns exec "$1" awk '/^Udp:/ && !h {h=1; next} /^Udp:/ {print $6}' /proc/net/snmp
}

perf() { # RATE (0 = flood) -> "achieved do_drop ra_drop client_rcvbuf_drops"
  local rf=""; [ "$1" != 0 ] && rf="-r $1"
  local out e0 e1
  e0=$(rcvbuf_errors "$C")
  out=$(timeout $((PERIOD + 30)) ip netns exec "$C" taskset -c 1 perfdhcp -4 -g single -l 10.77.0.2 \
        $rf -R "$CLIENTS" -p "$PERIOD" 10.77.0.1 2>&1 || true)
  e1=$(rcvbuf_errors "$C")
  local rate d1 d2
  rate=$(echo "$out" | awk '/^Rate:/ {print $2}')
  d1=$(echo "$out" | awk '/drops ratio/ {print $3}' | sed -n 1p)
  d2=$(echo "$out" | awk '/drops ratio/ {print $3}' | sed -n 2p)
  echo "${rate:-0} ${d1:-100} ${d2:-100} $((e1 - e0))"
}

declare -A BEST CPU
measure() { # NAME: server already running as $server_pid
  local name=$1 best=0 r res rate d1 d2
  sleep 1
  for r in $RATES; do
    res=$(perf "$r"); read -r rate d1 d2 lost <<<"$res"
    printf "  %-8s offered %-6s achieved %-9s drops %s%% / %s%%  (replies the client's socket dropped: %s)\n" \
      "$name" "${r/#0/flood}" "$rate" "$d1" "$d2" "$lost"
    if awk -v a="$d1" -v b="$d2" 'BEGIN {exit !(a < 1 && b < 1)}'; then
      best=$(awk -v a="$rate" -v b="$best" 'BEGIN {print (a > b) ? a : b}')
    fi
  done
  BEST[$name]=$best
  # Fixed rate with fresh clients: CPU per exchange.
  local t0 t1 out
  t0=$(cpu_ticks "$server_pid")
  res=$(perf "$FIXED"); read -r rate d1 d2 lost <<<"$res"
  t1=$(cpu_ticks "$server_pid")
  CPU[$name]=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v r="$rate" -v p="$PERIOD" \
    'BEGIN {printf "%.1f", (r > 0) ? t / hz * 1e6 / (r * p) : 0}')
  echo "  $name: best rate under 1% drops ${BEST[$name]} DORA/s; ${CPU[$name]} us CPU per exchange at $FIXED/s"
}

# pserv: journal in $work, fsync before every ACK.
cat >"$work/snap.json" <<'JSON'
{"generation": 1, "subnets": [{"cidr": "10.77.0.0/16", "router": "10.77.0.1", "dns_servers": ["10.77.0.1"],
  "lease_seconds": 3600, "renew_seconds": 900, "rebind_seconds": 1800,
  "dynamic": [{"start": "10.77.1.0", "end": "10.77.255.254"}]}]}
JSON
run_pserv() { # NAME BINARY
  echo "$1"
  RUST_LOG=warn ip netns exec "$S" taskset -c 0 "$2" serve --snapshot "$work/snap.json" \
    --dhcp-listen 10.77.0.1:67 --dns-listen 127.0.0.1:0 --control-listen 127.0.0.1:0 \
    --state-dir "$work/$1-state" >"$work/$1.out" 2>&1 &
  server_pid=$!
  measure "$1"
  stop_server
}
if want pserv; then run_pserv pserv ./target/release/pserv; fi
if [ -n "$BASELINE" ]; then run_pserv baseline "$BASELINE"; fi

# Kea: memfile with persist (lease file written, lfc off).
mkdir -p "$work/kea"
cat >"$work/kea/kea-dhcp4.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "vsrv" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea/leases4.csv", "lfc-interval": 0 },
  "multi-threading": { "enable-multi-threading": false },
  "valid-lifetime": 3600, "renew-timer": 900, "rebind-timer": 1800,
  "subnet4": [ { "id": 1, "subnet": "10.77.0.0/16", "pools": [ { "pool": "10.77.1.0 - 10.77.255.254" } ],
    "option-data": [ { "name": "routers", "data": "10.77.0.1" }, { "name": "domain-name-servers", "data": "10.77.0.1" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$work/kea/kea.log" } ], "severity": "WARN" } ]
} }
JSON
if want kea; then
echo "kea"
KEA_LOCKFILE_DIR="$work/kea" KEA_PIDFILE_DIR="$work/kea" ip netns exec "$S" taskset -c 0 \
  kea-dhcp4 -c "$work/kea/kea-dhcp4.json" >"$work/kea/out" 2>&1 &
server_pid=$!
measure kea
stop_server
fi

# dnsmasq with its lease file.
cat >"$work/dnsmasq.conf" <<CONF
port=0
interface=vsrv
bind-interfaces
dhcp-range=10.77.1.0,10.77.255.254,255.255.0.0,1h
dhcp-lease-max=200000
dhcp-leasefile=$work/dnsmasq.leases
dhcp-authoritative
no-ping
quiet-dhcp
CONF
if want dnsmasq; then
echo "dnsmasq"
ip netns exec "$S" taskset -c 0 dnsmasq --no-daemon --conf-file="$work/dnsmasq.conf" \
  --pid-file="$work/dnsmasq.pid" >"$work/dnsmasq.out" 2>&1 &
server_pid=$!
measure dnsmasq
stop_server
fi

echo
awk -v p="${BEST[pserv]:-0}" -v k="${BEST[kea]:-0}" -v d="${BEST[dnsmasq]:-0}" \
    -v cp="${CPU[pserv]:-0}" -v ck="${CPU[kea]:-0}" -v cd="${CPU[dnsmasq]:-0}" 'BEGIN {
  printf "best DORA/s under 1%% drops: pserv %.0f  kea %.0f  dnsmasq %.0f   pserv/kea %.2f  pserv/dnsmasq %.2f\n", p, k, d, (k > 0) ? p / k : 0, (d > 0) ? p / d : 0
  printf "CPU per exchange at fixed rate: pserv %s us  kea %s us  dnsmasq %s us   kea/pserv %.2f\n", cp, ck, cd, (cp > 0) ? ck / cp : 0
}'
if [ -n "$BASELINE" ]; then
  awk -v p="${BEST[pserv]:-0}" -v b="${BEST[baseline]:-0}" -v cp="${CPU[pserv]:-0}" -v cb="${CPU[baseline]:-0}" 'BEGIN {
    printf "vs baseline: best DORA/s %.0f / %.0f = %.2f   CPU per exchange %s / %s us = %.2f\n", p, b, (b > 0) ? p / b : 0, cp, cb, (cb > 0) ? cp / cb : 0
  }'
fi
