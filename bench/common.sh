# Helpers shared by the benchmark scripts (sourced from the repository root, not run).
#
#   bench_init NAME     $work: a fresh temporary directory; `cleanup` runs on exit and on
#                       SIGINT/SIGTERM
#   started PID         registers a process the script started in the background
#   stop_pid PID        stops it by its PID now (SIGTERM, up to 5 s, then SIGKILL)
#   need_root WHY       exits unless root
#   need CMD PACKAGE    apt-installs PACKAGE when CMD is missing, never starting its service
#   add_ns NAME         a network namespace, loopback up, deleted by `cleanup`
#   veth NS1 IF1 ADDR1 NS2 IF2 ADDR2
#                       a veth pair born in its two namespaces (nothing is added to the host's
#                       own), an address on each end (none when ADDR is "-"), both up
#   ns_pair S C ADDR_S ADDR_C
#                       two namespaces joined by a veth pair: vsrv in S, vcli in C
#   bridge NS BR        a bridge in NS, up
#   plug NS BR MEMBER IFNAME ADDR
#                       MEMBER plugged into bridge BR of NS as IFNAME with ADDR
#   cpu_ticks PID       CPU ticks of a process and all its descendants
#   $bin                where `cargo build --release` puts the binaries ($CARGO_TARGET_DIR too)
#
# Every process a script starts is stopped by its PID and every namespace it made is deleted by
# `cleanup`, in that order (a namespace lives on while a process runs in it); nothing is found
# or killed by name. All packets stay on loopback or inside the script's namespaces.

pids=()
NSES=()
work=""
# Set while need() has a policy-rc.d of its own in place, so cleanup removes it if interrupted.
made_policy=""
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"

bench_init() {
  work=$(mktemp -d "/tmp/pserv-$1-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

started() { pids+=("$1"); }

# Drops PID from the processes cleanup stops (it is gone: its number may be reused).
forget() {
  local p kept=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}

stop_pid() {
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  { wait "$1"; } 2>/dev/null || true
  forget "$1"
}

cleanup() {
  local p i
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    { wait "$p"; } 2>/dev/null || true
  done
  pids=()
  for ((i = ${#NSES[@]} - 1; i >= 0; i--)); do ip netns del "${NSES[i]}" 2>/dev/null || true; done
  NSES=()
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  [ -z "$work" ] || rm -rf "$work"
}

need_root() {
  [ "$(id -u)" = 0 ] || { echo "needs root ($1)" >&2; exit 1; }
}

# Installed, never started: while apt-get runs, a policy-rc.d refusing every start keeps the
# package's service (a system etcd, nginx, dnsmasq, Kea) from running outside the namespaces.
need() {
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" != 0 ]; then echo "missing $1 (apt-get install $2)" >&2; exit 1; fi
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local ok=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null || ok=$?
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  made_policy=""
  [ "$ok" = 0 ] || { echo "apt-get install $2 failed" >&2; exit 1; }
}

add_ns() {
  ip netns add "$1"
  NSES+=("$1")
  ip -n "$1" link set lo up
}

veth() {
  ip -n "$1" link add name "$2" type veth peer name "$5" netns "$4"
  [ "$3" = - ] || ip -n "$1" addr add "$3" dev "$2"
  [ "$6" = - ] || ip -n "$4" addr add "$6" dev "$5"
  ip -n "$1" link set "$2" up
  ip -n "$4" link set "$5" up
}

ns_pair() {
  add_ns "$1"
  add_ns "$2"
  veth "$1" vsrv "$3" "$2" vcli "$4"
}

bridge() {
  ip -n "$1" link add name "$2" type bridge
  ip -n "$1" link set "$2" up
}

plugged=0
plug() {
  plugged=$((plugged + 1))
  local port="p$plugged"
  veth "$1" "$port" - "$3" "$4" "$5"
  ip -n "$1" link set "$port" master "$2"
}

# Every descendant of a process (servers that fork workers, like NSD).
descendants() { local c; for c in $(pgrep -P "$1" || true); do echo "$c"; descendants "$c"; done; }

# CPU ticks (user + system) of a process and all its descendants. Fields are read after the ")"
# that ends the command name, which may hold spaces ("nsd: main").
cpu_ticks() {
  local total=0 p
  for p in $1 $(descendants "$1"); do
    [ -r "/proc/$p/stat" ] && total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
