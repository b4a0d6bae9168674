"""Every YAML under pixio_robot/configs holds only what differs from its schema: a value that merely
repeats the dataclass default is a second copy that drifts (the rl YAML once said num_threads 1
where the schema said None). The schema defaults come from the dataclasses themselves; the YAML is
read raw (not composed), so each value is checked where it is written. One exception: in a
`# @package _global_` file (an experiment), a value under another config group's node (e.g.
`optim.warmup_steps` in experiment/tiny_cpu.yaml) may equal the schema default on purpose: it
overrides what that group's selected option sets.

The second half checks the configs as hydra composes them, the way the entry points do
(`pkg://pixio_robot.configs.<entry>`, version_base 1.3, the schemas in the ConfigStore from importing
the config modules): every entry's primary config alone and with every option of every config
group found on disk composes, has no key its schema lacks, and converts to the schema dataclass
(`pixio_robot.utils.cli.to_config`, as the apps convert); and, independently, `python -m
pixio_robot.<entry> --cfg job` prints what composing with no overrides gives."""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1] / "pixio_robot" / "configs"


def _schemas() -> dict[str, type]:
    from pixio_robot.benchmark.config import BenchmarkConfig
    from pixio_robot.collect.config import CollectConfig
    from pixio_robot.evaluate.config import EvaluateConfig
    from pixio_robot.pretrain.config import PretrainConfig, ScoreConfig
    from pixio_robot.probe.config import ProbeConfig
    from pixio_robot.quickstart.config import QuickstartConfig
    from pixio_robot.rl.config import RLConfig
    from pixio_robot.train.config import TrainConfig

    return {"benchmark/config.yaml": BenchmarkConfig, "collect/config.yaml": CollectConfig,
            "evaluate/config.yaml": EvaluateConfig, "pretrain/config.yaml": PretrainConfig,
            "pretrain/score.yaml": ScoreConfig, "probe/config.yaml": ProbeConfig,
            "quickstart/config.yaml": QuickstartConfig, "rl/config.yaml": RLConfig, "train/config.yaml": TrainConfig}


def _here_schemas() -> dict[str, type]:
    from pixio_robot.policies import MLPConfig
    from pixio_robot.policies.lerobot.training import LeRobotPolicyChoice

    return {"/pixio_train_policy/mlp_schema@_here_": MLPConfig,
            "/pixio_train_policy/lerobot_schema@_here_": LeRobotPolicyChoice}


def _unwrap(tp):
    """`X | None` -> X; other types unchanged."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _plain(v):
    if dataclasses.is_dataclass(v):
        return {k: _plain(x) for k, x in dataclasses.asdict(v).items()}
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def repeats(cls: type, data: dict, where: str) -> list[str]:
    """`where.key = value` for every value of `data` equal to `cls`'s default for it (recursing into
    nested dataclasses, dicts of them and lists of them)."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            continue  # unknown keys are the schema test's business (to_config refuses them)
        tp = _unwrap(hints[key])
        default = _default(fields[key])
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            out += repeats(tp, value, f"{where}{key}.")
            continue
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is dict and args and dataclasses.is_dataclass(args[-1]) and isinstance(value, dict):
            for name, sub in value.items():
                if isinstance(sub, dict):
                    out += repeats(args[-1], sub, f"{where}{key}.{name}.")
            continue
        if origin is list and args and dataclasses.is_dataclass(args[0]) and isinstance(value, list):
            for i, sub in enumerate(value):
                if isinstance(sub, dict):
                    out += repeats(args[0], sub, f"{where}{key}.{i}.")
            continue
        if default is not dataclasses.MISSING and value == _plain(default):
            out.append(f"{where}{key} = {value!r}")
    return out


def _files():
    roots = _schemas()
    for path in sorted(ROOT.rglob("*.yaml")):
        rel = path.relative_to(ROOT).as_posix()
        entry = rel.split("/")[0]
        yield rel, path, roots, entry


def _target(rel: str, text: str, data: dict, roots: dict) -> tuple[type, dict] | None:
    """(schema class, the dict it applies to) for one YAML file."""
    here = _here_schemas()
    for d in data.get("defaults", []) or []:
        if isinstance(d, str) and d in here:
            return here[d], data
    if rel in roots:
        return roots[rel], data
    entry, *groups, _ = rel.split("/")
    root = roots.get(f"{entry}/config.yaml")
    if root is None:
        return None
    package = next((ln.split("@package", 1)[1].strip() for ln in text.splitlines()[:5] if "@package" in ln), None)
    if package == "_global_":
        own = groups[0] if groups else None
        other_groups = {p.name for p in (ROOT / entry).iterdir() if p.is_dir() and p.name not in (own, "__pycache__")}
        return root, {k: v for k, v in data.items() if k not in other_groups}
    node: type = root
    for g in groups:  # the group's own package: its path below the root
        hint = _unwrap(typing.get_type_hints(node).get(g))
        if not dataclasses.is_dataclass(hint):
            return None
        node = hint
    return node, data


