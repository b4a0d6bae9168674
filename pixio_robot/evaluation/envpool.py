"""A pool of K independent environments stepped in lockstep, where one env's crash is a result,
not an exception.

`gymnasium.vector.AsyncVectorEnv` tears the whole vector down when one worker raises (its
worker exits), and its autoreset hides episode boundaries. Evaluation needs the opposite: every
episode starts from a chosen seed, ends exactly once, and an env that fails mid-episode (physics
instability, renderer error) costs one episode, not the run. This pool does that, in-process
(`serial`) or with one worker process per env (`subproc`, rendering then runs on several cores
while the main process runs the policy).

Every call returns, per env index, either `("ok", payload)` or `("error", "Type: message")`.
After an error the env is closed and rebuilt by the next `reset`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import pickle
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)

Outcome = tuple[str, Any]  # ("ok", payload) | ("error", message)


@dataclass
class EnvFactory:
    """Picklable `make_env(name, **options)` call (works with every multiprocessing start method)."""

    name: str
    options: dict = field(default_factory=dict)

    def __call__(self) -> Any:
        from pixio_robot.envs import make_env

        return make_env(self.name, **self.options)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _EnvSlot:
    """One env plus the logic shared by the serial pool and the worker processes."""

    def __init__(self, env_fn: Callable[[], Any]):
        self.env_fn = env_fn
        self.env = None

    def _ensure(self):
        if self.env is None:
            self.env = self.env_fn()
        return self.env

    def _drop(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - a broken env may fail to close too
                pass

    def spaces(self) -> Outcome:
        try:
            env = self._ensure()
            return "ok", (env.observation_space, env.action_space, _max_steps(env))
        except Exception as exc:  # noqa: BLE001
            self._drop()
            return "error", _describe(exc)

    def reset(self, seed: int | None) -> Outcome:
        try:
            obs, info = self._ensure().reset(seed=seed)
            return "ok", (obs, dict(info))
        except Exception as exc:  # noqa: BLE001
            log.debug("reset failed: %s", traceback.format_exc())
            self._drop()
            return "error", _describe(exc)

    def step(self, action: np.ndarray) -> Outcome:
        try:
            if self.env is None:
                raise RuntimeError("step() called on an env that was not reset")
            obs, reward, terminated, truncated, info = self.env.step(action)
            reward = float(reward)
            if not np.isfinite(reward):
                raise FloatingPointError(f"non-finite reward {reward}")
            return "ok", (obs, reward, bool(terminated), bool(truncated), dict(info))
        except Exception as exc:  # noqa: BLE001
            log.debug("step failed: %s", traceback.format_exc())
            self._drop()
            return "error", _describe(exc)

    def close(self) -> None:
        self._drop()


def _max_steps(env) -> int | None:
    spec = getattr(env, "spec", None)
    steps = getattr(spec, "max_episode_steps", None) if spec is not None else None
    return int(steps) if steps else None


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the evaluating process dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _picklable(obj: Any) -> bool:
    try:
        pickle.dumps(obj)
        return True
    except Exception:  # noqa: BLE001 - lambdas, closures, local classes
        return False


def _worker(conn, env_fn) -> None:
    _die_with_parent()
    slot = _EnvSlot(env_fn)
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "reset":
                conn.send(slot.reset(arg))
            elif cmd == "step":
                conn.send(slot.step(arg))
            elif cmd == "spaces":
                conn.send(slot.spaces())
            elif cmd == "close":
                break
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        slot.close()
        conn.close()


class EnvPool:
    """K envs from `env_fn()`; `mode` is "serial" (in-process) or "subproc" (one process each).

    `start_method` applies to subproc. Default: "forkserver" for a picklable `env_fn` (an
    :class:`EnvFactory`, a module-level function): workers do not inherit this process's GL
    contexts or torch threads, which can deadlock a forked child after in-process rendering. Only
    an unpicklable callable (a lambda, a closure) falls back to "fork". A worker that does not
    answer within `timeout_s` is killed and its episode recorded as an env error.
    """

    def __init__(self, env_fn: Callable[[], Any], n: int, mode: str = "serial",
                 start_method: str | None = None, timeout_s: float = 300.0):
        if n < 1:
            raise ValueError(f"need at least one env, got n_envs={n}")
        if mode not in ("serial", "subproc"):
            raise ValueError(f"vector mode must be 'serial' or 'subproc', got {mode!r}")
        self.n, self.mode = n, mode
        self._slots: list[_EnvSlot] = []
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._env_fn, self._ctx, self.timeout_s = env_fn, None, timeout_s
        if mode == "serial":
            self._slots = [_EnvSlot(env_fn) for _ in range(n)]
        else:
            default = "forkserver" if _picklable(env_fn) else "fork"
            self._ctx = mp.get_context(start_method or default)
            if self._ctx.get_start_method() == "forkserver":
                # import the env stack once in the fork server, not once per worker
                self._ctx.set_forkserver_preload(["pixio_robot.evaluation.envpool", "pixio_robot.envs"])
            self._conns, self._procs = [None] * n, [None] * n
            for i in range(n):
                self._spawn(i)
        # build every env now (in parallel for subproc), so start-up cost is paid up front
        built = self._broadcast("spaces", dict.fromkeys(range(n)))
        bad = [payload for status, payload in built.values() if status != "ok"]
        if bad:
            self.close()
            raise RuntimeError(f"could not build the environment: {bad[0]}")
        self.observation_space, self.action_space, self.max_episode_steps = built[0][1]

    def _spawn(self, i: int) -> None:
        """(Re)start worker `i` (a worker that died, e.g. a segfault in the simulator, is replaced)."""
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker, args=(child, self._env_fn), daemon=True)
        proc.start()
        child.close()
        self._conns[i], self._procs[i] = parent, proc

    def _dead(self, i: int, exc: BaseException) -> Outcome:
        proc = self._procs[i]
        if proc is not None:
            proc.join(timeout=1)
        code = proc.exitcode if proc is not None else None
        try:
            self._conns[i].close()
        except OSError:
            pass
        self._conns[i] = None  # respawned by the next reset
        return "error", f"env worker {i} died (exit code {code}): {_describe(exc)}"

    def _broadcast(self, cmd: str, args: dict[int, Any]) -> dict[int, Outcome]:
        """Send `cmd` to every listed env first, then collect (workers run in parallel)."""
        if self.mode == "serial":
            return {i: self._slots[i].spaces() if cmd == "spaces" else getattr(self._slots[i], cmd)(a)
                    for i, a in args.items()}
        out: dict[int, Outcome] = {}
        sent = []
        for i, a in args.items():
            if self._conns[i] is None:
                if cmd == "step":
                    out[i] = ("error", f"env worker {i} is gone; reset it first")
                    continue
                self._spawn(i)
            try:
                self._conns[i].send((cmd, a))
                sent.append(i)
            except (BrokenPipeError, ConnectionResetError) as exc:
                out[i] = self._dead(i, exc)
        deadline = time.monotonic() + self.timeout_s
        for i in sent:
            try:
                if not self._conns[i].poll(max(0.0, deadline - time.monotonic())):
                    self._procs[i].kill()  # hung (a deadlocked renderer, an endless loop): replace it
                    raise TimeoutError(f"no answer to {cmd!r} within {self.timeout_s:.0f} s")
                out[i] = self._conns[i].recv()
            except (EOFError, ConnectionResetError, TimeoutError) as exc:
                out[i] = self._dead(i, exc)
        return out

    def reset(self, seeds: dict[int, int | None]) -> dict[int, Outcome]:
        """Reset the listed env indices with the given seeds."""
        return self._broadcast("reset", seeds)

    def step(self, actions: dict[int, np.ndarray]) -> dict[int, Outcome]:
        """Step the listed env indices (the others stay where they are)."""
        return self._broadcast("step", actions)

    def close(self) -> None:
        for slot in self._slots:
            slot.close()
        for conn in self._conns:
            if conn is None:
                continue
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            if proc is None:
                continue
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._slots, self._conns, self._procs = [], [], []

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
