#!/usr/bin/env bash
# R for `make r-compat`: Debian's R and the packages AwkwardMLTools imports (apt-get, as root or
# through sudo), then AwkwardMLTools itself from its source folder (read-only: installed from a copy)
# into RLIB. Usage: tools/rcompat/install.sh SOURCE_DIR RLIB
set -euo pipefail
src=$1; rlib=$2
[ -f "$src/DESCRIPTION" ] || { echo "no R package at $src (AWKWARD_SRC=...)"; exit 1; }
if ! Rscript -e 'for (p in c("png", "magrittr", "purrr")) stopifnot(requireNamespace(p, quietly = TRUE))' >/dev/null 2>&1; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        r-base-core r-cran-png r-cran-magrittr r-cran-purrr
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/awkwardmltools.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r "$src" "$tmp/AwkwardMLTools"
chmod -R u+w "$tmp/AwkwardMLTools"
rm -rf "$rlib"; mkdir -p "$rlib"
R CMD INSTALL --no-test-load -l "$rlib" "$tmp/AwkwardMLTools" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
Rscript -e "cat(R.version.string, '| png', as.character(packageVersion('png')), '| AwkwardMLTools',
            as.character(packageVersion('AwkwardMLTools', lib.loc = '$rlib')), 'from $src\n')"
