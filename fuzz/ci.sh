#!/usr/bin/env bash
# Runs every fuzz target for a short, bounded time (FUZZ_SECONDS each, default 20), with
# debug assertions and AddressSanitizer (cargo fuzz's defaults), on the stable toolchain.
# A finding fails the run; the reproducer lands in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in snapshot dns_query dhcp_datagram dhcpv6_datagram control_body tftp progress syslog pxe_boot_server; do
  echo "fuzz: $t for ${FUZZ_SECONDS:-20} s"
  if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="${FUZZ_SECONDS:-20}" \
       -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $t found a problem (reproducer in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  grep -E "DONE" "$log" | tail -n 1
done
