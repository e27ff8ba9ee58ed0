#!/usr/bin/env bash
# Installs ecos_jax into ./.venv with the extras a make target needs (idempotent; re-runs
# only when the dependency files or the extras change).
# Usage: scripts/install.sh [--test | EXTRAS]   (default `experiments`; --test = `test`;
# EXTRAS is a comma-separated list of pyproject extras, e.g. `experiments,cuda12`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
case "${1:-}" in
  "") extras="[experiments]" ;;
  --test) extras="[test]" ;;
  *) extras="[$1]" ;;
esac

# Debian packages: a data domain (Fashion-MNIST) and extra font families for rendered digits.
DEB_PKGS="dataset-fashion-mnist fonts-dejavu fonts-liberation fonts-freefont-ttf fonts-noto-core fonts-urw-base35 fonts-croscore fonts-crosextra-carlito fonts-crosextra-caladea fonts-roboto fonts-cantarell fonts-lato fonts-open-sans"
stamp_deb=.venv/.deb-installed
if [[ ! -f "$stamp_deb" ]] && command -v apt-get >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo -n"; fi
  if $SUDO true 2>/dev/null; then
    ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $DEB_PKGS >/dev/null) \
      || echo "warning: apt-get could not install '$DEB_PKGS'; the domains that need them are skipped" >&2
  else
    echo "warning: no root for apt-get; Debian-packaged domains (fashion_mnist) and extra fonts are skipped" >&2
  fi
fi

[[ -d .venv ]] || "$PY" -m venv .venv
[[ -f "$stamp_deb" ]] || touch "$stamp_deb"
key=$(cat pyproject.toml constraints.txt requirements-data.txt | sha256sum | cut -c1-16)"$extras"
stamp=.venv/.installed-$key
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install -q --upgrade "pip>=24"
  .venv/bin/python -m pip install -q -c constraints.txt -e ".$extras"
  .venv/bin/python -m pip install -q --no-deps -r requirements-data.txt
  rm -f .venv/.installed-*
  touch "$stamp"
fi
