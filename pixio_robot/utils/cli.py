"""What every hydra entry point shares.

- `to_config(dcfg)`: the composed config as the schema's dataclasses, refusing any key the schema
  lacks. Hydra already refuses `stpes=5`, but `+stpes=5` (which its own error message suggests)
  adds the key and `OmegaConf.to_object` would silently drop it.
- `user_errors()`: a bad value, a missing file or path, a diverged run ends the command with one
  line saying what is wrong and what to do (the message the code raised) and exit status 1,
  instead of a traceback; Ctrl-C ends with status 130 and a line saying how to resume.
  `HYDRA_FULL_ERROR=1` shows the traceback as well.
- `run_app(app)`: runs a `@hydra.main` app so that what fails before the task function is one
  line too: `stpes=5` (no `+`) says "did you mean steps?" as `+stpes=5` does, and a run directory
  hydra cannot create or log into names the path instead of a logging-config traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any


class ConfigKeyError(ValueError):
    """A config key that no schema field takes."""


# Keys renamed so that one concept has one key in every entry (docs/CONTRACTS.md, "Keys"): an
# old key is refused with the new one's name (leaf names; the new leaf must be a field there).
RENAMED_KEYS = {
    "output_dir": "run_dir", "save_path": "export_path",
    "env_name": "env", "tasks": "envs",
    "episodes": "n_episodes", "eval_episodes": "n_episodes", "eval_every": "eval_every_epochs",
    "threads": "num_threads", "grad_clip": "clip_grad", "checkpoint_every": "ckpt_every",
    "checkpoint_replay_buffer": "ckpt_replay_buffer",
    "img_size": "image_size", "pretrain_img_size": "pretrain_image_size", "vectorization": "vector_mode",
    "force": "resume=false", "output": "scores",
}


def _key_hint(key: str, fields: list[str]) -> str:
    """" (renamed: use X)" / " (did you mean X?)" / "" for an unknown dotted `key` among `fields`."""
    leaf = str(key).rsplit(".", 1)[-1]
    new = RENAMED_KEYS.get(leaf)
    if new is not None and new.split("=")[0] in fields:
        return f" (renamed: use {str(key)[:len(str(key)) - len(leaf)]}{new})"
    m = difflib.get_close_matches(leaf, fields, n=3)
    return f" (did you mean {' / '.join(m)}?)" if m else ""


class RunError(RuntimeError):
    """A run that cannot go on, with a message that says what to do (e.g. training diverged)."""


def unknown_keys(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(dotted key, hint: renamed / close field names) for every key of a structured DictConfig
    its dataclass lacks."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    out: list[tuple[str, str]] = []
    if isinstance(node, DictConfig):
        kind = OmegaConf.get_type(node)
        fields = [f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind) else None
        for key in node.keys():
            name = f"{path}{key}"
            if fields is not None and key not in fields:
                out.append((name, _key_hint(name, fields)))
                continue
            if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
                continue
            out += unknown_keys(node[key], name + ".")
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            if not (OmegaConf.is_missing(node, i) or OmegaConf.is_interpolation(node, i)):
                out += unknown_keys(node[i], f"{path}{i}.")
    return out


def to_config(dcfg: Any) -> Any:
    """Validated DictConfig -> the schema's dataclasses; an unknown key (even `+key=`) is an error."""
    from omegaconf import OmegaConf

    bad = unknown_keys(dcfg)
    if bad:
        parts = [f"{k}{hint}" for k, hint in bad]
        raise ConfigKeyError(f"unknown config key(s): {', '.join(parts)}. `--cfg job` prints every key this "
                             "command takes")
    return OmegaConf.to_object(dcfg)


