#!/usr/bin/env bash
# Jane Austen's six novels (public domain) for `ptqtheory validate --model smollm2`: Debian's
# r-cran-janeaustenr, downloaded with apt and unpacked (no R needed: ptqtheory reads its R data with
# the PyPI package rdata). Installs into ~/.local/share/ptqtheory/janeaustenr, where
# ptqtheory.models.corpus looks (or into $1).
set -euo pipefail
dest="${1:-$HOME/.local/share/ptqtheory/janeaustenr}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download r-cran-janeaustenr >/dev/null 2>&1; then
    # A fresh machine has no package lists yet (needs root, as on CI and these project machines).
    apt-get update -qq
    apt-get download r-cran-janeaustenr
fi
mkdir -p "$dest"
dpkg-deb -x r-cran-janeaustenr_*.deb "$dest"
echo "Jane Austen corpus unpacked into $dest"
