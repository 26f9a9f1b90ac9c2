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
# Two load generators drive each sweep ($GENS): perfdhcp, and pserv-storm (this repository's
# generator: batched syscalls, one core; its own rates in $STORM_RATES). Before the servers, both
# generators flood pserv-storm's stateless do-nothing responder: the ceiling of the harness.
# SERVERS="pserv kea" picks which servers run (default: all three). With
# BASELINE=/path/to/an/older/pserv, that binary runs the same steps in the same run, and the
# summary gives the ratios against it (a change's before and after on one machine state).
# pserv journals every lease and fsyncs before each ACK during all of it.
# DHCPv6 (issue 27; FAMILIES="4 6" by default, FAMILIES=6 for it alone): pserv and Kea's
# kea-dhcp6 (memfile, persist on) swept by pserv-storm with SOLICIT/ADVERTISE/REQUEST/REPLY
# exchanges in RELAY-FORW messages from the relay's link address (fd00:77::2) to the server
# (fd00:77::1, unicast, port 547); the same rates ($STORM6_RATES), the same fixed rate for CPU
# per exchange. perfdhcp is not used for DHCPv6 (its relayed mode needs an interface to send
# from, not a unicast server), nor the do-nothing responder (DHCPv4 only).
# SERVERS="pserv pserv-logdhcp" (issue 26): pserv again with --log-dhcp, every request's
# decision line written to a file; the summary gives its rate and CPU per exchange against
# pserv's without the log.
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILIES=${FAMILIES:-"4 6"}
family() { [[ " $FAMILIES " == *" $1 "* ]]; }
STORM6_RATES=${STORM6_RATES:-"5000 10000 15000 20000 25000 30000 35000 40000 60000 80000 0"}
PERIOD=${PERIOD:-8}
CLIENTS=${CLIENTS:-50000}
RATES=${RATES:-"5000 10000 15000 20000 25000 30000 35000 0"}
STORM_RATES=${STORM_RATES:-"5000 10000 15000 20000 30000 40000 60000 80000 100000 120000 0"}
FIXED=${FIXED:-8000}
GENS=${GENS:-"perfdhcp storm"}
gen() { [[ " $GENS " == *" $1 "* ]]; }
SERVERS=${SERVERS:-"pserv kea dnsmasq"}
BASELINE=${BASELINE:-}
want() { [[ " $SERVERS " == *" $1 "* ]]; }
S=pbsrv$$; C=pbcli$$
. bench/common.sh
bench_init dhcp
server_pid=""
stop_server() {
  stop_pid "$server_pid"
  server_pid=""
}

need_root "network namespaces"
gen perfdhcp && family 4 && need perfdhcp kea-admin
want kea && family 4 && need kea-dhcp4 kea-dhcp4-server
want kea && family 6 && need kea-dhcp6 kea-dhcp6-server
want dnsmasq && need dnsmasq dnsmasq

cargo build --release -q -p pserv-bin -p pserv-storm
STORM=$bin/pserv-storm

ns_pair "$S" "$C" 10.77.0.1/16 10.77.0.2/16

hz=$(getconf CLK_TCK)
# Where pserv-storm sends (DHCPv4 here; the DHCPv6 section below switches them).
STORM_SERVER=10.77.0.1 STORM_RELAY=10.77.0.2 STORM_SUBNET=10.77.0.0/16

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

storm() { # RATE (0 = flood) -> "achieved do_drop% ra_drop% client_rcvbuf_drops wrong_answers"
  local out e0 e1
  e0=$(rcvbuf_errors "$C")
  out=$(timeout $((PERIOD + 30)) ip netns exec "$C" taskset -c 1 "$STORM" dhcp --server "$STORM_SERVER" \
        --relay "$STORM_RELAY" --clients "$CLIENTS" --rate "$1" --seconds "$PERIOD" \
        --subnet "$STORM_SUBNET" --json 2>/dev/null || true)
  e1=$(rcvbuf_errors "$C")
  field() { echo "$out" | sed -n "s/^  \"$1\": \([0-9.e+-]*\),*$/\1/p"; }
  awk -v r="$(field completed_rate)" -v a="$(field discover_drop_ratio)" -v b="$(field request_drop_ratio)" \
      -v l=$((e1 - e0)) -v o="$(field outside_subnet)" -v d="$(field duplicates)" \
      'BEGIN { if (r == "") print "0 100 100", l, 0; else printf "%.0f %.3f %.3f %d %d\n", r, a * 100, b * 100, l, o + d }'
}

