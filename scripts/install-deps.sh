#!/usr/bin/env bash
# Installs the Debian packages omens needs on a fresh machine, and nothing when they are
# there: swtpm and swtpm-tools (a second TPM implementation with real EK certificates),
# tpm2-tools (interop tests), libssl-dev and gcc (the in-process reference TPM is cgo);
# cryptsetup-bin, clevis, clevis-luks and clevis-tpm2 (the doctor's LUKS2/Clevis check, on
# an image file); systemd (systemd-analyze verify of the rendered units); nginx (the
# file-reading TLS server of the SVID helper's test); prometheus (promtool and the lab's
# Prometheus); postgresql and haproxy (shared state and two servers behind one address).
# Debian starts no service of these here: the tests and the lab start their own.
set -euo pipefail
pkgs=(swtpm swtpm-tools tpm2-tools libssl-dev gcc cryptsetup-bin clevis clevis-luks clevis-tpm2
      systemd nginx prometheus postgresql haproxy)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: Debian packages present (${pkgs[*]})"
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then sudo=sudo; else
    echo "deps: missing ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "deps: installing ${missing[*]} with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${missing[*]}"