def test_the_walk_finds_a_repeated_default():
    """The checker itself: a repeated default is found, a changed value is not."""
    from pixio_robot.rl.config import RLConfig

    assert repeats(RLConfig, {"algo": "ppo", "n_envs": 2, "encoder": {"mode": "frozen", "name": "x"}}, "") == [
        "algo = 'ppo'", "encoder.mode = 'frozen'"]


def test_no_yaml_value_repeats_a_schema_default():
    found, checked = [], 0
    for rel, path, roots, _ in _files():
        text = path.read_text()
        data = yaml.safe_load(text) or {}
        target = _target(rel, text, data, roots)
        if target is None:
            continue
        checked += 1
        cls, body = target
        body = {k: v for k, v in body.items() if k not in ("defaults", "hydra")}
        found += [f"{rel}: {r}" for r in repeats(cls, body, "")]
    assert checked >= 40, checked  # every entry's config.yaml and its groups
    assert not found, "YAML values that repeat the schema default (delete them):\n" + "\n".join(found)


# ---- the configs as hydra composes them ------------------------------------------------------

# A config group no primary config selects in its defaults list, added next to one (`+group@package=
# option`, as the group's files say: `+data/source@data.sources.<name>=folder`).
ADDED_GROUPS = {"pretrain/data/source": "data.sources.extra"}

# Dummy values for what a config leaves to the command line, so that the composition converts: a
# MISSING schema field (evaluate's `policy=`, score's `checkpoint=`) or a value the schema's
# __post_init__ refuses empty (a folder / webdataset / lerobot source's `path`, curation=scores'
# `curation.scores`). Keyed by "<entry>/<config>" (applies to every composition of that primary
# config) or "<entry>/<group>/<option>". Nothing is read from these paths: only converted.
_FOLDER = "data.sources.folder.path=/dummy/images"
_WEB = "data.sources.web.path=/dummy/shards/shard-000000.tar"
REQUIRED = {
    "evaluate/config": ["policy=/dummy/policy"],  # EvaluateConfig.policy: MISSING
    "pretrain/score": ["checkpoint=/dummy/run"],  # ScoreConfig.checkpoint: MISSING
    "pretrain/data/folder": [_FOLDER],
    "pretrain/data/sim_and_folder": [_FOLDER],
    "pretrain/data/webdataset": [_WEB],
    "pretrain/data/lerobot": ["data.sources.lerobot.path=/dummy/lerobot"],
    "pretrain/data/source/folder": ["data.sources.extra.path=/dummy/images"],
    "pretrain/data/source/webdataset": ["data.sources.extra.path=/dummy/shards/shard-000000.tar"],
    "pretrain/data/source/lerobot": ["data.sources.extra.path=/dummy/lerobot"],
    "pretrain/curation/scores": ["curation.scores=/dummy/scores.parquet"],
    # the paper-scale experiments select data=webdataset; distill_b16 requires its teacher (distill.required)
    **{f"pretrain/experiment/{name}": [_WEB] for name in ("pixio_b16", "pixio_l16", "pixio_h16", "pixio_1b16", "pixio_5b16")},
    "pretrain/experiment/distill_b16": [_WEB, "distill.teacher=/dummy/teacher.pth"],
    # not a dummy value but the companion choice the encoder set needs (a LeRobot suite: its file says so)
    "benchmark/encoders/resnet18_vs_pixio": ["suite=pusht_diffusion"],
}


def _primaries() -> list[tuple[str, str, type]]:
    """(entry, config name, schema) of every entry point's primary config (the map of _schemas())."""
    out = []
    for rel, cls in _schemas().items():
        entry, name = rel.removesuffix(".yaml").split("/")
        out.append((entry, name, cls))
    return out


def _register_schemas() -> None:
    """What the entry points do before composing: import the schema modules (their import registers
    the ConfigStore nodes) and call register_configs() (idempotent; also the `pixio_or` resolver)."""
    for entry in sorted({entry for entry, _, _ in _primaries()}):
        mod = importlib.import_module(f"pixio_robot.{entry}.config")
        if hasattr(mod, "register_configs"):
            mod.register_configs()


def _disk_groups(entry: str) -> dict[str, list[str]]:
    """{group path below configs/<entry>: its option names} for every folder holding YAML files."""
    out = {}
    for d in sorted(p for p in (ROOT / entry).rglob("*") if p.is_dir() and p.name != "__pycache__"):
        options = sorted(f.stem for f in d.glob("*.yaml"))
        if options:
            out[d.relative_to(ROOT / entry).as_posix()] = options
    return out


def _selected_groups(entry: str, name: str) -> set[str]:
    """The config groups the primary config's own defaults list selects (`group: option`)."""
    defaults = (yaml.safe_load((ROOT / entry / f"{name}.yaml").read_text()) or {}).get("defaults", [])
    return {key for d in defaults if isinstance(d, dict) for key in d
            if not key.startswith(("override ", "hydra/", "/"))}


