#!/usr/bin/env bash
# Idempotent set-up, the standard way: system packages (ffmpeg, OSMesa, EGL) when missing, a Python
# 3.12, uv (bootstrapped from PyPI with pip when absent), then `uv sync --locked`: ./.venv holds
# exactly uv.lock (the project editable, its console scripts, the lerobot_policy_pixio plugin, the
# dev tools). uv's global cache makes a second clone or a CI run take seconds.
#   PYTHON=/path/to/python3.12   use this interpreter
#   PIXIO_SKIP_APT=1             never touch system packages
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system packages (uv does not do these) ----------------------------------------------
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
ldconfig -p 2>/dev/null | grep -q libOSMesa || need+=(libosmesa6)
ldconfig -p 2>/dev/null | grep -q 'libEGL.so' || need+=(libegl1 libgl1-mesa-dri)
if [ ${#need[@]} -gt 0 ] && [ "${PIXIO_SKIP_APT:-0}" != 1 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing system packages: ${need[*]}"
    (apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }) \
      || echo "setup: WARNING could not install ${need[*]}; video decoding uses pyav, rendering needs EGL or OSMesa" >&2
  else
    echo "setup: WARNING missing ${need[*]} (install them with your package manager)" >&2
  fi
fi

# --- a Python 3.12 ------------------------------------------------------------------------
is312() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }
py=${PYTHON:-}
if [ -n "$py" ] && ! is312 "$py"; then
  echo "setup: PYTHON=$py is not a Python 3.12 (lerobot 0.6 needs 3.12)" >&2; exit 1
fi
if [ -z "$py" ]; then
  for cand in "$(command -v python3.12 || true)" "$(command -v python3 || true)"; do
    if is312 "$cand"; then py=$cand; break; fi
  done
fi
if [ -z "$py" ] && command -v pyenv >/dev/null; then   # pyenv: 3.12 installed but not the global one
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | sort -t. -k3 -n -r); do
    cand=$(PYENV_VERSION=$v pyenv which python 2>/dev/null || true)
    if is312 "$cand"; then py=$cand; break; fi
  done
fi

# --- uv ----------------------------------------------------------------------------------
uv=$(command -v uv || true)
if [ -z "$uv" ] && [ -x "$HOME/.local/bin/uv" ]; then uv=$HOME/.local/bin/uv; fi
if [ -z "$uv" ]; then
  boot=$(command -v python3 || command -v python || true)
  [ -n "$boot" ] || { echo "setup: no python3 to bootstrap uv with; install uv (https://docs.astral.sh/uv/)" >&2; exit 1; }
  echo "setup: installing uv from PyPI (pip install --user uv)"
  "$boot" -m pip install -q --user uv 2>/dev/null || "$boot" -m pip install -q uv
  uv=$(command -v uv || true)
  [ -n "$uv" ] || uv=$("$boot" -c 'import sysconfig,os;print(os.path.join(sysconfig.get_path("scripts","posix_user"),"uv"))')
  [ -x "$uv" ] || uv=$("$boot" -c 'import sysconfig,os;print(os.path.join(sysconfig.get_path("scripts"),"uv"))')
fi
if [ -z "$py" ]; then
  py=$("$uv" python find 3.12 2>/dev/null || true)
fi
is312 "$py" || {
  echo "setup: no Python 3.12 found (python3.12, python3, pyenv, uv python find). Install one" \
       "(e.g. 'uv python install 3.12' or 'pyenv install 3.12') or set PYTHON=/path/to/python3.12" >&2
  exit 1
}

# --- the locked environment ---------------------------------------------------------------
# A ./.venv of another Python (e.g. the old 3.11 keyed-venv link) is replaced by uv.
if [ -L .venv ]; then rm .venv; fi
UV_PYTHON=$py "$uv" sync --locked --quiet
.venv/bin/python -c 'import pixio_robot, os, sys; assert os.path.samefile(os.path.dirname(pixio_robot.__file__), os.path.join(sys.argv[1], "pixio_robot")), pixio_robot.__file__' "$PWD" \
  || { echo "setup: ./.venv does not import this checkout's pixio_robot" >&2; exit 1; }
echo "setup: ready ($(.venv/bin/python -c 'import torch,sys,lerobot;print("python",sys.version.split()[0],"torch",torch.__version__,"lerobot",lerobot.__version__)'))"
