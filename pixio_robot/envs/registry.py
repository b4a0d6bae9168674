"""`make_env` / `make_vec_env` / `list_envs`: one factory for every env family.

Names are namespaced ``<family>/<task>``: ``metaworld/drawer-open-v3``, ``dmc/walker-walk``,
``gym/Pusher-v5``, ``lerobot/pusht``, ``lerobot/aloha-transfer-cube``,
``lerobot/aloha-insertion``. Wrapper order (inside -> outside): family adapter (Dict obs,
``info["is_success"]``, fast rendering) -> ActionRepeat -> TimeLimit -> PixelHistory.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym

from pixio_robot.envs.wrappers import ActionRepeat, PixelHistory


@dataclass(frozen=True)
class Family:
    """An env family: its task names, its adapter factory and its episode limit in env steps."""

    names: Callable[[], tuple[str, ...]]
    build: Callable[..., gym.Env]
    episode_steps: Callable[[str], int | None]


def _metaworld_names():
    from pixio_robot.envs.metaworld_env import task_names

    return task_names()


def _metaworld_build(task, **kw):
    from pixio_robot.envs.metaworld_env import MetaWorldEnv

    return MetaWorldEnv(task, **kw)


def _gym_names():
    from pixio_robot.envs.gym_env import task_names

    return task_names()


def _gym_build(task, **kw):
    from pixio_robot.envs.gym_env import GymMujocoEnv

    return GymMujocoEnv(task, **kw)


def _gym_steps(task):
    return gym.registry[task].max_episode_steps if task in gym.registry else None


def _dmc_names():
    from pixio_robot.envs.dmc_env import task_names

    return task_names()


def _dmc_build(task, **kw):
    from pixio_robot.envs.dmc_env import DMCEnv

    return DMCEnv(task, **kw)


def _lerobot_names():
    from pixio_robot.envs.lerobot_env import TASKS

    return tuple(sorted(TASKS))


def _lerobot_build(task, **kw):
    from pixio_robot.envs.lerobot_env import make_lerobot_env

    return make_lerobot_env(task, **kw)


def _lerobot_steps(task):
    from pixio_robot.envs.lerobot_env import TASKS

    return TASKS[task].episode_steps


FAMILIES: dict[str, Family] = {
    "metaworld": Family(_metaworld_names, _metaworld_build, lambda t: 500),
    "dmc": Family(_dmc_names, _dmc_build, lambda t: 1000),
    "gym": Family(_gym_names, _gym_build, _gym_steps),
    "lerobot": Family(_lerobot_names, _lerobot_build, _lerobot_steps),
}


_UNAVAILABLE: dict[str, str] = {}  # family -> why its simulator cannot be imported


@functools.cache
def _family_names(family: str) -> tuple[str, ...]:
    try:
        return tuple(f"{family}/{t}" for t in FAMILIES[family].names())
    except ImportError as exc:  # an optional simulator is missing: list nothing, say why on use
        _UNAVAILABLE[family] = str(exc)
        return ()


def list_envs(pattern: str = "*") -> list[str]:
    """Known env names matching a glob `pattern` (e.g. ``"metaworld/*"``), sorted."""
    names = [n for fam in FAMILIES for n in _family_names(fam)]
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def close_envs(name: str) -> list[str]:
    """Known env names close to `name` (also a bare task name without its family)."""
    known = list_envs()
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    if not close and "/" not in name:  # a bare task name: look for it under each family
        close = [n for n in known if n.split("/", 1)[1].lower() == name.lower()]
        close += difflib.get_close_matches(name, [n.split("/", 1)[1] for n in known], n=3, cutoff=0.6)
    return close


def unknown_env_short(name: str) -> str:
    """One line for an unknown env: the close matches and how to list every name (not all of them)."""
    close = close_envs(name)
    hint = f" (did you mean {' / '.join(close)}?)" if close else ""
    return (f"unknown env {name!r}{hint}; names are '<family>/<task>' with family in {sorted(FAMILIES)}; "
            f"pixio_robot.envs.list_envs() lists all {len(list_envs())}")


def _unknown(name: str) -> ValueError:
    known = list_envs()
    close = close_envs(name)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"Unknown env {name!r}.{hint} Names are '<family>/<task>' with family in "
                      f"{sorted(FAMILIES)}. Known envs ({len(known)}): {', '.join(known)}")


def parse_name(name: str) -> tuple[str, str]:
    """'metaworld/drawer-open-v3' -> ('metaworld', 'drawer-open-v3'); unknown names raise
    ValueError listing the known ones and the closest matches."""
    if not isinstance(name, str) or "/" not in name:
        raise _unknown(str(name))
    family, task = name.split("/", 1)
    if family in FAMILIES and not _family_names(family) and family in _UNAVAILABLE:
        raise ImportError(f"{name}: the {family} simulator cannot be imported ({_UNAVAILABLE[family]}). "
                          "Install the project's pinned dependencies (see pyproject.toml).")
    if family not in FAMILIES or name not in _family_names(family):
        raise _unknown(name)
    return family, task


def task_description(name: str) -> str:
    """Task text stored with demonstrations, e.g. 'metaworld/drawer-open-v3' -> 'drawer open'."""
    family, task = parse_name(name)
    if family == "lerobot":
        from pixio_robot.envs.lerobot_env import TASKS

        return TASKS[task].text
    if family == "metaworld":
        task = task.removesuffix("-v3")
    elif family == "gym":
        task = task.rsplit("-v", 1)[0]
    return task.replace("-", " ").replace("_", " ").lower()


def episode_limit(name: str, action_repeat: int = 1) -> int | None:
    """Default episode length in agent steps: the suite's limit in env steps / action_repeat."""
    family, task = parse_name(name)
    steps = FAMILIES[family].episode_steps(task)
    return None if steps is None else math.ceil(steps / max(1, int(action_repeat)))