def register_resolvers() -> None:
    """`${pixio_or:${run_dir},runs/x/<time>}` in hydra.run.dir: the run directory the user named,
    else a fresh timestamped one (so hydra's log and .hydra/ land beside the run's own files)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("pixio_or"):
        OmegaConf.register_new_resolver("pixio_or", lambda value, default: default if value in (None, "") else value)


# set beside HYDRA_FULL_ERROR=1 when run_app set it (to catch hydra's own errors), so neither this
# process nor a child entry it starts takes it for the user's wish to see tracebacks
_CAPTURE_ENV = "PIXIO_CAPTURES_HYDRA_ERRORS"


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and not os.environ.get(_CAPTURE_ENV)


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def hydra_failure(e: BaseException) -> str | None:
    """One line for a failure in hydra's own set-up (before the task function), or None."""
    from hydra.errors import CompactHydraException, ConfigCompositionException
    from omegaconf.errors import ConfigAttributeError, OmegaConfBaseException
    from omegaconf.errors import ConfigKeyError as OmegaKeyError

    if isinstance(e, ConfigCompositionException) and str(e).startswith("Could not override"):
        cause = e.__cause__
        key = getattr(cause, "full_key", None) or str(e).split("'")[1]
        kind, parent = getattr(cause, "object_type", None), getattr(cause, "parent_node", None)
        fields = ([f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind)
                  else [str(k) for k in parent.keys()] if hasattr(parent, "keys") else [])
        if isinstance(cause, ConfigAttributeError | OmegaKeyError) and "." in key and not dataclasses.is_dataclass(kind):
            # `algo_kwargs={n_steps: 32}` into a free-form dict field: hydra merges it in struct mode
            return (f"{key.rsplit('.', 1)[0]} is a free-form dict: add its entries one by one with +{key}=<value>")
        if isinstance(cause, ConfigAttributeError | OmegaKeyError):
            return f"unknown config key(s): {key}{_key_hint(key, fields)}. `--cfg job` prints every key this command takes"
    for link in _chain(e):  # a config file (an experiment / suite YAML) with an unknown key
        if isinstance(link, OmegaKeyError) and getattr(link, "full_key", None) and "not in" in str(link):
            kind = getattr(link, "object_type", None)
            fields = [f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind) else []
            return (f"unknown config key in a config file: {link.full_key}{_key_hint(link.full_key, fields)}. "
                    "`--cfg job` prints every key this command takes")
    for link in _chain(e):
        if isinstance(link, OSError) and link.filename:
            return (f"cannot create or write the run directory ({link.filename}: "
                    f"{link.strerror or type(link).__name__}); choose a run_dir= you can write to")
    if isinstance(e, CompactHydraException):
        cause = f" ({e.__cause__})" if isinstance(e.__cause__, OmegaConfBaseException) else ""
        return " ".join(f"{e}{cause}".split())
    return None


def run_app(app: Any, schema: type | None = None) -> None:
    """Call a `@hydra.main` function; hydra's own failures become one `error:` line (module doc).
    With `HYDRA_FULL_ERROR=1` set by the user everything is as hydra does it. `--help` prints
    hydra's page and then every key of `schema` with its type, default and field comment
    (`pixio_robot.utils.schema_help`)."""
    if schema is not None and "--help" in sys.argv[1:]:
        try:
            app()
        except SystemExit as e:
            if e.code not in (0, None):
                raise
        from pixio_robot.utils.schema_help import format_help

        print(format_help(schema))
        return
    if _full_error():
        app()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # hydra re-raises instead of printing a trimmed traceback
    os.environ[_CAPTURE_ENV] = "1"
    try:
        app()
    except Exception as e:
        msg = hydra_failure(e)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(1)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.pop(_CAPTURE_ENV, None)


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, RunError)


def _message(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    if "Original Traceback" in msg:  # re-raised from a DataLoader worker: its last line is the error
        last = msg.splitlines()[-1]
        msg = last.split(": ", 1)[1] if ": " in last else last
    if isinstance(e, KeyError) and msg.startswith(("'", '"')):
        msg = msg[1:-1]
    return msg


@contextlib.contextmanager
def user_errors(on_interrupt: str = "") -> Iterator[None]:
    """Turn the errors a user can fix into one line on stderr and exit status 1 (see module doc);
    `on_interrupt` is what to say after Ctrl-C (e.g. how to resume)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"\ninterrupted{'; ' + on_interrupt if on_interrupt else ''}", file=sys.stderr)
        sys.exit(130)
    except USER_ERRORS as e:
        if _full_error():
            raise
        frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" [{type(e).__name__} at {os.path.basename(frame.filename)}:{frame.lineno}]" if frame else ""
        print(f"error: {_message(e)}{where}\n(HYDRA_FULL_ERROR=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)


__all__ = ["ConfigKeyError", "RunError", "hydra_failure", "register_resolvers", "run_app", "to_config", "unknown_keys",
           "user_errors"]
