"""Every evaluate / benchmark / quickstart config composes into its dataclass; bad values fail early."""

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from pixio_robot.benchmark import BenchmarkConfig
from pixio_robot.evaluate import EvaluateConfig, policy_env_defaults
from pixio_robot.quickstart import QuickstartConfig


def _compose(module, overrides=()):
    with initialize_config_module(module, version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=list(overrides)))


@pytest.mark.parametrize("suite,n_tasks,metric", [("quick", 2, "success"), ("cortexbench_metaworld", 5, "success"),
                                                  ("cortexbench_dmc", 5, "return")])
def test_benchmark_suites_compose(suite, n_tasks, metric):
    cfg = _compose("pixio_robot.configs.benchmark", [f"suite={suite}"])
    assert isinstance(cfg, BenchmarkConfig) and cfg.suite.name == suite
    assert len(cfg.suite.envs) == n_tasks and cfg.suite.metric == metric
    assert cfg.run_dir == f"runs/benchmark/{suite}"
    if suite.startswith("cortexbench"):  # the protocol of PIXIO.md
        s = cfg.suite
        assert (s.history, s.hidden_sizes, s.batch_size, s.lr, s.epochs) == (3, [256, 256, 256], 256, 1e-3, 100)
        assert s.seeds == [100, 200, 300] and s.eval_every_epochs == 5 and s.image_size == 256
    if suite == "cortexbench_metaworld":
        assert cfg.suite.n_demos == 25 and cfg.suite.n_episodes == 25 and cfg.suite.use_state
    if suite == "cortexbench_dmc":
        assert cfg.suite.n_demos == 100 and cfg.suite.n_episodes == 10 and cfg.suite.return_scale == 1000


def test_benchmark_encoder_sets_and_errors():
    cfg = _compose("pixio_robot.configs.benchmark",
                   ["encoders=pixio_random_vs_ckpt", "encoders.1.path=/ckpt/encoder"])
    assert [e.label for e in cfg.encoders] == ["random_init", "pixio_pretrained"]
    assert cfg.encoders[1].adapter_config().mode == "frozen"
    with pytest.raises(Exception, match="not in suite"):
        _compose("pixio_robot.configs.benchmark", ["envs=[metaworld/reach-v3]"])
    with pytest.raises(Exception, match="metric"):
        _compose("pixio_robot.configs.benchmark", ["suite.metric=accuracy"])
    with pytest.raises(Exception, match="epochz"):  # unknown keys are errors
        _compose("pixio_robot.configs.benchmark", ["suite.epochz=3"])


def test_evaluate_and_quickstart_compose(tmp_path):
    cfg = _compose("pixio_robot.configs.evaluate", ["policy=/some/policy", "n_envs=2"])
    assert isinstance(cfg, EvaluateConfig) and cfg.n_envs == 2 and cfg.env is None
    with pytest.raises(Exception, match="vector_mode"):
        _compose("pixio_robot.configs.evaluate", ["policy=/p", "vector_mode=threads"])
    q = _compose("pixio_robot.configs.quickstart")
    assert isinstance(q, QuickstartConfig) and 1 <= len(q.envs) <= 2
    (tmp_path / "config.json").write_text('{"env_name": "metaworld/hammer-v3", "image_size": 96, "camera": null,'
                                          ' "spec": {"camera": "corner"}}')
    assert policy_env_defaults(tmp_path) == {"env": "metaworld/hammer-v3", "image_size": 96, "camera": "corner"}
