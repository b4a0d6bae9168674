"""collect_demos and `python -m pixio_robot.collect`: real envs, real experts, real lerobot files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixio_robot.data import collect_demos, load_frames, open_dataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


class ConstantExpert:
    """Zero actions for gym/Reacher-v5 (never succeeds); can raise Ctrl-C at a chosen call."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls, self.interrupt_at = 0, interrupt_at

    def reset(self) -> None:
        pass

    def act(self, obs, info):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return np.full(2, 0.1, np.float32)


def _record(root):
    return json.loads((root / "meta" / "pixio_collect.json").read_text())


def test_metaworld_scripted_demos_read_back(tmp_path):
    root = collect_demos("metaworld/drawer-open-v3", 2, tmp_path / "mw", image_size=32, seed=0, only_success=True,
                         steps_after_success=2, progress=False, use_videos=False)
    ds = open_dataset(root)
    assert ds.num_episodes == 2
    assert set(ds.features) >= {"observation.image", "observation.state", "observation.environment_state",
                                "action", "next.reward", "next.success", "next.done"}
    assert ds.meta.tasks.index.tolist() == ["drawer open"]
    images, states, actions, ep = load_frames(root)
    assert images.shape[1:] == (32, 32, 3) and states.shape[1] == 4 and actions.shape[1] == 4
    rec = _record(root)
    assert [e["seed"] for e in rec["episodes"]] == [0, 1] and all(e["success"] for e in rec["episodes"])
    # each episode ends 2 steps after its first success and holds the success flags
    cols = ds.hf_dataset.select_columns(["next.success", "next.done", "episode_index"]).with_format("numpy")[:]
    for e in rec["episodes"]:
        rows = cols["episode_index"] == e["episode_index"]
        flags, done = cols["next.success"][rows].reshape(-1), cols["next.done"][rows].reshape(-1)
        assert flags[-3:].all() and not flags[0] and done[-1] and not done[:-1].any()
        assert rows.sum() == e["length"]
    # the recorded state is the observation *before* the action: replaying reproduces it
    from pixio_robot.envs import make_env

    env = make_env("metaworld/drawer-open-v3", pixels=False)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(states[0], obs["state"], atol=1e-6)
    obs, *_ = env.step(actions[0])
    np.testing.assert_allclose(states[1], obs["state"], atol=1e-6)
    env.close()


def test_interrupted_collect_keeps_episodes_and_continues(tmp_path):
    root = tmp_path / "reacher"
    kw = dict(image_size=16, seed=5, max_episode_steps=6, progress=False)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the third episode (calls 13..18)
        collect_demos("gym/Reacher-v5", 4, root, expert=ConstantExpert(interrupt_at=15), **kw)
    assert open_dataset(root).num_episodes == 2
    before = load_frames(root)
    collect_demos("gym/Reacher-v5", 4, root, expert=ConstantExpert(), **kw)  # same command again
    after = load_frames(root)
    assert open_dataset(root).num_episodes == 4
    np.testing.assert_array_equal(after[1][:12], before[1])  # earlier episodes untouched
    np.testing.assert_array_equal(after[0][:12], before[0])
    seeds = [e["seed"] for e in _record(root)["episodes"]]
    assert seeds[:2] == [5, 6] and len(set(seeds)) == 4  # never the same seed twice
    collect_demos("gym/Reacher-v5", 4, root, expert=ConstantExpert(), **kw)  # count reached: no-op
    assert open_dataset(root).num_episodes == 4
    collect_demos("gym/Reacher-v5", 1, root, expert=ConstantExpert(), append=True, **kw)
    assert open_dataset(root).num_episodes == 5


