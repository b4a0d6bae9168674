"""LeRobot pretrained policy directories (any `type`: act, diffusion, pixio_act, ...) under the
project's evaluator.

A LeRobot directory is what `lerobot-train` writes as `checkpoints/<step>/pretrained_model` (or
what `policy.save_pretrained(d)` + the processors' `save_pretrained(d)` write): `config.json`
with a LeRobot `type`, `model.safetensors`, `policy_preprocessor*.json` /
`policy_postprocessor*.json`. :class:`LeRobotPolicy` loads it with LeRobot's own API and speaks
the evaluator's Policy API (`reset()`, `select_action(batch) -> [B, A]`), doing per step what
`lerobot-eval` does (lerobot.scripts.lerobot_eval.rollout):

    env obs (pixels HxWx3 uint8, state)  -> preprocess_observation (float [0,1] CHW images,
    LeRobot keys) -> + task text -> policy preprocessor -> select_action -> policy postprocessor

The env's one camera feeds a one-camera policy's image feature (`observation.image` or
`observation.images.<cam>`, rendering camera `<cam>` where the env has cameras), at the size
that feature declares. A policy of several cameras (`observation.images.<cam>` each, as ALOHA's
datasets record them) gets the env built with `cameras=[...]` (the evaluator's `camera_options`)
and each rendered view `pixels.<cam>` under its key, as lerobot-eval hands a dict of `pixels`
to `preprocess_observation`. `state` feeds `observation.state`. What the env cannot give (a
camera it lacks, `observation.environment_state`, a state of another size) is one error naming
the keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from lerobot.utils.constants import OBS_IMAGE, OBS_IMAGES, OBS_STATE  # LeRobot's batch keys

from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)

SINGLE_VIEW_ENVS = ("lerobot/pusht",)  # envs that refuse a camera name


def lerobot_policy_type(path: str | Path) -> str | None:
    """The LeRobot policy `type` recorded in `path/config.json`, or None when `path` is not a
    LeRobot policy directory (the project's own saved policies record `format`, not `type`)."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return None
    try:
        meta = json.loads(cfg.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    kind = meta.get("type") if isinstance(meta, dict) and "format" not in meta else None
    return kind if isinstance(kind, str) and kind else None


_LEROBOT_ENVS = {("pusht", None): "lerobot/pusht", ("aloha", "AlohaTransferCube-v0"): "lerobot/aloha-transfer-cube",
                 ("aloha", "AlohaInsertion-v0"): "lerobot/aloha-insertion"}


def lerobot_env_name(path: str | Path) -> str | None:
    """The project env matching the `env` of the `train_config.json` lerobot-train saved next to
    the policy (`pusht` -> `lerobot/pusht`, ALOHA tasks likewise), else None."""
    cfg = Path(path) / "train_config.json"
    try:
        env = json.loads(cfg.read_text()).get("env") or {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    kind = env.get("type") if isinstance(env, dict) else None
    return _LEROBOT_ENVS.get((kind, None)) or _LEROBOT_ENVS.get((kind, env.get("task") if kind else None))


def _feature_shape(feature: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in feature.shape)


class LeRobotPolicy:
    """A LeRobot `PreTrainedPolicy` with its saved pre/post-processors, under the Policy API."""

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, path: str | Path = ""):
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.path = str(path)
        self.config = policy.config
        features = dict(self.config.input_features)
        self.image_keys = [k for k, f in features.items() if f.type.name == "VISUAL"]
        self.state_key = OBS_STATE if OBS_STATE in features else None
        self.other_keys = [k for k in features if k not in self.image_keys and k != self.state_key]
        self.task = ""

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> LeRobotPolicy:
        """Load a LeRobot policy directory with LeRobot's API (plugins registered first)."""
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()  # lerobot_policy_* distributions, e.g. pixio_act / pixio_diffusion
        path = Path(path)
        kind = lerobot_policy_type(path)
        known = sorted(PreTrainedConfig.get_known_choices())
        if kind not in known:
            raise ValueError(f"{path}/config.json names LeRobot policy type {kind!r}, which is not installed; "
                             f"known types: {', '.join(known)}")
        for need in ("model.safetensors",):
            if not (path / need).is_file():
                raise FileNotFoundError(f"{path} is a LeRobot policy config without {need}: pass the "
                                        "`pretrained_model` folder lerobot-train writes (or a save_pretrained dir)")
        if not list(path.glob("policy_preprocessor*.json")):
            raise FileNotFoundError(f"{path} has no policy_preprocessor*.json: save the processors next to the "
                                    "policy (lerobot-train does; by hand: preprocessor.save_pretrained(dir))")
        config = PreTrainedConfig.from_pretrained(path)
        config.device = str(device)
        config.pretrained_path = path
        policy = get_policy_class(config.type).from_pretrained(path, config=config)
        policy.eval()
        pre, post = make_pre_post_processors(policy.config, pretrained_path=str(path),
                                             preprocessor_overrides={"device_processor": {"device": str(device)}})
        return cls(policy, pre, post, path)

    # -- what the env must render ---------------------------------------------------------------
    @property
    def cameras(self) -> list[str]:
        """The env camera of each image feature (`observation.images.<cam>` -> `<cam>`), in order;
        empty for a one-camera policy that reads `observation.image`."""
        return [k.removeprefix(OBS_IMAGES + ".") for k in self.image_keys if k.startswith(OBS_IMAGES + ".")]

    def env_defaults(self, env_name: str) -> dict:
        """`image_size` (H, W) and `camera` the env must render to feed the policy's image
        feature(s): the first one's size and camera (the env's main view; the others come with
        `cameras=[...]`)."""
        if not self.image_keys:
            return {"image_size": None, "camera": None}
        sizes = {_feature_shape(self.config.input_features[k])[1:] for k in self.image_keys}
        if len(sizes) > 1:
            raise ValueError(f"LeRobot policy {self.path or self.config.type} reads cameras of different sizes "
                             f"({dict((k, _feature_shape(self.config.input_features[k])) for k in self.image_keys)}): "
                             "the evaluator renders every camera at one size")
        (h, w), cams = sizes.pop(), self.cameras
        return {"image_size": (h, w), "camera": None if env_name in SINGLE_VIEW_ENVS or not cams else cams[0]}

    def check_env(self, env_name: str, obs_space: Any, act_space: Any) -> None:
        """Raise one ValueError naming the keys when the env cannot give what the policy reads."""
        from pixio_robot.envs.registry import task_description

        spaces = getattr(obs_space, "spaces", {})
        gives = []
        if "pixels" in spaces:
            gives.append(f"one camera image {tuple(spaces['pixels'].shape)}")
        if "state" in spaces:
            gives.append(f"a {spaces['state'].shape[-1]}-d state")
        problems = []
        views = [k.removeprefix("pixels.") for k in spaces if k.startswith("pixels.")]
        if views:
            gives.append(f"cameras {views}")
        if len(self.image_keys) > 1:
            if views:
                missing = [k for k, c in zip(self.image_keys, self.cameras) if c not in views]
                if len(self.cameras) < len(self.image_keys):
                    missing = self.image_keys  # observation.image beside observation.images.<cam>: no env names it
            else:  # one rendered view: it feeds the first camera
                missing = self.image_keys[1:]
            if missing:
                how = ("a multi-camera env renders them with env_options.cameras=[...]" if views
                       else "the env renders one camera")
                problems.append(f"cameras {missing} are missing ({how}, fed to {self.image_keys[0]})")
        elif self.image_keys and "pixels" not in spaces:
            problems.append(f"{self.image_keys[0]} is missing (the env renders no pixels)")
        if self.state_key:
            want = _feature_shape(self.config.input_features[self.state_key])[-1]
            if "state" not in spaces:
                problems.append(f"{self.state_key} ({want}-d) is missing")
            elif spaces["state"].shape[-1] != want:
                problems.append(f"{self.state_key} is {want}-d in the policy, {spaces['state'].shape[-1]}-d in the env")
        if self.other_keys:
            problems.append(f"{self.other_keys} are missing")
        action = self.config.output_features.get("action")
        shape = getattr(act_space, "shape", None)
        if action is not None and shape and _feature_shape(action)[-1] != shape[-1]:
            problems.append(f"action is {_feature_shape(action)[-1]}-d in the policy, {shape[-1]}-d in the env")
        if problems:
            raise ValueError(f"LeRobot policy {self.path or self.config.type} does not fit {env_name}: it reads "
                             f"{sorted(self.config.input_features)}, {env_name} gives {' and '.join(gives) or 'nothing'}"
                             f"; {'; '.join(problems)}")
        if self.image_keys and "pixels" in spaces:
            want_hw = _feature_shape(self.config.input_features[self.image_keys[0]])[1:]
            if tuple(spaces["pixels"].shape[-3:-1]) != want_hw:
                log.warning("%s was trained on %s images, %s renders %s (as lerobot-eval, no resize)",
                            self.image_keys[0], want_hw, env_name, tuple(spaces["pixels"].shape[-3:-1]))
        self.task = task_description(env_name)

    # -- Policy API -----------------------------------------------------------------------------
    def eval(self) -> LeRobotPolicy:
        self.policy.eval()
        return self

    def reset(self) -> None:
        """Start of an episode round: clears action queues / observation history / ensembling."""
        self.policy.reset()

    def lerobot_observation(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The evaluator's batch (uint8 (B,H,W,3) `observation.image`, float `observation.state`) ->
        the batch lerobot-eval hands the preprocessor, under the keys the policy declares."""
        from lerobot.envs.utils import preprocess_observation

        raw: dict[str, Any] = {}
        if len(self.image_keys) > 1:  # every camera under its own key: {cam: (B, H, W, 3)}
            raw["pixels"] = {c: batch[f"{OBS_IMAGES}.{c}"].cpu().numpy() for c in self.cameras}
        elif self.image_keys and OBS_IMAGE in batch:
            px = batch[OBS_IMAGE].cpu().numpy()
            raw["pixels"] = px[:, -1] if px.ndim == 5 else px  # (B, H, W, 3); last frame of a stack
        if self.state_key and OBS_STATE in batch:
            raw["agent_pos"] = batch[OBS_STATE].cpu().numpy()  # (B, S) -> observation.state
        obs = preprocess_observation(raw)
        if len(self.image_keys) == 1 and self.image_keys[0] != OBS_IMAGE:
            obs[self.image_keys[0]] = obs.pop(OBS_IMAGE)  # the env's camera under the policy's key
        n = next(iter(obs.values())).shape[0] if obs else 1
        obs["task"] = [self.task] * n
        return obs

    def select_action(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, A] env actions: preprocess_observation -> preprocessor -> select_action -> postprocessor."""
        obs = self.preprocessor(self.lerobot_observation(batch))
        with torch.inference_mode():
            action = self.policy.select_action(obs)
        return self.postprocessor(action)
