"""Headless OpenGL set-up for MuJoCo and the fast/default rendering quality switch.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when ``mujoco`` (or dm_control) is first
imported, so :func:`setup_gl` must run before that; :mod:`pixio_robot.envs` calls it on import.

On a CPU-only machine MuJoCo's default visual quality (4096^2 shadow map, 4x multisampling,
mirror pass for reflective materials) makes software rendering 3-25x slower than with all three
off, so the project renders with ``render_quality="fast"`` unless asked for ``"default"``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import warnings

BACKENDS = ("egl", "osmesa", "glfw")
QUALITIES = ("fast", "default")
_PROBE_ENV = "PIXIO_ROBOT_GL_PROBED"

_INSTALL_HINT = (
    "No headless OpenGL backend works on this machine. Install one of them:\n"
    "  EGL (preferred; GPU driver or Mesa):  sudo apt-get install -y libegl1 libgl1-mesa-dri\n"
    "  OSMesa (software fallback):           sudo apt-get install -y libosmesa6\n"
    "then retry, or set MUJOCO_GL=egl|osmesa yourself. Tried: {tried}."
)

_PROBE_CODE = (
    "import mujoco\n"
    "ctx = mujoco.GLContext(16, 16)\n"
    "ctx.make_current()\n"
    "ctx.free()\n"
)


def _probe(backend: str, timeout: float = 60.0) -> str | None:
    """Try to create a MuJoCo GL context with `backend` in a child process.

    Returns None on success, else the last line of the child's error output. A child process
    is used because the backend is frozen in a process once mujoco / PyOpenGL are imported.
    """
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE_CODE], env=env, capture_output=True,
                             text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if out.returncode == 0:
        return None
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {out.returncode}"


def setup_gl(backend: str | None = None, *, probe: bool = True) -> str:
    """Choose the headless OpenGL backend for MuJoCo before it is imported; return its name.

    Order: `backend` if given, else ``MUJOCO_GL`` if the user set it (trusted as is), else EGL,
    then OSMesa, each checked by creating a tiny GL context in a child process (once per process
    tree: the choice is exported in the environment, so vector-env workers inherit it).
    Raises RuntimeError naming the packages to install when nothing works.
    """
    chosen = (backend or os.environ.get("MUJOCO_GL") or "").lower()
    if chosen:
        if chosen not in BACKENDS:
            raise ValueError(f"Unknown OpenGL backend {chosen!r} (from MUJOCO_GL or the argument); "
                             f"use one of {', '.join(BACKENDS)}.")
        _export(chosen)
        return chosen
    if "mujoco" in sys.modules:
        warnings.warn("mujoco was imported before pixio_robot.envs.rendering.setup_gl(); its OpenGL "
                      "backend is already fixed. Import pixio_robot.envs first or export MUJOCO_GL=egl.",
                      RuntimeWarning, stacklevel=2)
    tried = []
    for cand in ("egl", "osmesa"):
        err = _probe(cand) if probe else None
        if err is None:
            _export(cand)
            os.environ[_PROBE_ENV] = cand
            return cand
        tried.append(f"{cand} ({err})")
    raise RuntimeError(_INSTALL_HINT.format(tried="; ".join(tried)))


_GL_ERROR: RuntimeError | None = None


def setup_gl_on_import() -> None:
    """Run :func:`setup_gl` without failing the import; the error is raised by
    :func:`require_gl` when an env that renders is built (state-only envs need no GL)."""
    global _GL_ERROR
    try:
        setup_gl()
    except RuntimeError as exc:
        _GL_ERROR = exc


def require_gl() -> None:
    """Raise the stored set-up error (naming what to install) if no GL backend works."""
    if _GL_ERROR is not None:
        raise _GL_ERROR


def _export(backend: str) -> None:
    os.environ["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        os.environ["PYOPENGL_PLATFORM"] = backend
    else:
        os.environ.pop("PYOPENGL_PLATFORM", None)


def check_quality(quality: str) -> str:
    if quality not in QUALITIES:
        raise ValueError(f"render_quality must be one of {QUALITIES}, got {quality!r}.")
    return quality


def apply_quality(model, quality: str = "fast", *, min_size: tuple[int, int] | None = None) -> None:
    """Set the rendering quality on a ``mujoco.MjModel`` (or dm_control's wrapper of one).

    Must run before the first render (the GL context reads it when it is created).
    ``"fast"``: no shadow map, no multisampling, no reflections; ``"default"``: leave the
    model's own values.
    `min_size` (height, width) grows the offscreen buffer so frames of that size can be rendered.
    """
    check_quality(quality)
    if quality == "fast":
        model.vis.quality.shadowsize = 0
        model.vis.quality.offsamples = 0
        # a reflective material makes MuJoCo draw the scene twice (mirror pass): ~2x in MetaWorld
        model.mat_reflectance[:] = 0
    if min_size is not None:
        h, w = min_size
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), int(h))
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), int(w))


__all__ = ["BACKENDS", "QUALITIES", "apply_quality", "check_quality", "no_gc_finalizers", "render_gym_mujoco",
           "require_gl", "setup_gl"]


@contextlib.contextmanager
def no_gc_finalizers():
    """No automatic garbage collection inside the block. Freeing *any* MuJoCo EGL context
    (`mujoco.egl.GLContext.free`, run by `__del__` when the cyclic GC collects an env that was
    dropped without `close()`) calls `eglReleaseThread`, which unbinds whatever context is current,
    ours included; a collection between making our context current and reading the pixels back
    would render into no context. Renders hold the collector off for their few milliseconds."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def render_gym_mujoco(env):
    """`env.render()` of a gymnasium MuJoCo env, with this env's GL context made current first.

    gymnasium's off-screen viewer renders into whatever context is current; with several envs in
    one process (serial evaluation, a rebuilt crashed env) closing another env frees the current
    context and later frames come out wrong (measured: every pixel off after a second MetaWorld env
    was created and closed). Making our own context current costs microseconds; no collection may
    run between that and the read-back (`no_gc_finalizers`)."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    viewer = getattr(renderer, "viewer", None) if renderer is not None else None
    with no_gc_finalizers():
        if viewer is not None and hasattr(viewer, "make_context_current"):
            viewer.make_context_current()
        return env.render()
