"""House rules that every entry shares: library logging propagates (no handler of its own), and
`--help` documents every key from the schema's field comments."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def test_library_logging_propagates_and_installs_no_handler(caplog):
    import pixio_robot

    for mod in pkgutil.walk_packages(pixio_robot.__path__, "pixio_robot."):
        if ".configs" in mod.name or mod.name.endswith("__main__"):
            continue
        importlib.import_module(mod.name)
    from pixio_robot.utils.logging import get_logger

    assert logging.getLogger("pixio_robot").handlers == [] and logging.getLogger("pixio_robot").propagate
    with caplog.at_level(logging.INFO):
        get_logger("pixio_robot.some.module").info("a library record")
    assert [r.getMessage() for r in caplog.records if r.name == "pixio_robot.some.module"] == ["a library record"]


def test_hydra_job_log_holds_the_library_records(tmp_path):
    """`python -m pixio_robot.pretrain` -> hydra's job log `<run_dir>/pretrain.log` has the loop's INFO lines."""
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "pixio_robot.pretrain", "experiment=test", f"run_dir={run}", "steps=2",
                        "ckpt_every=2", "logger.log_every=1", "data.num_workers=0", "num_threads=1"],
                       capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    text = (run / "pretrain.log").read_text()
    assert "[pixio_robot.pretrain.loop][INFO] - loss at start (step 1)" in text, text[-2000:]
    assert "loss at start" in r.stdout  # and on the console, once
    assert r.stdout.count("loss at start") == 1


@dataclasses.dataclass
class Inner:
    depth: int = 2  # how deep

@dataclasses.dataclass
class Outer:
    name: str = "x"  # the name
    # a comment on its own line belongs to no field
    size: int = 3
    inner: Inner = dataclasses.field(default_factory=Inner)  # the nested part
    ratio: float | None = None  # a ratio,
                                # continued here


def test_field_comments_come_from_the_dataclass_source():
    from pixio_robot.utils.schema_help import field_comments, field_docs

    assert field_comments(Outer) == {"name": "the name", "inner": "the nested part", "ratio": "a ratio, continued here"}
    rows = {k: (t, d, c) for k, t, d, c in field_docs(Outer)}
    assert rows["size"] == ("int", "3", "") and rows["inner.depth"] == ("int", "2", "how deep")
    assert rows["ratio"][1] == "null"


# every entry point (`python -m pixio_robot.<entry>`, pyproject's [project.scripts]) and its schema
ENTRIES = {
    "pretrain": "pixio_robot.pretrain.config:PretrainConfig",
    "pretrain.score": "pixio_robot.pretrain.config:ScoreConfig",
    "collect": "pixio_robot.collect.config:CollectConfig",
    "train": "pixio_robot.train.config:TrainConfig",
    "evaluate": "pixio_robot.evaluate.config:EvaluateConfig",
    "benchmark": "pixio_robot.benchmark.config:BenchmarkConfig",
    "probe": "pixio_robot.probe.config:ProbeConfig",
    "rl": "pixio_robot.rl.config:RLConfig",
    "quickstart": "pixio_robot.quickstart.config:QuickstartConfig",
}
# schemas an entry reaches through a config group rather than a typed field (train's `policy: Any`)
GROUP_SCHEMAS = {
    "train": ["pixio_robot.policies.mlp.configuration_mlp:MLPConfig",
              "pixio_robot.policies.lerobot.training:LeRobotPolicyChoice"],
}


def _load(spec: str) -> type:
    mod, name = spec.split(":")
    return getattr(importlib.import_module(mod), name)


def _reachable(cls: type, seen: dict | None = None) -> dict:
    """{name: dataclass} for `cls` and every dataclass its fields hold (nested, in lists, dicts, Optional)."""
    import typing

    seen = {} if seen is None else seen
    if cls.__qualname__ in seen:
        return seen
    seen[cls.__qualname__] = cls
    stack = list(typing.get_type_hints(cls).values())
    while stack:
        tp = stack.pop()
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            _reachable(tp, seen)
        stack += typing.get_args(tp)
    return seen


def test_every_entry_is_covered():
    """ENTRIES names every console script of pyproject.toml (a new entry must be added here)."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"].values()
    entries = {s.split(":")[0].removeprefix("pixio_robot.").removesuffix(".__main__") for s in scripts}
    assert entries == set(ENTRIES), entries ^ set(ENTRIES)


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_schema_field_has_a_trailing_comment(entry):
    """Every field of every schema dataclass the entry reaches carries `  # what it means` beside it
    (the text `--help` prints; a comment on the line above is not read)."""
    from pixio_robot.utils.schema_help import field_comments

    classes = _reachable(_load(ENTRIES[entry]))
    for spec in GROUP_SCHEMAS.get(entry, []):
        _reachable(_load(spec), classes)
    missing = {name: sorted({f.name for f in dataclasses.fields(c)} - {k for k, v in field_comments(c).items() if v})
               for name, c in classes.items()}
    assert not {k: v for k, v in missing.items() if v}, missing


@pytest.mark.parametrize("entry", ENTRIES)
def test_help_lists_every_key_with_its_comment(entry):
    from pixio_robot.utils.schema_help import field_docs

    cls = _load(ENTRIES[entry])
    r = subprocess.run([sys.executable, "-m", f"pixio_robot.{entry}", "--help"], capture_output=True, text=True,
                       timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "== Keys" in r.stdout, f"`{entry} --help` prints no key listing"
    keys = r.stdout.split("== Keys", 1)[1].splitlines()[1:]
    lines = {ln.split()[0]: ln for ln in keys if ln.strip()}
    # every key, nested ones included (optim.lr, data.sources, ...), is listed ...
    docs = {key: doc for key, _, _, doc in field_docs(cls)}
    assert set(docs) == set(lines), set(docs) ^ set(lines)
    top = {f.name for f in dataclasses.fields(cls)}
    assert top <= set(lines), top - set(lines)
    # ... each with a non-empty description after `  # `, the one written beside its field
    undocumented = [k for k, ln in lines.items() if "  # " not in ln or not ln.split("  # ", 1)[1].strip()]
    assert not undocumented, undocumented
    for key, doc in docs.items():
        assert lines[key].endswith(f"  # {doc}"), (key, lines[key])
    # a comment written beside a field in the class's source shows up on its line
    src = inspect.getsource(cls).splitlines()
    commented = [ln.split(":")[0].strip() for ln in src if ln.startswith("    ") and "  # " in ln
                 and ln.split(":")[0].strip() in top]
    assert set(commented) == top, top - set(commented)
    for name in commented:
        comment = next(ln for ln in src if ln.strip().startswith(f"{name}:")).split("  # ", 1)[1].strip()
        line = lines[name]
        assert comment.split(" ")[0] in line, (name, line)
