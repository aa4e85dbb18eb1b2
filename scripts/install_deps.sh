#!/usr/bin/env bash
# Installs the Debian packages osp needs when they are missing (as root, or via sudo).
# Used by scripts/demo.sh and scripts/test.sh; safe to run repeatedly.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libhdf5-dev hdf5-tools libyaml-dev
      libjansson-dev libopenmpi-dev openmpi-bin)
[ "${OSP_WITH_PYTHON:-0}" = 1 ] && pkgs+=(python3 python3-numpy python3-h5py python3-torch)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "osp: installing missing packages: ${missing[*]}"
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "osp: error: missing packages (${missing[*]}) and no root/sudo to install them" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