def make_env(name: str, *, image_size: int | tuple[int, int] = 128, camera: str | None = None,
             frame_stack: int = 1, action_repeat: int = 1, max_episode_steps: int | None = None,
             seed: int | None = None, render_quality: str = "fast", **options) -> gym.Env:
    """Build one env with the Dict observation contract (see docs/CONTRACTS.md).

    `options` go to the family adapter: ``pixels=False`` (state only, no rendering, cheap),
    MetaWorld ``state="proprio"|"full"``, dm_control ``camera`` ids, etc.
    `max_episode_steps` counts agent steps (after `action_repeat`); default: the suite's limit.
    `seed` seeds the first reset; ``reset(seed=s)`` reseeds reproducibly.
    """
    family, task = parse_name(name)
    try:
        env = FAMILIES[family].build(task, image_size=image_size, camera=camera, seed=seed,
                                     render_quality=render_quality, **options)
    except TypeError as e:  # a misspelled option reaches an adapter or simulator constructor
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if bad is None or bad.group(1) not in options:
            raise
        known = ["image_size", "camera", "frame_stack", "action_repeat", "max_episode_steps", "seed",
                 "render_quality", "pixels", "state", "cameras"]
        close = difflib.get_close_matches(bad.group(1), known, n=2)
        raise ValueError(f"make_env({name!r}): unknown option {bad.group(1)!r}"
                         + (f" (did you mean {' / '.join(close)}?)" if close else "")
                         + f"; options: {', '.join(known)} and the family's own (docs/envs.md)") from e
    if int(action_repeat) != 1:
        env = ActionRepeat(env, action_repeat)
    limit = max_episode_steps if max_episode_steps is not None else episode_limit(name, action_repeat)
    if limit is not None:
        env = gym.wrappers.TimeLimit(env, int(limit))
    if int(frame_stack) > 1:
        env = PixelHistory(env, frame_stack)
    return env


def supports_cameras(name: str) -> bool:
    """Whether env `name` takes `cameras=[...]` (extra views in obs["pixels.<camera>"])."""
    family, task = parse_name(name)
    if family == "lerobot":
        from pixio_robot.envs.lerobot_env import supports_cameras as lerobot_cameras

        return lerobot_cameras(task)
    return False


def make_vec_env(name: str, n: int, *, seed: int | None = None, vector_mode: str = "serial",
                 context: str | None = "forkserver", autoreset_mode: str = "NextStep",
                 **options) -> gym.vector.VectorEnv:
    """`n` copies of ``make_env(name, **options)`` in a gymnasium VectorEnv.

    ``vector_mode="serial"`` steps them in this process (SyncVectorEnv); ``"subproc"`` in `n`
    worker processes (AsyncVectorEnv)
    (``context`` is the multiprocessing start method; forkserver avoids forking a process that
    already holds GL contexts or torch threads). Env i gets seed ``seed + i``.
    """
    parse_name(name)  # fail early, in this process, on a bad name
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    fns = [functools.partial(make_env, name, seed=None if seed is None else int(seed) + i, **options)
           for i in range(int(n))]
    mode = gym.vector.AutoresetMode(autoreset_mode)
    if vector_mode == "serial":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    if vector_mode == "subproc":
        return gym.vector.AsyncVectorEnv(fns, context=context, autoreset_mode=mode)
    raise ValueError(f"vector_mode must be 'serial' or 'subproc', got {vector_mode!r}.")
