#!/usr/bin/env bash
# TFTP and HTTP boot-file benchmark: pserv, tftpd-hpa (Debian) and dnsmasq's TFTP side by side,
# then pserv's HTTP boot against nginx, in one run.
#
#   sudo bench/tftp.sh     (root: it makes a network namespace; apt-installs tftpd-hpa,
#                           dnsmasq, nginx-light and wrk when missing, without starting them)
#
# One namespace, each server on its own loopback address there, all on port 69,
# pinned to core 0; the load generator (pserv-boot's example tftp_load: N clients fetching the
# same file over and over for $PERIOD seconds, each transfer's length checked) on core 1. For
# each server and each of $CLIENTS concurrent clients, at blksize 1468 with windowsize 1 and 16
# (a server that does not take windowsize answers at 1): aggregate throughput, failed
# transfers, p99 transfer time, and the server's CPU per MB (busy time of core 0, where the
# server runs alone: tftpd-hpa's per-transfer children included). Then wrk fetches the same file over HTTP from
# pserv and nginx ($HTTP_CONNS connections). Every step is bounded in time.
# With BASELINE=/path/to/an/older/pserv, that binary runs the same TFTP and HTTP steps in the
# same run (on its own address), and the summary gives the ratios against it.
set -euo pipefail
cd "$(dirname "$0")/.."
PERIOD=${PERIOD:-8}
CLIENTS=${CLIENTS:-"1 50 200"}
WINDOWS=${WINDOWS:-"1 16"}
SIZE_MB=${SIZE_MB:-4}
HTTP_CONNS=${HTTP_CONNS:-50}
SERVERS=${SERVERS:-"pserv tftpd-hpa dnsmasq"}
BASELINE=${BASELINE:-}
[ -n "$BASELINE" ] && SERVERS="$SERVERS baseline"
NS=pbtftp$$
. bench/common.sh
bench_init tftp

need_root "a network namespace, port 69"
want() { [[ " $SERVERS " == *" $1 "* ]]; }
want tftpd-hpa && need in.tftpd tftpd-hpa
want dnsmasq && need dnsmasq dnsmasq
need nginx nginx-light
need wrk wrk

cargo build --release -q -p pserv-bin
cargo build --release -q -p pserv-boot --example tftp_load
LOAD=$bin/examples/tftp_load

add_ns "$NS"
for h in 1 2 3 4 5; do ip -n "$NS" addr add "127.0.1.$h/32" dev lo; done
inns() { ip netns exec "$NS" "$@"; }

root="$work/boot"; mkdir -p "$root/images"
head -c $((SIZE_MB << 20)) /dev/urandom >"$root/images/vmlinuz"
size=$(stat -c %s "$root/images/vmlinuz")
echo '{"generation": 1}' >"$work/snap.json"

