#!/usr/bin/env bash
# Idempotent set-up: system packages (ffmpeg, OSMesa) when missing, then a virtualenv keyed by
# the hash of requirements.lock (shared between clones on one machine, so a clean clone reuses
# it in seconds), linked as ./.venv, with this checkout installed in editable mode.
#   PIXIO_VENV_ROOT   where keyed venvs live (default ~/.cache/pixio_robot)
#   PIXIO_SKIP_APT=1  never touch system packages
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "pixio_robot needs Python 3.11 (lerobot 0.4.4)"' \
  || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

# --- system packages -------------------------------------------------------------------
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

# --- virtualenv keyed by the lock file --------------------------------------------------
hash=$(cat requirements.lock | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')
root=${PIXIO_VENV_ROOT:-$HOME/.cache/pixio_robot}
venv="$root/venv-$hash"
if [ ! -f "$venv/.complete" ]; then
  echo "setup: creating $venv (first time on this machine: downloads ~4.5 GB, ~5 min)"
  rm -rf "$venv"; mkdir -p "$root"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip setuptools wheel
  "$venv/bin/pip" install -q -r requirements.lock
  touch "$venv/.complete"
fi
if [ -L .venv ] || [ ! -e .venv ]; then ln -sfn "$venv" .venv
else echo "setup: ./.venv exists and is not a link; using it as is" >&2; fi
# Editable install of this checkout (no dependency resolution: the lock file did that).
.venv/bin/pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "setup: editable install failed; rerun: .venv/bin/pip install --no-deps -e ." >&2; exit 1; }
echo "setup: ready ($(.venv/bin/python -c 'import torch,sys;print("python",sys.version.split()[0],"torch",torch.__version__)'))"
