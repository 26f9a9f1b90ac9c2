#!/usr/bin/env bash
# DNS benchmark: pserv and NSD side by side, in one run, on the same 10,000-node data.
#
#   bench/dns.sh            (as root it apt-installs nsd and dnsperf when missing)
#
# Both servers answer on loopback, pinned to core 0; dnsperf runs pinned to core 1 with the same
# query file (80% A hits, 10% PTR, 10% nonexistent names). For each server:
#   1. peak:  dnsperf floods for $DUR s (8 clients, 500 outstanding): queries per second;
#   2. fixed: dnsperf at $RATE q/s for $DUR s (-Q): the server's CPU time per answered query,
#             from /proc/PID/stat (user + system), so the figure measures the server, not the
#             load generator;
#   3. tcp:   the peak run over TCP (8 connections, queries pipelined): queries per second;
# and for pserv two more runs:
#   4. swap:  the peak load again while the snapshot file is rewritten with a new generation and
#             pserv reloads it (SIGHUP) every 100 ms; the response codes must keep the same
#             split as without swaps and nothing may be lost or SERVFAIL.
#   5. forward: a second pserv, authoritative for another zone, with NSD as its upstream: the
#             same queries at $FWD_RATE q/s all go through pserv's forwarder; lost and rcodes.
# With BASELINE=/path/to/an/older/pserv, that binary runs steps 1-3 too, in the same run, and
# the summary gives the ratios against it (a change's before and after on one machine state).
# Every run is bounded ($DUR seconds); the servers are stopped by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
RATE=${RATE:-80000}
NSD_PORT=${NSD_PORT:-5301}
PSERV_PORT=${PSERV_PORT:-5302}
FWD_PORT=${FWD_PORT:-5303}
FWD_RATE=${FWD_RATE:-50000}
BASE_PORT=${BASE_PORT:-5304}
BASELINE=${BASELINE:-}
. bench/common.sh
bench_init dns

need nsd nsd
need dnsperf dnsperf
need dig bind9-dnsutils

cargo build --release -q -p pserv-bin
python3 bench/gen_dns.py "$work" "$NSD_PORT"

hz=$(getconf CLK_TCK)

wait_port() {
  for _ in $(seq 100); do
    dig @127.0.0.1 -p "$1" +time=1 +tries=1 h00001.bench.test A >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "server on port $1 did not come up" >&2; exit 1
}

# run_dnsperf PORT [extra args...] -> prints dnsperf's summary
run_dnsperf() {
  local port=$1; shift
  timeout $((DUR + 30)) taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" \
    -l "$DUR" -c 8 -T 1 -q 500 "$@" 2>&1
}
field() { awk -v k="$1" 'index($0, k) {print $NF}' | head -1; }
qps_of() { awk '/Queries per second/ {print $4}'; }
completed_of() { awk '/Queries completed/ {print $3}'; }
lost_of() { awk '/Queries lost/ {print $3}'; }
codes_of() { awk '/Response codes/ {$1=""; $2=""; print}'; }

declare -A PEAK CPU LOST CODES TCP
measure() {
  local name=$1 pid=$2 port=$3
  wait_port "$port"
  local out; out=$(run_dnsperf "$port")
  PEAK[$name]=$(echo "$out" | qps_of)
  LOST[$name]=$(echo "$out" | lost_of)
  CODES[$name]=$(echo "$out" | codes_of)
  local t0; t0=$(cpu_ticks "$pid")
  out=$(run_dnsperf "$port" -Q "$RATE")
  local t1; t1=$(cpu_ticks "$pid")
  local done; done=$(echo "$out" | completed_of)
  CPU[$name]=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$done" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  echo "$name: peak ${PEAK[$name]} q/s (lost ${LOST[$name]}; ${CODES[$name]}), ${CPU[$name]} us CPU/query at $RATE q/s offered ($done answered)"
  out=$(run_dnsperf "$port" -m tcp)
  TCP[$name]=$(echo "$out" | qps_of)
  echo "$name over TCP (8 connections, pipelined): ${TCP[$name]} q/s (lost $(echo "$out" | lost_of); $(echo "$out" | codes_of))"
}

# NSD
(cd "$work" && exec taskset -c 0 nsd -d -c "$work/nsd.conf") >"$work/nsd.out" 2>&1 &
nsd_pid=$!; started "$nsd_pid"
measure nsd "$nsd_pid" "$NSD_PORT"
# NSD stays up (idle) as the upstream of the forwarding run at the end.

