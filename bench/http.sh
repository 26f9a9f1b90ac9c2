#!/usr/bin/env bash
# HTTP boot under a rack's load: $CLIENTS transfers of one $SIZE_MB MiB file (a kernel and
# initrd's worth) at once, from pserv's HTTP boot and from nginx (sendfile on, the way it is
# packaged, and off), in one run. Two namespaces joined by a veth pair; the server pinned to
# core 0, curl (one process, --parallel, at most 300 transfers in flight) to core 1. Printed:
# wall time and the server's CPU time for each, and pserv's time against nginx's.
#
#   sudo bench/http.sh      (root: network namespaces; apt-installs nginx-light and curl
#                            when missing, without starting them)
#
# Every transfer's length is checked (curl --fail, and the bytes counted).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-1000}
SIZE_MB=${SIZE_MB:-12}
SERVERS=${SERVERS:-"pserv nginx nginx-nosendfile"}
S=phbs$$; C=phbc$$
. bench/common.sh
bench_init http

need_root "network namespaces"
need nginx nginx-light
need curl curl

cargo build --release -q -p pserv-bin
PSERV=$bin/pserv

ns_pair "$S" "$C" 10.87.0.1/24 10.87.0.2/24
mkdir -p "$work/boot/images" "$work/state"
head -c $((SIZE_MB << 20)) /dev/urandom >"$work/boot/images/big"
echo '{"generation": 1, "subnets": [], "nodes": []}' >"$work/snap.json"
urls=()
for _ in $(seq "$CLIENTS"); do urls+=(-o /dev/null http://10.87.0.1:8080/images/big); done

declare -A TIME
run() { # NAME PID
  sleep 1
  local t0 t1 c0 c1 got
  c0=$(cpu_ticks "$2"); t0=$(date +%s.%N)
  got=$(ip netns exec "$C" taskset -c 1 timeout 300 curl -s --no-progress-meter --fail -Z --parallel-max 300 \
        -w '%{size_download}\n' "${urls[@]}" | awk '{s += $1} END {printf "%.0f", s}')
  t1=$(date +%s.%N); c1=$(cpu_ticks "$2")
  if [ "$got" != "$((CLIENTS * (SIZE_MB << 20)))" ]; then
    echo "$1: $got bytes came, not $((CLIENTS * (SIZE_MB << 20)))" >&2; exit 1
  fi
  TIME[$1]=$(echo "$t1 - $t0" | bc)
  printf "%-18s %6.2f s  %6.1f MB/s  server CPU %5.2f s\n" "$1" "${TIME[$1]}" \
    "$(echo "$got / ${TIME[$1]} / 1000000" | bc -l)" "$(echo "($c1 - $c0) / 100" | bc -l)"
  stop_pid "$2"
}

echo "== $CLIENTS transfers of $SIZE_MB MiB at once (curl --parallel, 300 in flight) =="
for srv in $SERVERS; do
  case $srv in
    pserv)
      ip netns exec "$S" taskset -c 0 "$PSERV" serve --snapshot "$work/snap.json" \
        --boot-dir "$work/boot" --boot-http-listen 10.87.0.1:8080 --no-dhcp6 \
        --dhcp-listen 127.0.0.1:16767 --dns-listen 127.0.0.1:15353 --tftp-listen 127.0.0.1:16969 \
        --control-listen 127.0.0.1:15380 --syslog-listen 127.0.0.1:15514 \
        --state-dir "$work/state" >"$work/pserv.log" 2>&1 &
      ;;
    nginx | nginx-nosendfile)
      sf=on; [ "$srv" = nginx ] || sf=off
      cat >"$work/$srv.conf" <<EOF
user root; worker_processes 1; daemon off; error_log $work/$srv.err; pid $work/$srv.pid;
events { worker_connections 4096; }
http { access_log off; sendfile $sf; tcp_nopush on; keepalive_requests 100000;
  server { listen 10.87.0.1:8080 backlog=4096; root $work/boot; } }
EOF
      ip netns exec "$S" taskset -c 0 nginx -c "$work/$srv.conf" -p "$work" &
      ;;
    *) echo "unknown server $srv" >&2; exit 2 ;;
  esac
  p=$!; started "$p"
  run "$srv" "$p" || { cat "$work"/*.err "$work/pserv.log" 2>/dev/null | tail -5; exit 1; }
done
for other in nginx nginx-nosendfile; do
  [ -n "${TIME[pserv]:-}" ] && [ -n "${TIME[$other]:-}" ] &&
    awk -v a="${TIME[pserv]}" -v b="${TIME[$other]}" -v o="$other" \
      'BEGIN{printf "pserv takes %.2f of %s'"'"'s time\n", a / b, o}'
done