def _cases(entry: str, name: str) -> list[tuple[str, list[str]]]:
    """(label, overrides): the primary config alone, then with each option of each group it takes."""
    base = REQUIRED.get(f"{entry}/{name}", [])
    selected = _selected_groups(entry, name)
    cases = [(f"{entry}/{name}", list(base))]
    for group, options in _disk_groups(entry).items():
        if group in selected:
            fmt = f"{group}={{}}"
        elif f"{entry}/{group}" in ADDED_GROUPS and group.rsplit("/", 1)[0] in selected:
            fmt = f"+{group}@{ADDED_GROUPS[f'{entry}/{group}']}={{}}"
        else:
            continue
        for option in options:
            cases.append((f"{entry}/{group}/{option}",
                          [*base, fmt.format(option), *REQUIRED.get(f"{entry}/{group}/{option}", [])]))
    return cases


def test_every_config_group_is_composed_and_the_dummy_overrides_name_real_options():
    """No group on disk escapes the composition test (a new group needs a primary config selecting it
    or an ADDED_GROUPS entry), and no REQUIRED / ADDED_GROUPS entry outlives what it names."""
    primaries = _primaries()
    reached, labels, n_cases = set(), set(), 0
    for entry, name, _ in primaries:
        for label, _ in _cases(entry, name):
            labels.add(label)
            reached.add(label.rsplit("/", 1)[0])
            n_cases += 1
    groups = {f"{entry}/{g}" for entry in {e for e, _, _ in primaries} for g in _disk_groups(entry)}
    assert groups - reached == set(), "config groups no primary config selects (add them to ADDED_GROUPS)"
    assert set(REQUIRED) - labels == set(), "REQUIRED entries naming no primary config or option"
    assert set(ADDED_GROUPS) <= groups
    assert n_cases >= 70, n_cases  # 9 primary configs, 61 group options (score takes data's too)


@pytest.mark.parametrize("entry,name,schema", _primaries(), ids=[f"{e}/{n}" for e, n, _ in _primaries()])
def test_every_primary_config_and_group_option_composes_into_its_schema(entry, name, schema):
    """Composed as the app composes it: succeeds, is typed by the schema, has no unknown key and
    converts (to_config: unknown keys refused, then OmegaConf.to_object, running __post_init__)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from pixio_robot.utils.cli import to_config, unknown_keys

    _register_schemas()
    failures = []
    with initialize_config_module(f"pixio_robot.configs.{entry}", version_base="1.3"):
        for label, overrides in _cases(entry, name):
            try:
                dcfg = compose(name, overrides=overrides)
            except Exception as e:  # every failure is collected and reported
                failures.append(f"{label} {overrides}: composition failed: {type(e).__name__}: {e}")
                continue
            if OmegaConf.get_type(dcfg) is not schema:
                failures.append(f"{label}: composed as {OmegaConf.get_type(dcfg)}, not {schema.__name__}")
            bad = unknown_keys(dcfg)
            if bad:
                failures.append(f"{label}: keys {schema.__name__} lacks: {bad}")
                continue
            try:
                cfg = to_config(dcfg)
            except Exception as e:
                failures.append(f"{label} {overrides}: to_config failed: {type(e).__name__}: {e}")
                continue
            if not isinstance(cfg, schema):
                failures.append(f"{label}: converted to {type(cfg).__name__}, not {schema.__name__}")
    assert not failures, "\n".join(failures)


# entries whose `--cfg job` is compared (the lightest to start; pretrain has groups and an experiment)
CFG_JOB_ENTRIES = ("pretrain", "rl", "collect")


def test_cfg_job_prints_what_composing_gives():
    """An independent path to the same config: the app's own `--cfg job` output (parsed YAML) equals
    the in-process composition with no overrides, for CFG_JOB_ENTRIES (run in parallel)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    env.pop("HYDRA_FULL_ERROR", None)
    procs = {entry: subprocess.Popen([sys.executable, "-m", f"pixio_robot.{entry}", "--cfg", "job"], env=env,
                                     cwd=ROOT.parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for entry in CFG_JOB_ENTRIES}
    try:
        _register_schemas()
        composed = {}
        for entry in CFG_JOB_ENTRIES:
            with initialize_config_module(f"pixio_robot.configs.{entry}", version_base="1.3"):
                composed[entry] = OmegaConf.to_container(compose("config"), resolve=False)
        for entry, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"{entry} --cfg job: exit {proc.returncode}\n{err[-2000:]}"
            printed = yaml.safe_load(out)
            assert isinstance(printed, dict) and printed, f"{entry} --cfg job printed no config:\n{out[-2000:]}"
            assert printed == composed[entry], f"{entry}: --cfg job differs from the composition"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
