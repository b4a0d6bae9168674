"""`import pixio_robot` registers the Pixio encoders in timm without importing timm (or torch).

Importing timm costs ~3 s here (it imports torch); most commands that import pixio_robot need it
anyway, but a plain `import pixio_robot` should stay instant. So: if timm is already imported the
models register now; otherwise a one-shot import hook registers them right after timm's own
module has run, so `import pixio_robot; import timm; timm.create_model("pixio_vitb16")` works.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings


def _register() -> None:
    if "pixio_robot.models" in sys.modules:
        return  # imported (or being imported: it imports the registry itself, which registers)
    try:
        import pixio_robot.models.registry  # noqa: F401  (registers on import)
    except Exception as e:  # never break `import timm` for the user
        warnings.warn(f"pixio_robot could not register its models in timm: {type(e).__name__}: {e}", stacklevel=2)


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "timm":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # one shot
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _register()

        spec.loader.exec_module = exec_module  # this loader instance loads timm only
        return spec


def install() -> None:
    if "timm" in sys.modules:
        _register()
    elif not any(isinstance(f, _RegisterAfterTimm) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTimm())
