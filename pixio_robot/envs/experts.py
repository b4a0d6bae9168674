"""Experts that produce demonstrations: MetaWorld's scripted policies, a scripted ALOHA
transfer-cube expert (:mod:`pixio_robot.envs.aloha_expert`) and SB3 `.zip` agents.

``make_expert(env_name, **kw)`` returns an object with ``reset()`` and
``act(obs, info) -> np.ndarray`` where `obs` is the Dict observation of ``make_env`` and `info`
the last info dict (MetaWorld experts read ``info["full_state"]``, the 39-dim simulator state).

Measure an expert through the one rollout loop (state-only, no rendering)::

    python -m pixio_robot.evaluation.experts metaworld/drawer-open-v3 metaworld/hammer-v3 --episodes 50
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ALGOS = ("SAC", "TD3", "DDPG", "PPO", "A2C")


class MetaWorldExpert:
    """MetaWorld's own scripted policy for a task (``metaworld.policies.ENV_POLICY_MAP``).

    `noise` adds Gaussian noise of that std to the actions (clipped to [-1, 1]) for more varied
    demonstrations; the default 0 gives the plain scripted behaviour.
    """

    def __init__(self, task: str, *, noise: float = 0.0, seed: int | None = None) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        if task not in ENV_POLICY_MAP:
            raise ValueError(f"MetaWorld ships no scripted policy for {task!r}; known: {sorted(ENV_POLICY_MAP)}.")
        self.task = task
        self.policy = ENV_POLICY_MAP[task]()
        self.noise = float(noise)
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Scripted policies are stateless; kept for the common expert API."""

    def act(self, obs: dict, info: dict) -> np.ndarray:
        full = info.get("full_state")
        if full is None:
            full = obs["state"]
        if np.shape(full)[-1] != 39:
            raise ValueError("The MetaWorld expert needs the 39-dim simulator state: pass the info dict "
                             "returned by a metaworld/* env of make_env (it holds info['full_state']).")
        action = np.asarray(self.policy.get_action(np.asarray(full, np.float64)), np.float32)
        if self.noise > 0:
            action = np.clip(action + self._rng.normal(0.0, self.noise, action.shape), -1.0, 1.0)
        return action.astype(np.float32)


def sb3_algo_of(path: str | Path) -> str:
    """Read which stable-baselines3 algorithm saved a `.zip` (from its `data` JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No SB3 expert at {path}; train one with `python -m pixio_robot.rl` "
                                "(state observations) and pass the saved .zip path.")
    try:
        with zipfile.ZipFile(path) as zf:
            data = json.loads(zf.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a stable-baselines3 .zip ({exc}).") from exc
    module = str(data.get("policy_class", {}).get("__module__", ""))  # e.g. stable_baselines3.sac.policies
    for algo in ("SAC", "TD3"):  # DDPG saves TD3 policies and loads as TD3
        if f".{algo.lower()}." in module:
            return algo
    if module.endswith("common.policies"):  # ActorCriticPolicy: PPO (has a clip range) or A2C
        return "PPO" if "clip_range" in data else "A2C"
    raise ValueError(f"Cannot tell the algorithm of {path} (policy module {module!r}); pass algo= one of {ALGOS}.")


class SB3Expert:
    """A trained stable-baselines3 agent acting on the env's ``state`` (deterministic actions).

    Works for agents trained on the plain state vector or on a Dict observation whose keys are
    a subset of the env's (e.g. ``{"state"}``).
    """

    def __init__(self, path: str | Path, *, algo: str | None = None, deterministic: bool = True) -> None:
        import stable_baselines3

        algo = (algo or sb3_algo_of(path)).upper()
        if algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}.")
        meta = Path(path).parent / "agent.json"  # written beside model.zip by python -m pixio_robot.rl
        obs = None
        with contextlib.suppress(ValueError, OSError):
            obs = json.loads(meta.read_text()).get("obs") if meta.is_file() else None
        if obs not in (None, "state"):
            raise ValueError(f"{path} was trained on obs={obs}: an expert acts on the env's state vector; "
                             "train it with `python -m pixio_robot.rl obs=state ...`")
        from pixio_robot.utils.io import clean_torch_error

        try:
            self.model = getattr(stable_baselines3, algo).load(str(path), device="cpu")
        except Exception as e:
            raise clean_torch_error(e, path) from None
        self.deterministic = deterministic
        space = self.model.observation_space
        self._keys = list(space.spaces) if hasattr(space, "spaces") else None
        self.path, self.algo = Path(path), algo

    def reset(self) -> None:
        """Feed-forward agents keep no state between steps."""

    def act(self, obs: dict, info: dict) -> np.ndarray:
        x: Any = {k: obs[k] for k in self._keys} if self._keys else obs["state"]
        action, _ = self.model.predict(x, deterministic=self.deterministic)
        return np.asarray(action, np.float32)


def make_expert(env_name: str, *, path: str | Path | None = None, algo: str | None = None, **kw):
    """The expert for `env_name`: an SB3 agent when `path` is given, else the scripted one.

    Scripted experts exist for every ``metaworld/*`` task, ``lerobot/aloha-transfer-cube`` and
    ``lerobot/pusht`` (a centre pusher that ignores the block's angle: motion demos, few successes).
    For ``dmc/*``, ``gym/*`` and ALOHA insertion train an agent with ``python -m pixio_robot.rl``
    and pass its `.zip` as `path` (or use LeRobot's human datasets by hub id).
    """
    if path is not None:
        return SB3Expert(path, algo=algo, **kw)
    family, _, task = env_name.partition("/")
    if family == "metaworld":
        return MetaWorldExpert(task, **kw)
    if env_name == "lerobot/aloha-transfer-cube":
        from pixio_robot.envs.aloha_expert import AlohaTransferCubeExpert

        return AlohaTransferCubeExpert(**kw)
    if env_name == "lerobot/pusht":  # pushes the block's centre to the goal; seldom reaches 95% coverage
        from pixio_robot.envs.pusht_expert import PushTPusherExpert

        return PushTPusherExpert(**kw)
    raise ValueError(f"No scripted expert for {env_name!r}. Scripted experts: metaworld/*, "
                     "lerobot/aloha-transfer-cube, lerobot/pusht (a centre pusher). For other envs "
                     "train one with `python -m pixio_robot.rl` (state observations) and pass "
                     "path='<agent>.zip', or use a LeRobot dataset by hub id.")