@pytest.mark.parametrize("cut", ["before_save", "before_record"])
def test_killed_between_attempt_and_record_ends_with_the_uninterrupted_seeds(tmp_path, monkeypatch, cut):
    """A kill while an episode is saved (video encoding takes a while) must not burn its seed, nor
    save it twice when the dataset write landed but the record did not."""
    import pixio_robot.data.recorder as collect_mod

    root = tmp_path / "reacher"
    kw = dict(image_size=16, seed=5, max_episode_steps=6, progress=False, expert=ConstantExpert())
    calls = {"add": 0, "record": 0}
    real_add, real_record = collect_mod.DemoWriter.add_episode, collect_mod.write_collect_info

    def add(self, *a, **k):
        calls["add"] += 1
        if cut == "before_save" and calls["add"] == 3:
            raise KeyboardInterrupt  # the third episode's attempt is recorded, its save is not
        return real_add(self, *a, **k)

    def record(*a, **k):
        calls["record"] += 1
        if cut == "before_record" and calls["record"] == 6:
            raise KeyboardInterrupt  # the third episode is in the dataset, not in the record
        return real_record(*a, **k)

    monkeypatch.setattr(collect_mod.DemoWriter, "add_episode", add)
    monkeypatch.setattr(collect_mod, "write_collect_info", record)
    with pytest.raises(KeyboardInterrupt):
        collect_demos("gym/Reacher-v5", 4, root, **kw)
    assert open_dataset(root).num_episodes == (2 if cut == "before_save" else 3)
    monkeypatch.setattr(collect_mod.DemoWriter, "add_episode", real_add)
    monkeypatch.setattr(collect_mod, "write_collect_info", real_record)
    collect_demos("gym/Reacher-v5", 4, root, **kw)
    rec = _record(root)
    assert [e["seed"] for e in rec["episodes"]] == [5, 6, 7, 8]
    assert [e["episode_index"] for e in rec["episodes"]] == [0, 1, 2, 3]
    assert open_dataset(root).num_episodes == 4 and all(e["length"] > 0 for e in rec["episodes"])


def test_only_success_skips_failures_and_stops(tmp_path, caplog):
    root = tmp_path / "fail"
    kw = dict(image_size=16, max_episode_steps=3, progress=False, expert=ConstantExpert())
    collect_demos("gym/Reacher-v5", 2, root, only_success=True, max_attempts=3, **kw)
    assert not (root / "meta" / "info.json").exists()  # nothing succeeded, nothing written
    assert "stopped after 3 attempts" in caplog.text
    collect_demos("gym/Reacher-v5", 2, root, only_success=False, **kw)
    ds = open_dataset(root)
    assert ds.num_episodes == 2 and not any(bool(ds[i]["next.success"]) for i in range(len(ds)))


def test_collect_to_other_env_or_size_fails_clearly(tmp_path):
    root = tmp_path / "r"
    kw = dict(max_episode_steps=2, progress=False, expert=ConstantExpert())
    collect_demos("gym/Reacher-v5", 1, root, image_size=16, **kw)
    with pytest.raises(ValueError, match="other features/fps"):
        collect_demos("gym/Reacher-v5", 2, root, image_size=24, **kw)
    with pytest.raises(ValueError, match="Unknown env"):
        collect_demos("gym/Reachr-v5", 1, tmp_path / "x", **kw)


def test_hydra_config_composes_and_runs(tmp_path):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from pixio_robot.collect import CollectConfig, run_collect

    with initialize_config_module("pixio_robot.configs.collect", version_base="1.3"):
        cfg = compose("config", overrides=["n_episodes=1", "image_size=24", f"root={tmp_path / 'demo'}",
                                           "steps_after_success=0", "progress=false"])
        with pytest.raises(Exception, match="not_a_key"):
            compose("config", overrides=["not_a_key=1"])
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, CollectConfig) and obj.env == "metaworld/drawer-open-v3"
    result = run_collect(obj, run_dir=tmp_path / "run")
    assert result["episodes"] == 1 and result["successes"] == 1
    assert json.loads((tmp_path / "run" / "results.json").read_text())["root"] == str(tmp_path / "demo")
    assert (tmp_path / "run" / "config.yaml").is_file()
    with pytest.raises(ValueError, match="image_size"):
        CollectConfig(image_size=4)
