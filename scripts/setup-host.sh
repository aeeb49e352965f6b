#!/usr/bin/env bash
# Installs the Debian packages that lvssync's integration tests, lab and demo use, when missing.
# Fails loudly, with the reason, when it cannot.
set -euo pipefail

die() { printf 'lvssync setup: %s\n' "$*" >&2; exit 1; }

# program -> Debian package
declare -A NEED=(
  [keepalived]=keepalived
  [ferm]=ferm
  [iptables]=iptables
  [iptables-save]=iptables
  [sshd]=openssh-server
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [ip]=iproute2
  [unshare]=util-linux
  [rsync]=rsync
  [ipvsadm]=ipvsadm
  # the systemd lab and the Debian package
  [systemd-nspawn]=systemd-container
  [mmdebstrap]=mmdebstrap
  [lintian]=lintian
  [dpkg-deb]=dpkg
)

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
for prog in "${!NEED[@]}"; do
  have "$prog" || missing+=("${NEED[$prog]}")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)

[ "$(id -u)" = 0 ] || die "missing packages (${pkgs[*]}) and not root: run as root, or install them with apt-get install ${pkgs[*]}"
command -v apt-get >/dev/null || die "missing packages (${pkgs[*]}) and no apt-get on this machine: lvssync's tests expect Debian"

printf '== installing %s\n' "${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d: install the packages without starting their services on this host (keepalived
# and sshd run only inside the lab's namespaces).
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq || die "apt-get update failed"
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null || die "apt-get install ${pkgs[*]} failed"
for prog in "${!NEED[@]}"; do
  have "$prog" || die "$prog is still missing after installing ${NEED[$prog]}"
done