hz=$(getconf CLK_TCK)
# Busy ticks of core 0, where the server runs alone: its processes (tftpd-hpa forks one per
# transfer, and their CPU never reaches the parent's counters while they run) and the kernel's
# work on its behalf.
ticks() { awk '$1 == "cpu0" {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

start() { # NAME -> server pid in $spid, address in $saddr
  case $1 in
    pserv|baseline)
      local exe="$bin/pserv" a=127.0.1.1
      [ "$1" = baseline ] && { exe=$BASELINE; a=127.0.1.5; }
      ip netns exec "$NS" taskset -c 0 "$exe" serve --snapshot "$work/snap.json" \
        --boot-dir "$root" --tftp-listen "$a:69" --boot-http-listen "$a:5248" \
        --dns-listen "$a:5353" --dhcp-listen "$a:6767" --syslog-listen "$a:5514" --control-listen 127.0.0.1:0 \
        --state-dir "$work/state-$1" >"$work/$1.log" 2>&1 &
      saddr=$a ;;
    tftpd-hpa)
      ip netns exec "$NS" taskset -c 0 in.tftpd -L -a 127.0.1.2:69 -u root -s "$root" >"$work/tftpd.log" 2>&1 &
      saddr=127.0.1.2 ;;
    dnsmasq)
      ip netns exec "$NS" taskset -c 0 dnsmasq --no-daemon --conf-file=/dev/null --port=0 --enable-tftp \
        --tftp-root="$root" --tftp-max=2000 --listen-address=127.0.1.3 --bind-interfaces \
        --user=root --log-facility=/dev/null >/dev/null 2>&1 &
      saddr=127.0.1.3 ;;
  esac
  spid=$!; started "$spid"; sleep 1
  kill -0 "$spid" || { echo "$1 did not start" >&2; cat "$work"/*.log >&2; exit 1; }
}

declare -A mbps cpumb failed
echo "== TFTP: ${SIZE_MB} MiB file, blksize 1468, ${PERIOD}s per step =="
printf "%-10s %7s %6s %10s %8s %9s %8s\n" server clients window "MB/s" failed "CPU ms/MB" "p99 ms"
for s in $SERVERS; do
  start "$s"
  for w in $WINDOWS; do
    for c in $CLIENTS; do
      t0=$(ticks)
      line=$(inns taskset -c 1 "$LOAD" "$saddr:69" images/vmlinuz "$size" "$c" "$PERIOD" 1468 "$w" 2>>"$work/load.err")
      t1=$(ticks)
      eval "$(echo "$line" | tr ' ' '\n' | sed 's/^/r_/')"
      mb=$(awk -v b="$r_bytes" 'BEGIN{print b/1e6}')
      cms=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v mb="$mb" 'BEGIN{ if (mb > 0) printf "%.2f", t*1000/hz/mb; else print "inf" }')
      mbps[$s,$c,$w]=$r_mbps; cpumb[$s,$c,$w]=$cms; failed[$s,$c,$w]=$r_failed
      printf "%-10s %7s %6s %10s %8s %9s %8s\n" "$s" "$c" "$w" "$r_mbps" "$r_failed" "$cms" "$r_p99_ms"
    done
  done
  stop_pid "$spid"
done

if [[ " $SERVERS " == *" pserv "* && " $SERVERS " == *" tftpd-hpa "* ]]; then
  echo "== pserv / tftpd-hpa =="
  for w in $WINDOWS; do for c in $CLIENTS; do
    # tftpd-hpa answers every request at window 1: its window-1 run when there is one.
    tw=$w; [ -n "${mbps[tftpd-hpa,$c,1]:-}" ] && tw=1
    awk -v a="${mbps[pserv,$c,$w]}" -v b="${mbps[tftpd-hpa,$c,$tw]}" -v ca="${cpumb[pserv,$c,$w]}" -v cb="${cpumb[tftpd-hpa,$c,$tw]}" \
      -v c="$c" -v w="$w" 'BEGIN{printf "clients %4s pserv window %2s vs tftpd-hpa: throughput %.2fx, CPU/MB %.2fx\n", c, w, a/b, ca/cb}'
  done; done
fi

if [ -n "$BASELINE" ]; then
  echo "== pserv / baseline (${BASELINE}) =="
  for w in $WINDOWS; do for c in $CLIENTS; do
    awk -v a="${mbps[pserv,$c,$w]}" -v b="${mbps[baseline,$c,$w]}" -v ca="${cpumb[pserv,$c,$w]}" -v cb="${cpumb[baseline,$c,$w]}" \
      -v c="$c" -v w="$w" 'BEGIN{printf "clients %4s window %2s: throughput %.2fx, CPU/MB %.2fx\n", c, w, a/b, ca/cb}'
  done; done
fi

echo "== HTTP boot file: wrk, $HTTP_CONNS connections, ${PERIOD}s =="
start pserv
http_targets="pserv 127.0.1.1:5248 $spid"
if [ -n "$BASELINE" ]; then
  pserv_pid=$spid
  start baseline
  http_targets="$http_targets|baseline 127.0.1.5:5248 $spid"
  spid=$pserv_pid
fi
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
  server { listen 127.0.1.4:8080; root $root; }
}
NGINX
ip netns exec "$NS" taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" &
npid=$!; started "$npid"; sleep 1
declare -A hmb
IFS='|' read -r -a targets <<<"$http_targets|nginx 127.0.1.4:8080 $npid"
for t in "${targets[@]}"; do
  set -- $t
  t0=$(ticks)
  out=$(inns taskset -c 1 wrk -t1 -c"$HTTP_CONNS" -d"${PERIOD}s" "http://$2/images/vmlinuz")
  t1=$(ticks)
  reqs=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}')
  mbs=$(awk -v r="$reqs" -v s="$size" 'BEGIN{printf "%.1f", r*s/1e6}')
  cms=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v mb="$mbs" -v p="$PERIOD" 'BEGIN{printf "%.2f", t*1000/hz/(mb*p)}')
  hmb[$1]=$mbs
  printf "%-6s %8s MB/s  CPU %s ms/MB  %s\n" "$1" "$mbs" "$cms" "${errs:-no errors}"
done
awk -v a="${hmb[pserv]}" -v b="${hmb[nginx]}" 'BEGIN{printf "pserv / nginx HTTP throughput: %.2fx\n", a/b}'
if [ -n "$BASELINE" ]; then
  awk -v a="${hmb[pserv]}" -v b="${hmb[baseline]}" 'BEGIN{printf "pserv / baseline HTTP throughput: %.2fx\n", a/b}'
fi
