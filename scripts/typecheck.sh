#!/usr/bin/env bash
# Type-check server/ and engines/ as the installed package sees them (evaldock.server,
# evaldock.engines). The editable install maps the folders through an import hook that
# mypy cannot follow, so a throwaway folder links evaldock/<root> to each top folder.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/evaldock"
for part in server engines openapi; do ln -s "$PWD/$part" "$root/evaldock/$part"; done
MYPYPATH="$root" .venv/bin/mypy -p evaldock.engines -p evaldock.server