# pserv
cp "$work/snapshot-1.json" "$work/live.json"
RUST_LOG=info taskset -c 0 "$bin/pserv" serve --snapshot "$work/live.json" \
  --dns-listen "127.0.0.1:$PSERV_PORT" >"$work/pserv.out" 2>&1 &
pserv_pid=$!; started "$pserv_pid"
measure pserv "$pserv_pid" "$PSERV_PORT"

# pserv under swaps: a new generation every 100 ms during a peak run.
(
  g=2
  end=$((SECONDS + DUR))
  while [ $SECONDS -lt $end ]; do
    g=$((g + 1))
    src="$work/snapshot-$((g % 2 + 1)).json"
    sed "s/\"generation\": [0-9]*/\"generation\": $g/" "$src" >"$work/next.json"
    mv "$work/next.json" "$work/live.json"
    kill -HUP "$pserv_pid"
    sleep 0.1
  done
  echo "$g" >"$work/swaps"
) &
swapper=$!; started "$swapper"
out=$(run_dnsperf "$PSERV_PORT")
wait "$swapper" || true
forget "$swapper"
swaps=$(( $(cat "$work/swaps") - 2 ))
reloaded=$(grep -c "snapshot reloaded" "$work/pserv.out" || true)
rejected=$(grep -c "rejected" "$work/pserv.out" || true)
echo "pserv with $swaps swaps (one per 100 ms; log shows $reloaded reloads, $rejected rejected):" \
  "$(echo "$out" | qps_of) q/s, lost $(echo "$out" | lost_of), codes:$(echo "$out" | codes_of)"

stop_pid "$pserv_pid"

if [ -n "$BASELINE" ]; then
  RUST_LOG=warn taskset -c 0 "$BASELINE" serve --snapshot "$work/snapshot-1.json" \
    --dns-listen "127.0.0.1:$BASE_PORT" --dhcp-listen 127.0.0.1:0 --control-listen 127.0.0.1:0 \
    >"$work/baseline.out" 2>&1 &
  base_pid=$!; started "$base_pid"
  measure baseline "$base_pid" "$BASE_PORT"
  stop_pid "$base_pid"
fi

# pserv forwarding to NSD.
RUST_LOG=warn taskset -c 0 "$bin/pserv" serve --snapshot "$work/snapshot-fwd.json" \
  --dns-listen "127.0.0.1:$FWD_PORT" >"$work/pserv-fwd.out" 2>&1 &
fwd_pid=$!; started "$fwd_pid"
wait_port "$FWD_PORT"
out=$(run_dnsperf "$FWD_PORT" -Q "$FWD_RATE")
echo "pserv forwarding to NSD at $FWD_RATE q/s offered: $(echo "$out" | qps_of) q/s," \
  "lost $(echo "$out" | lost_of), codes:$(echo "$out" | codes_of)"

echo
awk -v p="${PEAK[pserv]}" -v n="${PEAK[nsd]}" -v cp="${CPU[pserv]}" -v cn="${CPU[nsd]}" \
    -v tp="${TCP[pserv]}" -v tn="${TCP[nsd]}" 'BEGIN {
  printf "peak qps      pserv %.0f   nsd %.0f   ratio pserv/nsd %.2f\n", p, n, p / n
  printf "TCP qps       pserv %.0f   nsd %.0f   ratio pserv/nsd %.2f\n", tp, tn, tp / tn
  printf "CPU/query     pserv %.2f us   nsd %.2f us   ratio nsd/pserv %.2f (higher: pserv cheaper)\n", cp, cn, cn / cp
}'
if [ -n "$BASELINE" ]; then
  awk -v p="${PEAK[pserv]}" -v b="${PEAK[baseline]}" -v cp="${CPU[pserv]}" -v cb="${CPU[baseline]}" \
      -v tp="${TCP[pserv]}" -v tb="${TCP[baseline]}" 'BEGIN {
    printf "vs baseline   peak %.0f / %.0f = %.2f   TCP %.0f / %.0f = %.2f   CPU/query %.2f / %.2f us = %.2f\n", p, b, p / b, tp, tb, tp / tb, cp, cb, cp / cb
  }'
fi
