#!/usr/bin/env bash
# Cluster benchmark (issue 13): a two-instance pserv cluster on a three-member etcd against an
# ISC Kea HA hot-standby pair (libdhcp_ha.so, memfile with persist on), in one run.
#
#   sudo bench/cluster.sh      (root: it makes network namespaces; apt-installs etcd-server
#                               and kea-dhcp4-server when missing)
#
# One bridge (in a hub namespace) joins every namespace: servers s1 (10.79.0.1) and s2
# (10.79.0.2), etcd members e1-e3 (10.79.1.11-13), and the generator g (10.79.0.100), which
# relays (giaddr) every request to both servers, as a relay with two helper addresses does.
# Servers (pserv or Kea, and etcd) are pinned to core 0, the generator to core 1.
#
# For each stack:
#   1. sweep: offered DORA rates ($PSERV_RATES / $KEA_RATES, each $PERIOD s, $CLIENTS clients
#      cycled: later rounds renew, each ACK a committed lease all the same); reported: the
#      highest rate completed with under 1% drops (both phases);
#   2. failover: a paced storm runs while the serving instance is killed (kill -9: pserv's s1,
#      Kea's primary); then probes of $PROBE fresh clients every few hundred ms until one
#      is answered in full: the time from the kill to that probe is the failover time.
# Every step is bounded in time; everything started is stopped by PID, namespaces removed.
set -euo pipefail
cd "$(dirname "$0")/.."
PERIOD=${PERIOD:-6}
PSERV_RATES=${PSERV_RATES:-"2000 4000 6000 8000 10000 12000 14000 16000 20000"}
KEA_RATES=${KEA_RATES:-"500 1000 2000 3000 4000 5000 6000 8000"}
PROBE=${PROBE:-40}
CLIENTS=${CLIENTS:-30000}
SETTLE=${SETTLE:-10}
STACKS=${STACKS:-"pserv kea"}
want() { [[ " $STACKS " == *" $1 "* ]]; }

. bench/common.sh
T=pcb$$
bench_init cluster
need_root "network namespaces"
want pserv && need etcd etcd-server
want kea && need kea-dhcp4 kea-dhcp4-server
HOOKS=/usr/lib/x86_64-linux-gnu/kea/hooks

cargo build --release -q -p pserv-bin -p pserv-storm
STORM=$bin/pserv-storm
PSERV=$bin/pserv

ns() { echo "$T$1"; }
member() { # NAME ADDR/LEN: a namespace on the hub's bridge, interface vs
  add_ns "$(ns "$1")"
  plug "$(ns hub)" br0 "$(ns "$1")" vs "$2"
}
add_ns "$(ns hub)"
bridge "$(ns hub)" br0
for s in 1 2; do member "s$s" "10.79.0.$s/16"; done
for e in 1 2 3; do member "e$e" "10.79.1.1$e/16"; done
member g 10.79.0.100/16

# Runs a storm from the generator: RATE SECONDS PREFIX CLIENTS [TIMEOUT_MS] -> JSON report.
storm() {
  timeout $((${2%.*} + 30)) ip netns exec "$(ns g)" taskset -c 1 "$STORM" dhcp \
    --server 10.79.0.1 --server 10.79.0.2 --relay 10.79.0.100 --subnet 10.79.0.0/16 \
    --rate "$1" --seconds "$2" --mac-prefix "$3" --clients "$4" --timeout-ms "${5:-1000}" \
    --json 2>/dev/null || true
}
field() { sed -n "s/^  \"$2\": \([0-9.e+-]*\),*$/\1/p" <<<"$1"; }

# The sweep: prints each step, sets BEST.
sweep() { # NAME RATES
  local r out rate d1 d2
  BEST=0
  for r in $2; do
    out=$(storm "$r" "$PERIOD" 02:10 "$CLIENTS")
    rate=$(field "$out" completed_rate); d1=$(field "$out" discover_drop_ratio); d2=$(field "$out" request_drop_ratio)
    printf "  %-6s offered %-6s completed %-8.0f drops %.3f%% / %.3f%%  duplicates %s\n" "$1" "$r" \
      "${rate:-0}" "$(awk -v d="${d1:-1}" 'BEGIN{print d*100}')" "$(awk -v d="${d2:-1}" 'BEGIN{print d*100}')" \
      "$(field "$out" duplicates)"
    if awk -v a="${d1:-1}" -v b="${d2:-1}" 'BEGIN {exit !(a < 0.01 && b < 0.01)}'; then
      BEST=$(awk -v a="$rate" -v b="$BEST" 'BEGIN {printf "%.0f", (a > b) ? a : b}')
    fi
  done
}

# Failover: KILL_PID; probes until one of $PROBE fresh clients is answered in full.
failover() { # NAME PID
  local t0 t1 k=0 out acks
  # Let the sweep's overload drain first: the failover is measured on a settled cluster.
  sleep "$SETTLE"
  ( storm 200 12 02:f0 5000 >"$work/$1-across.json" ) &
  local bg=$!
  sleep 3
  t0=$(date +%s.%N)
  kill -9 "$2"; forget "$2"
  while :; do
    k=$((k + 1))
    out=$(storm 400 0.1 "$(printf '02:%02x' $((0x80 + k)))" "$PROBE" 300)
    acks=$(field "$out" acks)
    t1=$(date +%s.%N)
    if [ "${acks:-0}" -ge "$PROBE" ]; then break; fi
    if awk -v a="$t0" -v b="$t1" 'BEGIN {exit !(b - a > 60)}'; then t1=""; break; fi
  done
  wait "$bg" || true
  FAILOVER=$( [ -n "$t1" ] && awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}' || echo "none")
  echo "  $1 failover: every probe client answered $FAILOVER s after kill -9 (storm across it: $(field "$(cat "$work/$1-across.json")" acks) of $(field "$(cat "$work/$1-across.json")" discovers) completed, duplicates $(field "$(cat "$work/$1-across.json")" duplicates))"
}

