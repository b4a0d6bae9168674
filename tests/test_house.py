"""House rules that every entry shares: library logging propagates (no handler of its own), and
`--help` documents every key from the schema's field comments."""

from __future__ import annotations

import dataclasses
import importlib
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


@pytest.mark.parametrize("entry,schema", [("rl", "pixio_robot.rl.config:RLConfig"),
                                          ("collect", "pixio_robot.collect.config:CollectConfig")])
def test_help_lists_every_key_with_its_comment(entry, schema):
    mod, cls = schema.split(":")
    cls = getattr(importlib.import_module(mod), cls)
    r = subprocess.run([sys.executable, "-m", f"pixio_robot.{entry}", "--help"], capture_output=True, text=True,
                       timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    keys = r.stdout.split("== Keys", 1)[1].splitlines()[1:]
    listed = {ln.split()[0] for ln in keys if ln.strip()}
    top = {f.name for f in dataclasses.fields(cls)}
    assert top <= listed, top - listed
    # a comment written beside a field in the source shows up on its line
    src = Path(sys.modules[mod].__file__).read_text().splitlines()
    commented = [ln.split(":")[0].strip() for ln in src if ln.startswith("    ") and "  # " in ln
                 and ln.split(":")[0].strip() in top]
    assert commented
    for name in commented:
        comment = next(ln for ln in src if ln.strip().startswith(f"{name}:")).split("  # ", 1)[1].strip()
        line = next(ln for ln in keys if ln.split() and ln.split()[0] == name)
        assert comment.split(" ")[0] in line, (name, line)
