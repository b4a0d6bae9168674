"""evaluation.envpool directly, on a tiny counting env: serial and subproc pools give what a
plain gymnasium loop gives, one env's error (an exception, a dead worker, a hung worker) costs
that env's episode only, and the env is rebuilt by the next reset."""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from pixio_robot.evaluation.envpool import EnvPool


class Counter(gym.Env):
    """state = seed + sum of actions; action 99 raises, 77 kills the process, 55 hangs."""

    observation_space = spaces.Dict({"state": spaces.Box(-1e6, 1e6, (1,), np.float32)})
    action_space = spaces.Box(-100, 100, (1,), np.float32)
    spec = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(seed or 0)
        return {"state": np.array([self.x], np.float32)}, {"pid": os.getpid()}

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        if a == 99:
            raise RuntimeError("boom")
        if a == 77:
            os._exit(3)
        if a == 55:
            time.sleep(30)
        self.x += a
        return {"state": np.array([self.x], np.float32)}, a, self.x >= 10, False, {"is_success": self.x >= 10}


BUILDS: list[int] = []


def make_counter():
    BUILDS.append(1)
    return Counter()


def never_builds():
    raise OSError("no display")


def _plain_loop(seed, actions):
    env, out = Counter(), []
    obs, _ = env.reset(seed=seed)
    for a in actions:
        obs, r, term, trunc, info = env.step(np.array([a], np.float32))
        out.append((float(obs["state"][0]), r, term))
    return out


@pytest.mark.parametrize("mode", ["serial", "subproc"])
def test_pool_matches_a_plain_loop_and_keeps_envs_apart(mode):
    with EnvPool(make_counter, 3, mode=mode, start_method="fork") as pool:
        assert pool.action_space.shape == (1,) and pool.max_episode_steps is None
        got = pool.reset({0: 1, 1: 5, 2: 0})
        assert [got[i][0] for i in range(3)] == ["ok"] * 3
        assert [float(got[i][1][0]["state"][0]) for i in range(3)] == [1.0, 5.0, 0.0]
        pids = {got[i][1][1]["pid"] for i in range(3)}
        assert len(pids) == (3 if mode == "subproc" else 1) and (mode == "serial") == (pids == {os.getpid()})
        trace = {i: [] for i in range(3)}
        for actions in ([2.0, 3.0, 1.0], [4.0, 3.0, 1.0]):
            out = pool.step({i: np.array([a], np.float32) for i, a in enumerate(actions)})
            for i in range(3):
                status, (obs, r, term, trunc, info) = out[i]
                trace[i].append((float(obs["state"][0]), r, term))
        assert trace[0] == _plain_loop(1, [2, 4]) and trace[1] == _plain_loop(5, [3, 3])
        assert trace[1][-1][2] is True and trace[2][-1] == (2.0, 1.0, False)
        only = pool.step({2: np.array([1.0], np.float32)})  # the others stay where they are
        assert list(only) == [2] and float(only[2][1][0]["state"][0]) == 3.0


@pytest.mark.parametrize("mode", ["serial", "subproc"])
def test_an_env_exception_costs_one_episode_and_the_env_is_rebuilt(mode):
    BUILDS.clear()
    with EnvPool(make_counter, 2, mode=mode, start_method="fork") as pool:
        pool.reset({0: 0, 1: 0})
        out = pool.step({0: np.array([99.0], np.float32), 1: np.array([1.0], np.float32)})
        assert out[0] == ("error", "RuntimeError: boom") and out[1][0] == "ok"
        again = pool.reset({0: 4})
        assert again[0][0] == "ok" and float(again[0][1][0]["state"][0]) == 4.0
        if mode == "serial":
            assert len(BUILDS) == 3  # two at start, one rebuilt after the error


def test_a_dead_or_hung_worker_is_an_error_and_is_replaced():
    with EnvPool(make_counter, 2, mode="subproc", start_method="fork", timeout_s=2.0) as pool:
        first = pool.reset({0: 0, 1: 0})
        out = pool.step({0: np.array([77.0], np.float32), 1: np.array([1.0], np.float32)})
        assert out[0][0] == "error" and "died (exit code 3)" in out[0][1] and out[1][0] == "ok"
        assert pool.step({0: np.array([1.0], np.float32)})[0] == ("error", "env worker 0 is gone; reset it first")
        t0 = time.monotonic()
        hung = pool.step({1: np.array([55.0], np.float32)})
        assert hung[1][0] == "error" and "no answer to 'step' within 2 s" in hung[1][1]
        assert time.monotonic() - t0 < 10
        back = pool.reset({0: 2, 1: 3})  # both respawned
        assert [back[i][0] for i in (0, 1)] == ["ok", "ok"]
        assert back[0][1][1]["pid"] != first[0][1][1]["pid"] and back[1][1][1]["pid"] != first[1][1][1]["pid"]


def test_bad_arguments_and_an_unbuildable_env():
    with pytest.raises(ValueError, match="at least one env"):
        EnvPool(make_counter, 0)
    with pytest.raises(ValueError, match="'serial' or 'subproc'"):
        EnvPool(make_counter, 1, mode="async")
    with pytest.raises(RuntimeError, match="could not build the environment: OSError: no display"):
        EnvPool(never_builds, 1)
