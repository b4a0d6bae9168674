"""Shared test set-up: offline, headless, single-threaded torch, repo on PYTHONPATH for subprocesses."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def private_sim_cache(tmp_path_factory):
    """A private corpus cache (PIXIO_CACHE) for one test module (the tiny test corpus renders in seconds)."""
    old = os.environ.get("PIXIO_CACHE")
    os.environ["PIXIO_CACHE"] = str(tmp_path_factory.mktemp("pixio_cache"))
    yield os.environ["PIXIO_CACHE"]
    if old is None:
        os.environ.pop("PIXIO_CACHE")
    else:
        os.environ["PIXIO_CACHE"] = old


def pytest_configure(config):
    import signal

    import torch

    torch.set_num_threads(1)
    # A suite started in the background by a non-interactive shell inherits SIGINT as ignored, and
    # so would every entry it runs (Python then installs no KeyboardInterrupt handler): the Ctrl-C
    # tests would wait forever. Restore the default, so children start with SIGINT as a user's do.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip)