declare -A BEST CPU RES
measure() { # NAME START: each generator's steps on a server START freshly starts (no leases)
  local name=$1 start=$2 g r res rate d1 d2 lost wrong rates best
  for g in $GENS; do
    $start
    sleep 1
    kill -0 "$server_pid" || { echo "$name did not start" >&2; exit 1; }
    best=0
    if [ "$g" = storm ]; then rates=$STORM_RATES; else rates=$RATES; fi
    for r in $rates; do
      if [ "$g" = storm ]; then res=$(storm "$r"); else res="$(perf "$r") 0"; fi
      read -r rate d1 d2 lost wrong <<<"$res"
      RES[$name,$g,$r]="$rate $d1 $d2"
      printf "  %-8s %-8s offered %-6s achieved %-9s drops %s%% / %s%%  (client socket drops: %s, wrong answers: %s)\n" \
        "$name" "$g" "${r/#0/flood}" "$rate" "$d1" "$d2" "$lost" "$wrong"
      if awk -v a="$d1" -v b="$d2" 'BEGIN {exit !(a < 1 && b < 1)}'; then
        best=$(awk -v a="$rate" -v b="$best" 'BEGIN {print (a > b) ? a : b}')
      fi
    done
    BEST[$name,$g]=$best
    # Fixed rate: CPU per exchange.
    local t0 t1
    t0=$(cpu_ticks "$server_pid")
    if [ "$g" = storm ]; then res=$(storm "$FIXED"); else res=$(perf "$FIXED"); fi
    read -r rate d1 d2 lost <<<"$res"
    t1=$(cpu_ticks "$server_pid")
    CPU[$name,$g]=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v r="$rate" -v p="$PERIOD" \
      'BEGIN {printf "%.1f", (r > 0) ? t / hz * 1e6 / (r * p) : 0}')
    echo "  $name ($g): best rate under 1% drops ${BEST[$name,$g]} DORA/s; ${CPU[$name,$g]} us CPU per exchange at $FIXED/s"
    stop_server
  done
}

if family 4; then
# The harness's ceiling: each generator flooding a responder that remembers and writes nothing.
echo "do-nothing responder (pserv-storm responder)"
ip netns exec "$S" taskset -c 0 "$STORM" responder --listen 10.77.0.1:67 --server-id 10.77.0.1 \
  --pool-start 10.77.1.0 --pool-size 60000 --seconds $((2 * PERIOD + 20)) >"$work/responder.out" 2>&1 &
server_pid=$!; started "$server_pid"
sleep 1
declare -A CEIL
for g in $GENS; do
  if [ "$g" = storm ]; then res=$(storm 0); else res="$(perf 0) 0"; fi
  read -r rate d1 d2 lost wrong <<<"$res"
  CEIL[$g]=$rate
  printf "  responder %-8s flood achieved %-9s drops %s%% / %s%%\n" "$g" "$rate" "$d1" "$d2"
done
stop_server

# pserv: journal in $work, fsync before every ACK.
cat >"$work/snap.json" <<'JSON'
{"generation": 1, "subnets": [{"cidr": "10.77.0.0/16", "router": "10.77.0.1", "dns_servers": ["10.77.0.1"],
  "lease_seconds": 3600, "renew_seconds": 900, "rebind_seconds": 1800,
  "dynamic": [{"start": "10.77.1.0", "end": "10.77.255.254"}]}]}
JSON
start_pserv_as() { # NAME BINARY [FLAG...], with an empty journal
  rm -rf "$work/$1-state"
  local name=$1 binary=$2; shift 2
  RUST_LOG=warn ip netns exec "$S" taskset -c 0 "$binary" serve --snapshot "$work/snap.json" \
    --dhcp-listen 10.77.0.1:67 --dns-listen 127.0.0.1:0 --control-listen 127.0.0.1:0 \
    --state-dir "$work/$name-state" "$@" >"$work/$name.out" 2>&1 &
  server_pid=$!; started "$server_pid"
}
start_pserv() { start_pserv_as pserv "$bin/pserv"; }
start_pserv_logdhcp() { start_pserv_as pserv-logdhcp "$bin/pserv" --log-dhcp; }
start_baseline() { start_pserv_as baseline "$BASELINE"; }
if want pserv; then echo pserv; measure pserv start_pserv; fi
if want pserv-logdhcp; then
  echo "pserv --log-dhcp"; measure pserv-logdhcp start_pserv_logdhcp
  echo "  decision lines written: $(grep -c 'pserv::dhcp' "$work/pserv-logdhcp.out" || true)"
