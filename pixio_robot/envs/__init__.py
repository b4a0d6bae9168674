"""Simulated worlds under one observation contract (see docs/CONTRACTS.md and docs/envs.md).

``make_env("metaworld/drawer-open-v3", image_size=128)`` returns a gymnasium env whose
observation is ``{"pixels": uint8 [H,W,3], "state": float32 [S]}`` and whose info holds
``is_success``. Importing this package chooses the headless OpenGL backend (EGL, else OSMesa)
before mujoco is imported.
"""

from pixio_robot.envs.rendering import setup_gl, setup_gl_on_import

setup_gl_on_import()

from pixio_robot.envs.registry import (  # noqa: E402
    episode_limit,
    list_envs,
    make_env,
    make_vec_env,
    parse_name,
    task_description,
)

__all__ = ["episode_limit", "list_envs", "make_env", "make_vec_env", "parse_name", "setup_gl", "task_description"]
