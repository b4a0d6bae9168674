"""Policy checkpoints: `model.safetensors` + `config.json` that rebuilds the policy.

config.json records the policy type and its config, the encoder reference (adapter config,
weights digest), the normalisation statistics, env name, image size and camera. A frozen encoder
loaded from a file is *not* copied into the policy weights: the reference and digest are kept
and checked on load (a changed or different encoder file fails with a clear message); pass
`encoder_path=` when the file moved. Fine-tuned and randomly initialised encoders are saved.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from pixio_robot.policies.base import POLICY_REGISTRY, PixioPolicy, PolicySpec
from pixio_robot.policies.constants import POLICY_CONFIG, POLICY_WEIGHTS
from pixio_robot.policies.encoder_adapter import AdapterConfig

FORMAT = "pixio_robot.policy"
FORMAT_VERSION = 1
BACKBONE_PREFIX = "adapter.backbone."


class PolicyLoadError(ValueError):
    """A saved policy cannot be loaded as asked (wrong type, wrong encoder, broken files)."""


def make_policy(policy_type: str, config: Any, encoder: AdapterConfig | dict, spec: PolicySpec) -> PixioPolicy:
    """Build a fresh policy of a registered type."""
    if policy_type not in POLICY_REGISTRY:
        raise ValueError(f"unknown policy type {policy_type!r}; known: {sorted(POLICY_REGISTRY)}")
    return POLICY_REGISTRY[policy_type](config, encoder, spec)


def _saves_backbone(policy: PixioPolicy) -> bool:
    c = policy.adapter.config
    return not (c.mode == "frozen" and c.path)


def save_policy(policy: PixioPolicy, path: str | Path, extra: dict | None = None) -> Path:
    """Write `path/model.safetensors` and `path/config.json` atomically; returns `path`."""
    from safetensors.torch import save_file

    from pixio_robot.utils.io import atomic_save_file, save_json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with_backbone = _saves_backbone(policy)
    state = {k: v.detach().to("cpu").contiguous() for k, v in policy.state_dict().items()
             if with_backbone or not k.startswith(BACKBONE_PREFIX)}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **policy.describe(),
            "encoder_weights_saved": with_backbone, "env_name": policy.spec.env_name,
            "image_size": policy.spec.image_size, "camera": policy.spec.camera, **(extra or {})}
    atomic_save_file(path / POLICY_WEIGHTS, lambda p: save_file(state, p, metadata={"format": FORMAT}))
    save_json(path / POLICY_CONFIG, meta)
    return path


def read_policy_config(path: str | Path) -> dict:
    """The config.json of a saved policy directory, checked for format."""
    path = Path(path)
    if path.is_file() and path.name != POLICY_CONFIG:
        hint = f": pass {path.parent}" if path.name == POLICY_WEIGHTS else ""
        raise PolicyLoadError(f"{path} is a file; a saved policy is a directory ({POLICY_CONFIG} + {POLICY_WEIGHTS})"
                              + hint)
    cfg_file = path / POLICY_CONFIG if path.is_dir() else path
    if not cfg_file.exists():
        hint = ""
        if path.is_dir():
            inside = [d.name for d in (path / "policy", path / "policy_best") if (d / POLICY_CONFIG).exists()]
            if inside:
                hint = f"; {path} is a training run: its policies are {' and '.join(str(path / d) for d in inside)}"
            elif (path / "agent.json").exists():
                hint = f"; {path} is an RL run (an SB3 agent): load it with pixio_robot.rl.load_agent"
        raise PolicyLoadError(f"{path} is not a saved policy: {POLICY_CONFIG} not found (expected a directory "
                              f"written by save_policy / python -m pixio_robot.train){hint}")
    try:
        meta = json.loads(cfg_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PolicyLoadError(f"{cfg_file} is not valid JSON ({e}); the policy directory is damaged: save or "
                              "train it again") from e
    if meta.get("format") != FORMAT:
        raise PolicyLoadError(f"{cfg_file} is not a pixio_robot policy config (format={meta.get('format')!r}); "
                              "SB3 agents from python -m pixio_robot.rl load with pixio_robot.rl.load_agent")
    return meta


def load_policy(path: str | Path, device: str | torch.device = "cpu", *, expected_type: str | None = None,
                encoder_path: str | None = None, expected_encoder_digest: str | None = None) -> PixioPolicy:
    """Rebuild a saved policy in eval mode. `expected_type` / `expected_encoder_digest` make loading
    a checkpoint of another policy type / encoder an error; `encoder_path` relocates a frozen
    encoder file (its weights must still match the recorded digest)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_policy_config(path)
    ptype = meta.get("policy_type")
    if ptype not in POLICY_REGISTRY:
        raise PolicyLoadError(f"{path} holds a policy of unknown type {ptype!r}; known: {sorted(POLICY_REGISTRY)}")
    if expected_type is not None and ptype != expected_type:
        raise PolicyLoadError(f"{path} holds a {ptype!r} policy, not a {expected_type!r} one; load it with "
                              f"load_policy(path) or the {ptype!r} class")
    enc = dict(meta["encoder"]["config"])
    recorded = meta["encoder"]["digest"]
    if expected_encoder_digest is not None and expected_encoder_digest != recorded:
        raise PolicyLoadError(f"{path} was trained on encoder weights {recorded}, not {expected_encoder_digest}")
    if encoder_path is not None:
        enc["path"] = str(encoder_path)
    cls = POLICY_REGISTRY[ptype]
    try:
        spec = PolicySpec(**meta["spec"])
        config = cls.config_class(**meta["policy_config"])
    except (TypeError, KeyError) as e:
        raise PolicyLoadError(f"{path}/{POLICY_CONFIG} does not match this version's {ptype!r} policy config "
                              f"({e}); retrain the policy or load it with the pixio_robot version that saved it") from e
    try:
        policy = cls(config, AdapterConfig.from_dict(enc), spec)
    except FileNotFoundError as e:
        raise PolicyLoadError(f"{path}: its frozen encoder is not where it was: {e}. Pass encoder_path= "
                              "(or policy.encoder_path=) pointing to the same weights") from e
    try:
        state = load_file(str(path / POLICY_WEIGHTS))
    except Exception as e:  # safetensors raises its own error type for a cut or garbled file
        raise PolicyLoadError(f"{path / POLICY_WEIGHTS} cannot be read ({e}): the file is missing, truncated or "
                              "corrupt; save or train the policy again") from e
    _check_normalisation(path, meta["encoder"], policy)
    if not meta.get("encoder_weights_saved", True):
        digest = policy.adapter.encoder_digest()
        if digest != recorded:
            raise PolicyLoadError(
                f"{path} was trained on encoder {enc.get('path')} with weights digest {recorded}, but that "
                f"encoder now has digest {digest}: it is a different encoder (or the file changed). Use the "
                "encoder the policy was trained with, or retrain the policy")
        state.update({k: v for k, v in policy.state_dict().items() if k.startswith(BACKBONE_PREFIX)})
    missing, unexpected = policy.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PolicyLoadError(f"{path}: weights do not fit a {ptype!r} policy built from its config: missing "
                              f"{missing[:8]}, unexpected {unexpected[:8]}")
    if policy.adapter.encoder_digest() != recorded:
        raise PolicyLoadError(f"{path}: encoder weights in the file do not match the recorded digest {recorded}")
    return policy.to(device).eval()


def _check_normalisation(path: Path, recorded: dict, policy: PixioPolicy) -> None:
    """The encoder must be fed as at training time (mean/std, input size); older files record none."""
    now = policy.adapter.reference()
    for key in ("mean", "std", "image_size"):
        if key in recorded and recorded[key] is not None and list(map(float, _as_list(recorded[key]))) != list(
                map(float, _as_list(now[key]))):
            raise PolicyLoadError(f"{path}: the encoder was trained on images normalised with {key}={recorded[key]}, "
                                  f"but it is rebuilt with {key}={now[key]} (another timm version or model "
                                  "config?); use the versions the policy was trained with, or retrain it")


def _as_list(v) -> list:
    return list(v) if isinstance(v, list | tuple) else [v]


def policy_summary(policy: PixioPolicy) -> dict:
    """Counts for logs: trainable / frozen parameters of adapter and head."""
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    total = sum(p.numel() for p in policy.parameters())
    return {"type": policy.policy_type, "params": total, "trainable": trainable,
            "encoder": dataclasses.asdict(policy.adapter.config)}
