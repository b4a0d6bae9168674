"""make_env: observation contract, seeding, rendering, names (tiny images, few steps)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from pixio_robot.envs import list_envs, make_env, make_vec_env  # noqa: E402
from pixio_robot.envs.rendering import apply_quality, setup_gl  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FAST = ["metaworld/drawer-open-v3", "gym/Pusher-v5", "gym/Reacher-v5", "dmc/walker-walk", "lerobot/pusht",
        "lerobot/aloha-transfer-cube"]


@pytest.fixture
def closing():
    envs = []
    yield envs.append
    for env in envs:
        env.close()


def _rollout(env, n, seed):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, states = [obs.get("pixels")], [obs["state"]]
    for _ in range(n):
        a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        obs, *_ = env.step(a)
        frames.append(obs.get("pixels"))
        states.append(obs["state"])
    return frames, np.stack(states)


def test_setup_gl_picks_a_backend():
    assert setup_gl() in ("egl", "osmesa", "glfw")
    assert os.environ["MUJOCO_GL"] in ("egl", "osmesa", "glfw")
    with pytest.raises(ValueError, match="Unknown OpenGL backend"):
        setup_gl("vulkan")


@pytest.mark.parametrize("name", FAST)
def test_contract_and_check_env(name, closing):
    env = make_env(name, image_size=(24, 32), seed=0)
    closing(env)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert set(obs) == {"pixels", "state"}
    assert obs["pixels"].shape == (24, 32, 3) and obs["pixels"].dtype == np.uint8
    assert obs["state"].dtype == np.float32 and obs["state"].ndim == 1
    assert env.observation_space.contains(obs)
    assert info["is_success"] is False
    _, r, term, trunc, info = env.step(env.action_space.sample())
    assert isinstance(info["is_success"], bool) and isinstance(r, float)


@pytest.mark.parametrize("name", FAST)
def test_seeded_resets_reproduce_and_differ(name, closing):
    env = make_env(name, image_size=32)
    closing(env)
    f1, s1 = _rollout(env, 5, seed=7)
    f2, s2 = _rollout(env, 5, seed=7)
    _, s3 = _rollout(env, 5, seed=8)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(np.stack(f1), np.stack(f2))
    assert not np.array_equal(s1, s3)


def test_metaworld_initial_positions_depend_on_seed(closing):
    env = make_env("metaworld/drawer-open-v3", pixels=False, state="full")
    closing(env)
    goals = {tuple(np.round(env.reset(seed=s)[0]["state"][36:39], 5)) for s in range(5)}
    assert len(goals) == 5  # object/goal placement follows the seed (CortexBench set-up)


@pytest.mark.parametrize("name", ["metaworld/drawer-open-v3", "gym/Pusher-v5", "dmc/cheetah-run",
                                  "lerobot/aloha-insertion"])
def test_frames_not_blank_and_change(name, closing):
    env = make_env(name, image_size=48, seed=0)
    closing(env)
    frames, _ = _rollout(env, 15, seed=0)
    first, last = frames[0].astype(np.int16), frames[-1].astype(np.int16)
    assert first.std() > 10, "frame is (nearly) a single colour"
    changed = (np.abs(first - last).max(-1) > 20).sum()
    assert changed >= 10, f"the scene moved but only {changed} pixels changed"


@pytest.mark.parametrize("name", ["gym/Reacher-v5", "metaworld/drawer-open-v3"])
def test_frames_survive_another_env_closing_in_the_same_process(name, closing):
    """gymnasium's viewer renders into whatever GL context is current: closing a second env (a
    serial evaluation rebuilding a crashed env) used to leave every later frame of the first wrong."""
    ref_env = make_env(name, image_size=32, seed=0)
    closing(ref_env)
    ref, _ = _rollout(ref_env, 3, seed=1)
    env = make_env(name, image_size=32, seed=0)
    closing(env)
    obs, _ = env.reset(seed=1)
    other = make_env(name, image_size=32, seed=0)
    other.reset(seed=2)
    other.close()  # frees the context that was current
    rng = np.random.default_rng(1)
    frames = [obs["pixels"]]
    for _ in range(3):
        obs, *_ = env.step(rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32))
        frames.append(obs["pixels"])
    for t, (a, b) in enumerate(zip(ref, frames, strict=True)):
        assert np.array_equal(a, b), f"frame {t} differs"


def test_metaworld_corner_camera_is_upright(closing):
    """The table (bright, textured) fills the lower part of an upright corner2 frame, the
    floor-less background the upper part; an upside-down frame inverts this."""
    env = make_env("metaworld/drawer-open-v3", image_size=64, seed=0)
    closing(env)
    img = env.reset(seed=0)[0]["pixels"].astype(np.float32)
    # rows below the middle hold most of the robot/table detail (edges) when upright
    grad = np.abs(np.diff(img.mean(-1), axis=1))
    assert grad[32:].sum() > grad[:32].sum()


def test_camera_option_and_bad_camera(closing):
    a = make_env("metaworld/drawer-open-v3", image_size=32, camera="topview", seed=0)
    b = make_env("metaworld/drawer-open-v3", image_size=32, camera="corner3", seed=0)
    closing(a)
    closing(b)
    assert not np.array_equal(a.reset(seed=0)[0]["pixels"], b.reset(seed=0)[0]["pixels"])
    with pytest.raises(ValueError, match="no camera 'nope'"):
        make_env("metaworld/drawer-open-v3", camera="nope")


def test_fast_quality_settings():
    import mujoco

    m = mujoco.MjModel.from_xml_string('<mujoco><asset><material name="floor" reflectance="0.5"/></asset>'
                                       '<worldbody><geom size="1 1 .1" type="plane" material="floor"/>'
                                       '</worldbody></mujoco>')
    assert m.vis.quality.shadowsize > 0 and m.vis.quality.offsamples > 0
    apply_quality(m, "default", min_size=(300, 500))
    assert m.vis.quality.shadowsize > 0 and m.vis.global_.offwidth == 640 and m.vis.global_.offheight >= 300
    assert m.mat_reflectance[0] == pytest.approx(0.5)
    apply_quality(m, "fast")
    assert m.vis.quality.shadowsize == 0 and m.vis.quality.offsamples == 0 and m.mat_reflectance[0] == 0
    with pytest.raises(ValueError, match="render_quality"):
        apply_quality(m, "ultra")


def test_wrappers_history_repeat_limit(closing):
    env = make_env("gym/Reacher-v5", image_size=16, frame_stack=3, action_repeat=2, seed=0)
    closing(env)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (3, 16, 16, 3) and env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["pixels"][0], obs["pixels"][2])
    steps, trunc = 0, False
    while not trunc:
        obs, _, _, trunc, _ = env.step(np.zeros(2, np.float32))
        steps += 1
    assert steps == 25  # Reacher-v5's 50 env steps / action_repeat 2
    short = make_env("metaworld/drawer-open-v3", pixels=False, max_episode_steps=3)
    closing(short)
    short.reset(seed=0)
    assert [short.step(np.zeros(4, np.float32))[3] for _ in range(3)] == [False, False, True]


def test_state_only_env_has_no_pixels(closing):
    env = make_env("metaworld/hammer-v3", pixels=False, state="full")
    closing(env)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"state"} and obs["state"].shape == (39,)
    np.testing.assert_array_equal(info["full_state"], obs["state"])


def test_unknown_names_list_known_and_close():
    with pytest.raises(ValueError, match="Did you mean: metaworld/drawer-open-v3") as exc:
        make_env("metaworld/drawer-opn-v3")
    assert "gym/Pusher-v5" in str(exc.value)
    with pytest.raises(ValueError, match="gym/Pusher-v5"):
        make_env("Pusher-v5")
    with pytest.raises(ValueError, match="family in"):
        make_env("atari/Pong")
    assert "metaworld/assembly-v3" in list_envs("metaworld/*")
    assert all(n.startswith("gym/") for n in list_envs("gym/*"))
    for name in ("metaworld/drawer-open-v3", "gym/Reacher-v5"):  # a misspelled option, any family
        with pytest.raises(ValueError, match=r"unknown option 'img_size' \(did you mean image_size\?\)"):
            make_env(name, img_size=32, pixels=False)


def test_vec_env_sync_seeds_each_copy(closing):
    venv = make_vec_env("gym/Reacher-v5", 2, seed=0, image_size=16)
    closing(venv)
    obs, info = venv.reset(seed=0)
    assert obs["pixels"].shape == (2, 16, 16, 3) and obs["state"].shape == (2, 10)
    assert not np.array_equal(obs["state"][0], obs["state"][1])
    obs2, *_ = venv.step(np.zeros((2, 2), np.float32))
    assert info["is_success"].shape == (2,)


def test_vec_env_async_matches_sync(closing):
    kw = dict(seed=3, image_size=16, pixels=True)
    sync = make_vec_env("dmc/reacher-easy", 2, **kw)
    asyn = make_vec_env("dmc/reacher-easy", 2, vector_mode="subproc", **kw)
    closing(sync)
    closing(asyn)
    a, _ = sync.reset(seed=3)
    b, _ = asyn.reset(seed=3)
    np.testing.assert_array_equal(a["state"], b["state"])
    act = np.full((2, 2), 0.5, np.float32)
    np.testing.assert_array_equal(sync.step(act)[0]["pixels"], asyn.step(act)[0]["pixels"])


def test_dmc_suite_tasks_and_limits(closing):
    for task in ("walker-stand", "walker-walk", "reacher-easy", "cheetah-run", "finger-spin"):
        assert f"dmc/{task}" in list_envs("dmc/*")
    env = make_env("dmc/finger-spin", pixels=False, action_repeat=4)
    closing(env)
    assert env._max_episode_steps == 250  # 1000 env steps / action_repeat 4
    with pytest.raises(ValueError, match="no camera"):
        make_env("dmc/walker-walk", camera=9)


def test_default_quality_is_restorable_and_differs(closing):
    fast = make_env("metaworld/drawer-open-v3", image_size=48, seed=0)
    slow = make_env("metaworld/drawer-open-v3", image_size=48, seed=0, render_quality="default")
    closing(fast)
    closing(slow)
    assert slow.unwrapped.model.vis.quality.shadowsize > 0 and fast.unwrapped.model.vis.quality.shadowsize == 0
    a, b = fast.reset(seed=0)[0]["pixels"], slow.reset(seed=0)[0]["pixels"]
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_missing_simulator_says_what_to_install(monkeypatch):
    from pixio_robot.envs import registry

    def broken():
        raise ImportError("No module named 'dm_control'")

    monkeypatch.setitem(registry.FAMILIES, "dmc", registry.Family(broken, registry._dmc_build, lambda t: 1000))
    registry._family_names.cache_clear()
    try:
        assert not list_envs("dmc/*") and list_envs("metaworld/*")
        with pytest.raises(ImportError, match="dm_control"):
            make_env("dmc/walker-walk")
    finally:
        monkeypatch.undo()
        registry._family_names.cache_clear()
        registry._UNAVAILABLE.clear()
    assert list_envs("dmc/walker-walk") == ["dmc/walker-walk"]


def test_setup_gl_falls_back_and_names_packages(monkeypatch):
    import mujoco  # noqa: F401  (loaded, so setup_gl must warn that the backend is already fixed)

    from pixio_robot.envs import rendering

    real_probe = rendering._probe
    monkeypatch.setenv("PYOPENGL_PLATFORM", os.environ.get("PYOPENGL_PLATFORM", "egl"))  # restored after
    assert real_probe("egl") is None  # the real check: EGL works on this machine
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(rendering, "_probe", lambda b: None if b == "osmesa" else "eglInitialize failed")
    with pytest.warns(RuntimeWarning, match="imported before"):  # mujoco is loaded in this process
        assert rendering.setup_gl() == "osmesa" and os.environ["MUJOCO_GL"] == "osmesa"
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(rendering, "_probe", lambda b: f"{b} missing")
    with pytest.raises(RuntimeError, match="libosmesa6") as exc, pytest.warns(RuntimeWarning):
        rendering.setup_gl()
    assert "libegl1" in str(exc.value) and "egl (egl missing)" in str(exc.value)


def test_renders_run_without_garbage_collection():
    """A collected env's EGL context, freed mid-render, unbinds the current one (eglReleaseThread):
    renders run with the automatic GC off, and it comes back on afterwards, also after an error."""
    import gc

    from pixio_robot.envs.rendering import no_gc_finalizers, render_gym_mujoco

    seen = []

    class Fake:
        unwrapped = None

        def render(self):
            seen.append(gc.isenabled())
            return "frame"

    Fake.unwrapped = Fake()
    assert gc.isenabled()
    assert render_gym_mujoco(Fake()) == "frame" and seen == [False] and gc.isenabled()
    with pytest.raises(RuntimeError):
        with no_gc_finalizers():
            raise RuntimeError("render failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with no_gc_finalizers():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
    env = make_env("dmc/walker-walk", image_size=32, seed=0)
    real = env.unwrapped._env.physics.render
    env.unwrapped._env.physics.render = lambda **kw: seen.append(gc.isenabled()) or real(**kw)
    env.reset(seed=0)
    env.close()
    assert seen[-1] is False
