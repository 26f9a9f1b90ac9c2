#!/usr/bin/env python3
"""Writes the DNS benchmark inputs into DIR: a 10k-node pserv snapshot (snapshot-GEN.json for
two generations with the same names), the same data rendered as NSD zone files with an
nsd.conf, and a dnsperf query file (80% A hits, 10% PTR, 10% nonexistent names), shuffled.
Usage: gen_dns.py DIR NSD_PORT"""
import json, random, sys

out, nsd_port = sys.argv[1], int(sys.argv[2])
N = 10000
random.seed(42)


def ip(i):
    return f"10.1.{i // 250}.{i % 250 + 1}"


def snapshot(gen):
    return {
        "generation": gen,
        "dns": {"ttl": 3600, "soa_mname": "ns.bench.test.", "soa_rname": "admin.bench.test."},
        "subnets": [{"cidr": "10.1.0.0/16", "domain": "bench.test"}],
        "nodes": [
            {"id": f"n{i}", "hostname": f"h{i:05d}", "domain": "bench.test",
             "interfaces": [{"mac": "52:54:%02x:%02x:%02x:%02x" % (gen % 256, i >> 16 & 255, i >> 8 & 255, i & 255),
                             "ipv4": ip(i)}]}
            for i in range(N)
        ],
    }


for gen in (1, 2):
    with open(f"{out}/snapshot-{gen}.json", "w") as f:
        json.dump(snapshot(gen), f)

# A pserv that is authoritative for another zone and forwards the rest to NSD.
with open(f"{out}/snapshot-fwd.json", "w") as f:
    json.dump({
        "generation": 1,
        "dns": {"ttl": 3600, "soa_mname": "ns.other.test.", "soa_rname": "admin.other.test.",
                "upstreams": [f"127.0.0.1:{nsd_port}"]},
        "subnets": [{"cidr": "10.2.0.0/16", "domain": "other.test"}],
        "nodes": [{"id": "o1", "hostname": "o1", "domain": "other.test",
                   "interfaces": [{"mac": "52:54:00:00:00:01", "ipv4": "10.2.0.1"}]}],
    }, f)

soa = "@ 3600 IN SOA ns.bench.test. admin.bench.test. 1 3600 600 86400 3600\n@ 3600 IN NS ns.bench.test.\n"
with open(f"{out}/bench.test.zone", "w") as f:
    f.write("$ORIGIN bench.test.\n$TTL 3600\n" + soa)
    for i in range(N):
        f.write(f"h{i:05d} IN A {ip(i)}\n")
with open(f"{out}/1.10.in-addr.arpa.zone", "w") as f:
    f.write("$ORIGIN 1.10.in-addr.arpa.\n$TTL 3600\n" + soa)
    for i in range(N):
        a = ip(i).split(".")
        f.write(f"{a[3]}.{a[2]} IN PTR h{i:05d}.bench.test.\n")
with open(f"{out}/nsd.conf", "w") as f:
    f.write(f"""server:
  ip-address: 127.0.0.1@{nsd_port}
  server-count: 1
  username: ""
  chroot: ""
  database: ""
  zonelistfile: "{out}/nsd-zone.list"
  xfrdfile: "{out}/nsd-xfrd.state"
  pidfile: "{out}/nsd.pid"
  zonesdir: "{out}"
  logfile: "{out}/nsd.log"
  verbosity: 0
  hide-version: yes
  # Debian's NSD has response-rate limiting on: it would drop benchmark traffic.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "bench.test"
  zonefile: "bench.test.zone"
zone:
  name: "1.10.in-addr.arpa"
  zonefile: "1.10.in-addr.arpa.zone"
""")
with open(f"{out}/queries.txt", "w") as f:
    for _ in range(100000):
        r = random.random()
        i = random.randrange(N)
        if r < 0.10:
            f.write(f"nx{random.randrange(10**6):06d}.bench.test A\n")
        elif r < 0.20:
            a = ip(i).split(".")
            f.write(f"{a[3]}.{a[2]}.1.10.in-addr.arpa PTR\n")
        else:
            f.write(f"h{i:05d}.bench.test A\n")
