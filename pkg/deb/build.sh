#!/usr/bin/env bash
# Builds the Debian package of pserv from the workspace with dpkg-deb (Debian's own packaging
# tool): the binary, the systemd unit, a commented default config in /etc/pserv (a conffile),
# man pages and bash/zsh/fish completions generated from the CLI definition (`pserv assets`),
# and the maintainer scripts that create the `pserv` system user. Installing it starts and
# enables nothing.
#
#   pkg/deb/build.sh            -> target/debian/pserv_<version>_<arch>.deb (its path printed)
#
# PSERV_BIN=PATH packages that binary instead of building one (the package test does, from
# inside `cargo test`); PSERV_DEB_DIR=DIR writes the package there.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${PSERV_BIN:-}" ]; then
  cargo build --release -q -p pserv-bin
fi
bin="${PSERV_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/pserv}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out="${PSERV_DEB_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/debian}"
root=$(mktemp -d)
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT

install -Dm755 "$bin" "$root/usr/bin/pserv"
strip --strip-debug "$root/usr/bin/pserv"
install -Dm644 contrib/pserv.service "$root/usr/lib/systemd/system/pserv.service"
install -Dm644 pkg/deb/pserv.toml "$root/etc/pserv/pserv.toml"
"$bin" assets "$root/assets"
mkdir -p "$root/usr/share/man/man1"
for page in "$root"/assets/man/*.1; do
  gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
install -Dm644 "$root/assets/completions/pserv.bash" "$root/usr/share/bash-completion/completions/pserv"
install -Dm644 "$root/assets/completions/_pserv" "$root/usr/share/zsh/vendor-completions/_pserv"
install -Dm644 "$root/assets/completions/pserv.fish" "$root/usr/share/fish/vendor_completions.d/pserv.fish"
rm -rf "$root/assets"
install -Dm644 README.md "$root/usr/share/doc/pserv/README.md"
gzip -9n "$root/usr/share/doc/pserv/README.md"
cat >"$root/usr/share/doc/pserv/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pserv

Files: *
Copyright: the pserv authors
License: $(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -1)
COPY

mkdir -p "$root/DEBIAN"
install -m755 pkg/deb/postinst pkg/deb/prerm pkg/deb/postrm "$root/DEBIAN/"
echo /etc/pserv/pserv.toml >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: pserv
Version: $version
Architecture: $arch
Maintainer: pserv developers <pserv@example.invalid>
Installed-Size: $size
Depends: libc6 (>= 2.34), adduser
Section: net
Priority: optional
Description: DHCP, authoritative DNS and network boot for provisioning networks
 pserv answers DHCPv4, DNS, TFTP and HTTP boot for bare-metal provisioning networks from one
 compiled table that a controller replaces by pushing whole node snapshots. It serves per-node
 iPXE, GRUB and pxelinux configurations and installer files, proxyDHCP beside a site DHCP
 server, and shares dynamic leases through etcd in cluster mode.
 .
 The package installs the pserv.service unit (run as the pserv user with only
 CAP_NET_BIND_SERVICE) without enabling or starting it.
CONTROL
mkdir -p "$out"
deb="$out/pserv_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