fi
if [ -n "$BASELINE" ]; then echo baseline; measure baseline start_baseline; fi

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
start_kea() {
  rm -f "$work/kea/leases4.csv"*
  KEA_LOCKFILE_DIR="$work/kea" KEA_PIDFILE_DIR="$work/kea" ip netns exec "$S" taskset -c 0 \
    kea-dhcp4 -c "$work/kea/kea-dhcp4.json" >"$work/kea/out" 2>&1 &
  server_pid=$!; started "$server_pid"
}
if want kea; then echo kea; measure kea start_kea; fi

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
start_dnsmasq() {
  rm -f "$work/dnsmasq.leases"
  ip netns exec "$S" taskset -c 0 dnsmasq --no-daemon --conf-file="$work/dnsmasq.conf" \
    --pid-file="$work/dnsmasq.pid" >"$work/dnsmasq.out" 2>&1 &
  server_pid=$!; started "$server_pid"
}
if want dnsmasq; then echo dnsmasq; measure dnsmasq start_dnsmasq; fi
fi # family 4

if family 6; then
  ip -n "$S" -6 addr add fd00:77::1/64 dev vsrv nodad
  ip -n "$C" -6 addr add fd00:77::2/64 dev vcli nodad
  STORM_SERVER="[fd00:77::1]:547" STORM_RELAY=fd00:77::2 STORM_SUBNET=fd00:77::/64
  saved_gens=$GENS saved_rates=$STORM_RATES
  GENS=storm STORM_RATES=$STORM6_RATES
  cat >"$work/snap6.json" <<'JSON'
{"generation": 1, "subnets": [{"cidr": "10.77.0.0/16"},
  {"cidr": "fd00:77::/64", "dns_servers": ["fd00:77::1"], "lease_seconds": 4000,
   "preferred_seconds": 3000, "renew_seconds": 1000, "rebind_seconds": 2000,
   "dynamic": [{"start": "fd00:77::1:0", "end": "fd00:77::ffff:ffff"}]}]}
JSON
  start_pserv6() {
    rm -rf "$work/pserv6-state"
    RUST_LOG=warn ip netns exec "$S" taskset -c 0 "$bin/pserv" serve --snapshot "$work/snap6.json" \
      --dhcp-listen 10.77.0.1:67 --dhcp6-listen "[fd00:77::1]:547" --dns-listen 127.0.0.1:0 \
      --control-listen 127.0.0.1:0 --state-dir "$work/pserv6-state" >"$work/pserv6.out" 2>&1 &
    server_pid=$!; started "$server_pid"
  }
  if want pserv; then echo "pserv (DHCPv6)"; measure pserv6 start_pserv6; fi
  mkdir -p "$work/kea6"
  cat >"$work/kea6/kea-dhcp6.json" <<JSON
{ "Dhcp6": {
  "interfaces-config": { "interfaces": [ "vsrv/fd00:77::1" ] },
  "data-directory": "$work/kea6",
  "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea6/leases6.csv", "lfc-interval": 0 },
  "multi-threading": { "enable-multi-threading": false },
  "preferred-lifetime": 3000, "valid-lifetime": 4000, "renew-timer": 1000, "rebind-timer": 2000,
  "subnet6": [ { "id": 1, "subnet": "fd00:77::/64", "pools": [ { "pool": "fd00:77::1:0 - fd00:77::ffff:ffff" } ],
    "option-data": [ { "name": "dns-servers", "data": "fd00:77::1" } ] } ],
  "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "$work/kea6/kea.log" } ], "severity": "WARN" } ]
} }
JSON
  start_kea6() {
    rm -f "$work/kea6/leases6.csv"*
    KEA_LOCKFILE_DIR="$work/kea6" KEA_PIDFILE_DIR="$work/kea6" ip netns exec "$S" taskset -c 0 \
      kea-dhcp6 -c "$work/kea6/kea-dhcp6.json" >"$work/kea6/out" 2>&1 &
    server_pid=$!; started "$server_pid"
  }
  if want kea; then echo "kea (DHCPv6)"; measure kea6 start_kea6; fi
  GENS=$saved_gens STORM_RATES=$saved_rates
