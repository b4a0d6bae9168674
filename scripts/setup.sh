#!/usr/bin/env bash
# Idempotent set-up: system packages (ffmpeg, OSMesa) when missing, then a virtualenv of the
# dependencies keyed by the hash of requirements.lock (shared between clones on one machine, so a
# clean clone reuses it in seconds), then ./.venv: a thin per-clone venv that sees the keyed one
# and imports this checkout, with the console scripts.
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
# The keyed venv holds dependencies only; a project install there would be shared by every clone.
if [ -d "$venv/lib/python3.11/site-packages/pixio_robot-0.1.0.dist-info" ] || ls "$venv"/lib/python3.11/site-packages/__editable__*pixio_robot* >/dev/null 2>&1; then
  "$venv/bin/pip" uninstall -y -q pixio_robot >/dev/null 2>&1 || true
fi

# --- per-clone ./.venv: a thin venv that sees the keyed one and this checkout ------------
# (seconds to build, so each clone imports its own code and has its own console scripts)
if [ -L .venv ]; then rm .venv; fi
if [ ! -f .venv/pixio-shared ] || [ "$(cat .venv/pixio-shared)" != "$venv" ] || [ ! -x .venv/bin/python ]; then
  [ -e .venv ] && [ ! -f .venv/pixio-shared ] && { echo "setup: ./.venv exists and was not made by this script; move it away" >&2; exit 1; }
  rm -rf .venv
  "$PY" -m venv --without-pip .venv
  sp=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  shared_sp=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import site; site.addsitedir('$shared_sp')" > "$sp/00_pixio_shared.pth"
  echo "$venv" > .venv/pixio-shared
fi
sp=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pwd > "$sp/pixio_robot_checkout.pth"
# Console scripts of this project and of the tools the README uses, run with this venv's python.
wrap() { printf '#!/bin/sh\nexec "%s/.venv/bin/python" -m %s "$@"\n' "$PWD" "$2" > ".venv/bin/$1"; chmod +x ".venv/bin/$1"; }
for entry in pretrain:pretrain collect:collect train:train rl:rl evaluate:evaluate benchmark:benchmark quickstart:quickstart; do
  wrap "pixio-${entry%%:*}" "pixio_robot.${entry#*:}"
done
wrap pixio-pretrain-score pixio_robot.pretrain.score
wrap pip pip; wrap pytest pytest; wrap torchrun torch.distributed.run; wrap tensorboard tensorboard.main
ln -sfn "$venv/bin/ruff" .venv/bin/ruff
.venv/bin/python -c 'import pixio_robot, os, sys; assert os.path.samefile(os.path.dirname(pixio_robot.__file__), os.path.join(sys.argv[1], "pixio_robot")), pixio_robot.__file__' "$PWD" \
  || { echo "setup: ./.venv does not import this checkout's pixio_robot" >&2; exit 1; }
echo "setup: ready ($(.venv/bin/python -c 'import torch,sys;print("python",sys.version.split()[0],"torch",torch.__version__)'))"
