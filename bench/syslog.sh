#!/usr/bin/env bash
# Syslog benchmark: pserv's receiver and rsyslog's UDP input (imudp) side by side, the same load
# in one run.
#
#   bench/syslog.sh          (as root it apt-installs rsyslog when missing, never starting its
#                             service; rsyslogd runs only here, on its own config and pid file)
#
# Each receiver listens on loopback, pinned to core 0; pserv-storm runs pinned to core 1 and
# sends $COUNT messages at $RATE a second from $SOURCES loopback addresses (127.1.x.y, so the
# per-source limit is not what is measured), half RFC 3164 lines as the Debian installer's
# busybox forwards them, half RFC 5424 lines as rsyslog forwards them, $SIZE bytes each.
#   1. pserv: pserv-storm also holds one /v1/events listener and counts the `log` events of the
#      run by sequence number: delivered, lost, duplicated, send-to-event time.
#   2. rsyslog, messages discarded (`stop`): the cost of receiving and parsing alone.
#   3. rsyslog, each message formatted as JSON (the fields of pserv's event) and written to
#      /dev/null: the nearest thing to pserv's work without a network listener.
# For each: CPU per message (utime + stime of the receiver, /proc/PID/stat, over the run,
# divided by the messages it received), and the socket's drops (/proc/net/udp). Then pserv
# alone at rising rates ($RAMP) until a run loses a message: the highest rate delivered whole.
# Every run is bounded (count and time); the receivers are stopped by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-500000}
RATE=${RATE:-50000}
SOURCES=${SOURCES:-4096}
SIZE=${SIZE:-120}
RAMP=${RAMP:-"50000 100000 150000 200000 250000 300000"}
RAMP_SECONDS=${RAMP_SECONDS:-5}
PSERV_PORT=${PSERV_PORT:-15514}
CONTROL_PORT=${CONTROL_PORT:-15380}
RSYSLOG_PORT=${RSYSLOG_PORT:-15515}
. bench/common.sh
bench_init syslog

need rsyslogd rsyslog
need python3 python3

cargo build --release -q -p pserv-bin -p pserv-storm
hz=$(getconf CLK_TCK)

# Drops counted on a loopback UDP socket (the last column of /proc/net/udp).
udp_drops() {
  local port; port=$(printf '%04X' "$1")
  awk -v p="0100007F:$port" '$2 == p {print $NF; found=1} END {if (!found) print 0}' /proc/net/udp
}
# wait_udp PORT PID: PID (still running: not a stale server's port) listens on UDP PORT.
wait_udp() {
  local port; port=$(printf '%04X' "$1")
  for _ in $(seq 100); do
    case "$(sed 's/.*) //' "/proc/$2/stat" 2>/dev/null | cut -d' ' -f1)" in
      '' | Z) echo "the server for port $1 exited (port in use?)" >&2; exit 1 ;;
    esac
    awk -v p="0100007F:$port" '$2 == p {found=1} END {exit !found}' /proc/net/udp && return
    sleep 0.1
  done
  echo "nothing listens on UDP port $1" >&2; exit 1
}
storm() {
  timeout $((COUNT / RATE + 60)) taskset -c 1 "$bin/pserv-storm" syslog \
    --sources "$SOURCES" --size "$SIZE" --json "$@"
}
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

declare -A CPU RECV DROPS
# measure NAME PID PORT [storm args...]: one run of $COUNT at $RATE; CPU per received message.
measure() {
  local name=$1 pid=$2 port=$3; shift 3
  local d0 t0 t1 d1
  d0=$(udp_drops "$port"); t0=$(cpu_ticks "$pid")
  storm --server "127.0.0.1:$port" --count "$COUNT" --rate "$RATE" "$@" >"$work/$name.json"
  t1=$(cpu_ticks "$pid"); d1=$(udp_drops "$port")
  DROPS[$name]=$((d1 - d0))
  local sent; sent=$(json "$work/$name.json" "d['sent']")
  RECV[$name]=$((sent - DROPS[$name]))
  CPU[$name]=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="${RECV[$name]}" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
}

# 1. pserv: boot serving on (an empty boot directory) runs the syslog receiver.
mkdir -p "$work/boot"
RUST_LOG=warn taskset -c 0 "$bin/pserv" serve --boot-dir "$work/boot" --state-dir "$work/state" \
  --dns-listen 127.0.0.1:0 --dhcp-listen 127.0.0.1:0 --tftp-listen 127.0.0.1:0 \
  --boot-http-listen 127.0.0.1:0 --control-listen "127.0.0.1:$CONTROL_PORT" \
  --syslog-listen "127.0.0.1:$PSERV_PORT" >"$work/pserv.out" 2>&1 &
