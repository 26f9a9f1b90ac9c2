# Helpers shared by the benchmark scripts (sourced, not run).

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
