"""Every YAML under pixio_robot/configs holds only what differs from its schema: a value that merely
repeats the dataclass default is a second copy that drifts (the rl YAML once said num_threads 1
where the schema said None). The schema defaults come from the dataclasses themselves; the YAML is
read raw (not composed), so each value is checked where it is written. One exception: in a
`# @package _global_` file (an experiment), a value under another config group's node (e.g.
`optim.warmup_steps` in experiment/tiny_cpu.yaml) may equal the schema default on purpose: it
overrides what that group's selected option sets."""

from __future__ import annotations

import dataclasses
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


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