pserv_pid=$!; started "$pserv_pid"
sleep 0.5
wait_udp "$PSERV_PORT" "$pserv_pid"
events=(--events "127.0.0.1:$CONTROL_PORT")
# Warm-up (page faults, the event channel's first listener).
storm --server "127.0.0.1:$PSERV_PORT" --count 20000 --rate 20000 "${events[@]}" >/dev/null
measure pserv "$pserv_pid" "$PSERV_PORT" "${events[@]}"
read -r delivered lost dups p50 p99 rate < <(json "$work/pserv.json" \
  "' '.join(str(x) for x in (d['events']['distinct'], d['events']['lost'], d['events']['duplicates'], d['events']['latency']['p50_ms'], d['events']['latency']['p99_ms'], round(d['send_rate'])))")
echo "pserv: $COUNT sent at ${rate}/s, $delivered delivered as log events to one listener," \
  "lost $lost, duplicated $dups (socket drops ${DROPS[pserv]}); send to event p50 $p50 ms," \
  "p99 $p99 ms; ${CPU[pserv]} us CPU/message"

# pserv alone at rising rates: the highest one delivered whole.
best=0
for r in $RAMP; do
  n=$((r * RAMP_SECONDS))
  d0=$(udp_drops "$PSERV_PORT")
  timeout $((RAMP_SECONDS + 60)) taskset -c 1 "$bin/pserv-storm" syslog --sources "$SOURCES" \
    --size "$SIZE" --json --server "127.0.0.1:$PSERV_PORT" --count "$n" --rate "$r" \
    "${events[@]}" >"$work/ramp.json"
  read -r sent_rate ramp_lost < <(json "$work/ramp.json" "f\"{round(d['send_rate'])} {d['events']['lost']}\"")
  echo "pserv at $r/s offered ($sent_rate/s sent, $n messages): lost $ramp_lost" \
    "($(( $(udp_drops "$PSERV_PORT") - d0 )) of them dropped by the socket)"
  [ "$ramp_lost" = 0 ] || break
  best=$sent_rate
done
stop_pid "$pserv_pid"

# 2-3. rsyslog: imudp with pserv's socket buffer (8 MiB), no DNS lookups of senders, two rulesets.
mkdir -p "$work/rsyslog"
rsyslog_conf() {
  cat <<EOF
global(workDirectory="$work/rsyslog" net.enableDNS="off")
module(load="imudp")
template(name="json" type="list" option.jsonf="on") {
  property(outname="client" name="fromhost-ip" format="jsonf")
  property(outname="facility" name="syslogfacility-text" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
}
input(type="imudp" address="127.0.0.1" port="$RSYSLOG_PORT" rcvbufSize="8m" ruleset="$1")
ruleset(name="discard") { stop }
ruleset(name="json") { action(type="omfile" file="/dev/null" template="json") }
EOF
}
for variant in discard json; do
  rsyslog_conf "$variant" >"$work/rsyslog-$variant.conf"
  rm -f "$work/rsyslog.pid"
  taskset -c 0 rsyslogd -n -f "$work/rsyslog-$variant.conf" -i "$work/rsyslog.pid" \
    >"$work/rsyslog-$variant.out" 2>&1 &
  rs_pid=$!; started "$rs_pid"
  sleep 0.5
  wait_udp "$RSYSLOG_PORT" "$rs_pid"
  storm --server "127.0.0.1:$RSYSLOG_PORT" --count 20000 --rate 20000 >/dev/null
  measure "rsyslog-$variant" "$rs_pid" "$RSYSLOG_PORT"
  echo "rsyslog ($variant): $COUNT sent, ${RECV[rsyslog-$variant]} received" \
    "(socket drops ${DROPS[rsyslog-$variant]}); ${CPU[rsyslog-$variant]} us CPU/message"
  stop_pid "$rs_pid"
done

echo
awk -v p="${CPU[pserv]}" -v d="${CPU[rsyslog-discard]}" -v j="${CPU[rsyslog-json]}" \
    -v best="$best" 'BEGIN {
  printf "CPU/message   pserv %.2f us (parse, resolve, event to one SSE listener)\n", p
  printf "              rsyslog discard %.2f us   ratio rsyslog/pserv %.2f\n", d, d / p
  printf "              rsyslog JSON to /dev/null %.2f us   ratio rsyslog/pserv %.2f\n", j, j / p
  printf "pserv highest rate delivered whole to one listener: %d/s\n", best
}'