SUBNET_JSON='{"generation": 1, "subnets": [{"cidr": "10.79.0.0/16", "router": "10.79.0.1",
  "lease_seconds": 3600, "dynamic": [{"start": "10.79.16.0", "end": "10.79.255.254"}]}]}'

declare -A RATE FAIL
if want pserv; then
  echo "pserv: two instances on a three-member etcd"
  cluster=$(for e in 1 2 3; do printf "e$e=http://10.79.1.1$e:2380,"; done); cluster=${cluster%,}
  for e in 1 2 3; do
    ip netns exec "$(ns "e$e")" taskset -c 0 etcd --name "e$e" --data-dir "$work/etcd$e" \
      --listen-client-urls "http://10.79.1.1$e:2379" --advertise-client-urls "http://10.79.1.1$e:2379" \
      --listen-peer-urls "http://10.79.1.1$e:2380" --initial-advertise-peer-urls "http://10.79.1.1$e:2380" \
      --initial-cluster "$cluster" --initial-cluster-state new >"$work/etcd$e.log" 2>&1 &
    started $!
  done
  echo "$SUBNET_JSON" >"$work/snap.json"
  declare -A PP
  for s in 1 2; do
    RUST_LOG=warn ip netns exec "$(ns "s$s")" taskset -c 0 "$PSERV" serve --snapshot "$work/snap.json" \
      --dhcp-listen 0.0.0.0:67 --dhcp-interface vs --dns-listen "10.79.0.$s:53" \
      --control-listen 127.0.0.1:5380 --cluster bench --instance "s$s" \
      --etcd http://10.79.1.11:2379 --etcd http://10.79.1.12:2379 --etcd http://10.79.1.13:2379 \
      >"$work/pserv$s.out" 2>&1 &
    PP[$s]=$!; started $!
  done
  for s in 1 2; do
    for _ in $(seq 100); do
      ip netns exec "$(ns "s$s")" curl -s 127.0.0.1:5380/v1/status 2>/dev/null | grep -q '"healthy":true' && break
      sleep 0.3
    done
  done
  sweep pserv "$PSERV_RATES"; RATE[pserv]=$BEST
  failover pserv "${PP[1]}"; FAIL[pserv]=$FAILOVER
  for p in "${PP[@]}"; do kill "$p" 2>/dev/null || true; done
fi

if want kea; then
  echo "Kea $(kea-dhcp4 -v): HA hot-standby pair"
  for s in 1 2; do
    mkdir -p "$work/kea$s"
    cat >"$work/kea$s/kea-dhcp4.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "vs" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea$s/leases4.csv", "lfc-interval": 0 },
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 256 },
  "valid-lifetime": 3600, "renew-timer": 900, "rebind-timer": 1800,
  "hooks-libraries": [
    { "library": "$HOOKS/libdhcp_lease_cmds.so" },
    { "library": "$HOOKS/libdhcp_ha.so", "parameters": { "high-availability": [ {
      "this-server-name": "s$s", "mode": "hot-standby",
      "heartbeat-delay": 1000, "max-response-delay": 2000, "max-ack-delay": 1000, "max-unacked-clients": 0,
      "multi-threading": { "enable-multi-threading": true, "http-dedicated-listener": true,
                           "http-listener-threads": 2, "http-client-threads": 2 },
      "peers": [ { "name": "s1", "url": "http://10.79.0.1:8001/", "role": "primary" },
                 { "name": "s2", "url": "http://10.79.0.2:8001/", "role": "standby" } ] } ] } } ],
  "subnet4": [ { "id": 1, "subnet": "10.79.0.0/16", "pools": [ { "pool": "10.79.16.0 - 10.79.255.254" } ],
    "option-data": [ { "name": "routers", "data": "10.79.0.1" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$work/kea$s/kea.log" } ], "severity": "WARN" } ]
} }
JSON
  done
  declare -A KP
  for s in 1 2; do
    KEA_LOCKFILE_DIR="$work/kea$s" KEA_PIDFILE_DIR="$work/kea$s" ip netns exec "$(ns "s$s")" taskset -c 0 \
      kea-dhcp4 -c "$work/kea$s/kea-dhcp4.json" >"$work/kea$s/out" 2>&1 &
    KP[$s]=$!; started $!
  done
  for _ in $(seq 100); do
    st=$(ip netns exec "$(ns g)" curl -s -X POST http://10.79.0.1:8001/ \
      -d '{"command": "ha-heartbeat"}' 2>/dev/null || true)
    grep -q '"state": *"hot-standby"' <<<"$st" && break
    sleep 0.3
  done
  echo "  primary: $(grep -o '"state": *"[a-z-]*"' <<<"$st" || echo "state unknown: $st")"
  sweep kea "$KEA_RATES"; RATE[kea]=$BEST
  failover kea "${KP[1]}"; FAIL[kea]=$FAILOVER
  if [ "$FAILOVER" = none ]; then echo "  the standby's log:"; tail -n 15 "$work/kea2/kea.log" | sed 's/^/    /'; fi
fi

echo
echo "highest DORA/s under 1% drops: pserv cluster ${RATE[pserv]:-0}  Kea HA ${RATE[kea]:-0}  pserv/Kea $(awk -v a="${RATE[pserv]:-0}" -v b="${RATE[kea]:-0}" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}')"
echo "failover (kill -9 to every probe client answered): pserv ${FAIL[pserv]:-none} s  Kea ${FAIL[kea]:-none} s"
