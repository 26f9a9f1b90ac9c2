#!/usr/bin/env python3
"""Writes the requests in a pcap file (Ethernet, IPv4, UDP to one port) as fuzz seeds.

usage: pcap2seeds.py CAPTURE.pcap PORT OUTDIR PREFIX
Each payload of a new shape becomes OUTDIR/seed-PREFIX-NN. The shape ignores what a client
varies per exchange (DHCP xid, secs, chaddr and addresses; DNS id), so a load generator's
thousand look-alike packets give one seed.
"""
import hashlib
import os
import struct
import sys


def payloads(path, port):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = {0xA1B2C3D4: "<", 0xD4C3B2A1: ">", 0xA1B23C4D: "<", 0x4D3CB2A1: ">"}[magic]
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != 1:
        sys.exit(f"{path}: link type {linktype}, expected Ethernet (1)")
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from(endian + "IIII", data, off)
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:  # UDP
            continue
        total = struct.unpack_from(">H", ip, 2)[0]
        udp = ip[ihl:total]
        if len(udp) < 8 or struct.unpack_from(">H", udp, 2)[0] != port:
            continue
        yield udp[8:]


def shape(p, port):
    if port in (67, 68) and len(p) >= 240:
        # op, htype, hlen, flags; which of ciaddr/yiaddr/siaddr/giaddr are set; option codes
        # and lengths (values vary per client).
        key = [p[0:3], p[10:12]] + [bytes([any(p[i : i + 4])]) for i in (12, 16, 20, 24)]
        i = 240
        while i < len(p) and p[i] != 255:
            if p[i] == 0:
                i += 1
                continue
            if i + 1 >= len(p):
                break
            key.append(bytes([p[i], p[i + 1]]))
            i += 2 + p[i + 1]
        return b"|".join(key)
    if port == 53 and len(p) >= 2:
        return p[2:]
    return p


def main():
    path, port, outdir, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    os.makedirs(outdir, exist_ok=True)
    seen = set()
    n = 0
    for p in payloads(path, port):
        # Only requests: a server's replies to a relay (port 67) or a resolver are not seeds.
        if (port == 67 and p[:1] != b"\x01") or (port == 53 and len(p) > 2 and p[2] & 0x80):
            continue
        h = hashlib.sha1(shape(p, int(port))).digest()
        if h in seen:
            continue
        seen.add(h)
        n += 1
        with open(os.path.join(outdir, f"seed-{prefix}-{n:02}"), "wb") as f:
            f.write(p)
    print(f"{path}: {n} payloads of distinct shapes to port {port} -> {outdir}/seed-{prefix}-*")


if __name__ == "__main__":
    main()