fi

echo
if family 6; then
  awk -v p="${BEST[pserv6,storm]:-0}" -v k="${BEST[kea6,storm]:-0}" -v cp="${CPU[pserv6,storm]:-0}" -v ck="${CPU[kea6,storm]:-0}" 'BEGIN {
    printf "[DHCPv6, storm] best SARR/s under 1%% drops: pserv %.0f  kea %.0f   pserv/kea %.2f\n", p, k, (k > 0) ? p / k : 0
    printf "[DHCPv6, storm] CPU per exchange at fixed rate: pserv %s us  kea %s us   pserv/kea %.2f\n", cp, ck, (ck > 0) ? cp / ck : 0
  }'
fi
family 4 || exit 0
for g in $GENS; do
  awk -v g="$g" -v p="${BEST[pserv,$g]:-0}" -v k="${BEST[kea,$g]:-0}" -v d="${BEST[dnsmasq,$g]:-0}" \
      -v cp="${CPU[pserv,$g]:-0}" -v ck="${CPU[kea,$g]:-0}" -v cd="${CPU[dnsmasq,$g]:-0}" -v c="${CEIL[$g]:-0}" 'BEGIN {
    printf "[%s] harness ceiling (do-nothing responder, flood) %.0f DORA/s\n", g, c
    printf "[%s] best DORA/s under 1%% drops: pserv %.0f  kea %.0f  dnsmasq %.0f   pserv/kea %.2f  pserv/dnsmasq %.2f\n", g, p, k, d, (k > 0) ? p / k : 0, (d > 0) ? p / d : 0
    printf "[%s] CPU per exchange at fixed rate: pserv %s us  kea %s us  dnsmasq %s us   pserv/kea %.2f\n", g, cp, ck, cd, (ck > 0) ? cp / ck : 0
  }'
done
# The generators side by side at the offered rates both ran (paced ones: a flood's rate depends
# on each generator's window): completed rate and drop ratios.
if gen perfdhcp && gen storm; then
  echo "perfdhcp vs pserv-storm at the same offered rate (completed DORA/s, DO/RA drop %):"
  for name in pserv baseline kea dnsmasq; do
    for r in $RATES; do
      [ "$r" = 0 ] && continue
      a=${RES[$name,perfdhcp,$r]:-}; b=${RES[$name,storm,$r]:-}
      [ -n "$a" ] && [ -n "$b" ] || continue
      read -r ra a1 a2 <<<"$a"; read -r rb b1 b2 <<<"$b"
      awk -v n="$name" -v r="$r" -v ra="$ra" -v rb="$rb" -v a1="$a1" -v a2="$a2" -v b1="$b1" -v b2="$b2" 'BEGIN {
        printf "  %-8s %6s/s  perfdhcp %9.0f (%.3f%% / %.3f%%)  storm %9.0f (%.3f%% / %.3f%%)  rate storm/perfdhcp %.3f\n", n, r, ra, a1, a2, rb, b1, b2, (ra > 0) ? rb / ra : 0
      }'
    done
  done
fi
if want pserv && want pserv-logdhcp; then
  for g in $GENS; do
    awk -v g="$g" -v p="${BEST[pserv,$g]:-0}" -v l="${BEST[pserv-logdhcp,$g]:-0}" -v cp="${CPU[pserv,$g]:-0}" -v cl="${CPU[pserv-logdhcp,$g]:-0}" 'BEGIN {
      printf "[%s] --log-dhcp: best DORA/s %.0f with the log, %.0f without (%.2f); CPU per exchange %s us with, %s us without (+%.1f us)\n", g, l, p, (p > 0) ? l / p : 0, cl, cp, cl - cp
    }'
  done
fi
if [ -n "$BASELINE" ]; then
  for g in $GENS; do
    awk -v g="$g" -v p="${BEST[pserv,$g]:-0}" -v b="${BEST[baseline,$g]:-0}" -v cp="${CPU[pserv,$g]:-0}" -v cb="${CPU[baseline,$g]:-0}" 'BEGIN {
      printf "[%s] vs baseline: best DORA/s %.0f / %.0f = %.2f   CPU per exchange %s / %s us = %.2f\n", g, p, b, (b > 0) ? p / b : 0, cp, cb, (cb > 0) ? cp / cb : 0
    }'
  done
fi
