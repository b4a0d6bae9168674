"""The policy API every imitation head shares (LeRobot-shaped).

    reset()                 clear the frame history (and action queue) of every row
    select_action(batch)    batch[observation.image] uint8 [B,H,W,3] (or [B,T,H,W,3]),
                            batch[observation.state] float [B,S] -> actions [B,A] (env units);
                            the camera / state keys the policy was trained on
                            (spec.image_key / spec.state_key) are accepted as well; a policy
                            trained on several cameras (spec.image_keys) needs each of them
    forward(batch)          training: (loss, info); images [B,T,H,W,3] (one per camera key when
                            several) or cached frozen features batch[observation.features]
                            [B,T,*F] (several cameras: [B,T,C,*F] in spec.image_keys order)

Several cameras go through the ONE adapter (shared weights); their per-frame representations
are concatenated in `spec.image_keys` order: [B,T,C,*R] -> [B,T,C*R0,*R[1:]].

A policy owns its encoder adapter, the normalisation statistics of the data it was trained on,
and the frame history it needs at inference (one row per env of a vectorised batch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_IMAGES, OBS_STATE
from torch import nn

from pixio_robot.policies.constants import OBS_FEATURES
from pixio_robot.policies.encoder_adapter import AdapterConfig, EncoderAdapter

POLICY_REGISTRY: dict[str, type[PixioPolicy]] = {}


def register_policy(cls: type[PixioPolicy]) -> type[PixioPolicy]:
    """Class decorator: make a policy type loadable by name."""
    if cls.policy_type in POLICY_REGISTRY:
        raise ValueError(f"policy type {cls.policy_type!r} registered twice")
    POLICY_REGISTRY[cls.policy_type] = cls
    return cls


@dataclass
class PolicySpec:
    """What a policy knows about its data and env (saved with it)."""

    state_dim: int
    action_dim: int
    stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # key -> mean/std/min/max
    env_name: str | None = None
    image_size: int | None = None  # env frame side the data was recorded at
    camera: str | None = None
    image_key: str = OBS_IMAGE  # dataset camera the policy was trained on (the first of image_keys)
    fps: int | None = None
    state_key: str | None = OBS_STATE  # dataset feature of the state (None: trained without state)
    action_key: str = ACTION  # dataset feature of the actions
    dataset: str | None = None  # what it was trained on (dataset root or hub id)
    image_keys: list[str] | None = None  # every camera, in the order their embeddings are joined

    def __post_init__(self) -> None:
        if self.image_keys is None:  # one camera (and configs saved before multi-camera)
            self.image_keys = [self.image_key]
        self.image_keys = [str(k) for k in self.image_keys]
        if not self.image_keys or self.image_keys[0] != self.image_key:
            raise ValueError(f"image_key {self.image_key!r} must be the first of image_keys {self.image_keys}")
        if len(set(self.image_keys)) != len(self.image_keys):
            raise ValueError(f"image_keys {self.image_keys} name a camera twice")
        if self.action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {self.action_dim}")
        if self.state_dim < 0:
            raise ValueError(f"state_dim must be >= 0, got {self.state_dim}")


def _image_keys(batch: dict) -> list[str]:
    return [k for k in batch if k == OBS_IMAGE or str(k).startswith(OBS_IMAGES + ".")]


def _stat(spec: PolicySpec, key: str, name: str, dim: int, default: float) -> torch.Tensor:
    vals = spec.stats.get(key, {}).get(name)
    if vals is None:
        return torch.full((dim,), default)
    t = torch.as_tensor(vals, dtype=torch.float32).reshape(-1)
    if t.numel() != dim:
        raise ValueError(f"stats[{key}][{name}] has {t.numel()} values, expected {dim}")
    return t


class PixioPolicy(nn.Module):
    """Base class: adapter + normalisation + frame history; subclasses add a head."""

    policy_type: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, config: Any, encoder: AdapterConfig | dict, spec: PolicySpec) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = self.config_class(**config)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.spec = spec
        self.adapter = EncoderAdapter(encoder)
        s, a = spec.state_dim, spec.action_dim
        self.register_buffer("state_mean", _stat(spec, OBS_STATE, "mean", s, 0.0))
        self.register_buffer("state_std", _stat(spec, OBS_STATE, "std", s, 1.0).clamp_min(1e-4))
        self.register_buffer("action_mean", _stat(spec, ACTION, "mean", a, 0.0))
        self.register_buffer("action_std", _stat(spec, ACTION, "std", a, 1.0).clamp_min(1e-4))
        self._history: torch.Tensor | None = None  # (B, T, *R) frame representations

    # -- subclass hooks -------------------------------------------------------------------------
    @property
    def n_obs_steps(self) -> int:
        return 1

    def frame_repr(self, features: torch.Tensor) -> torch.Tensor:
        """Backbone features [B,*F] -> what the head consumes per frame (default: the embedding)."""
        return self.adapter.head(features)

    def predict(self, frames: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """Frame representations [B,T,*R] + normalised state -> normalised action(s)."""
        raise NotImplementedError

    def compute_loss(self, frames: torch.Tensor, state: torch.Tensor | None,
                     batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    # -- normalisation --------------------------------------------------------------------------
    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        return (state - self.state_mean) / self.state_std

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.action_mean) / self.action_std

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return action * self.action_std + self.action_mean

    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    # -- shared stages --------------------------------------------------------------------------
    @property
    def camera_keys(self) -> list[str]:
        """The cameras the policy reads, in the order their representations are joined."""
        return list(self.spec.image_keys)

    def _join_cameras(self, rep: torch.Tensor) -> torch.Tensor:
        """[B,T,C,*R] per-camera representations -> [B,T,C*R0,*R[1:]] (camera order kept)."""
        return rep.flatten(2, 3)

    def encode_cameras(self, images: list[torch.Tensor]) -> torch.Tensor:
        """One image tensor [B,T,H,W,3] per camera of `camera_keys` -> [B,T,C*R0,*R[1:]]: every
        camera through the one adapter in a single call."""
        b, t = images[0].shape[:2]
        for key, img in zip(self.camera_keys, images, strict=True):
            if img.shape[:2] != (b, t):
                raise ValueError(f"camera {key!r} has {tuple(img.shape[:2])} rows x frames, camera "
                                 f"{self.camera_keys[0]!r} has {(b, t)}: give every camera the same rows")
        flat = torch.cat([img.flatten(0, 1) for img in images])  # (C*B*T, H, W, 3)
        rep = self.frame_repr(self.adapter.encode(flat))  # (C*B*T, *R)
        rep = rep.reshape(len(images), b, t, *rep.shape[1:]).movedim(0, 2)  # (B, T, C, *R)
        return self._join_cameras(rep)

    def camera_images(self, batch: dict) -> list[torch.Tensor]:
        """The frames of every trained camera (several cameras); a missing one is a KeyError naming
        the trained and the given keys (another camera is never substituted)."""
        missing = [k for k in self.camera_keys if k not in batch]
        if missing:
            raise KeyError(f"the policy was trained on cameras {self.camera_keys}; the batch lacks {missing} "
                           f"(it holds camera keys {_image_keys(batch)}; all keys {sorted(batch)}). Pass every "
                           "trained camera under its key")
        return [torch.as_tensor(batch[k]) for k in self.camera_keys]

    def frames_from_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-frame representations [B,T,*R] from cached features or raw images (several cameras:
        joined, [B,T,C*R0,*R[1:]])."""
        if len(self.camera_keys) > 1:
            if OBS_FEATURES in batch:
                feats = batch[OBS_FEATURES].to(self.device).float()  # (B, T, C, *F)
                b, t, c = feats.shape[:3]
                if c != len(self.camera_keys):
                    raise ValueError(f"cached features hold {c} cameras, the policy reads {self.camera_keys}")
                rep = self.frame_repr(feats.flatten(0, 2))  # (B*T*C, *R)
                return self._join_cameras(rep.reshape(b, t, c, *rep.shape[1:]))
            images = []
            for img in self.camera_images(batch):
                images.append(img[:, None] if img.ndim == 4 else img)  # (B, T, H, W, 3)
            return self.encode_cameras(images)
        if OBS_FEATURES in batch:
            feats = batch[OBS_FEATURES].to(self.device).float()  # (B, T, *F)
            b, t = feats.shape[:2]
            rep = self.frame_repr(feats.flatten(0, 1))  # (B*T, *R)
        elif _image_keys(batch) or self.spec.image_key in batch:
            img = torch.as_tensor(batch[self.image_key_in(batch)])
            if img.ndim == 4 and img.dtype == torch.uint8:
                img = img[:, None]  # (B, 1, H, W, 3)
            elif img.ndim == 4:
                img = img[:, None]  # (B, 1, 3, H, W)
            b, t = img.shape[:2]
            rep = self.frame_repr(self.adapter.encode(img.flatten(0, 1)))  # (B*T, *R)
        else:
            raise KeyError(f"batch needs {' or '.join(map(repr, self.accepted_image_keys))} (images) or "
                           f"{OBS_FEATURES!r} (cached features); got keys {sorted(batch)}")
        return rep.reshape(b, t, *rep.shape[1:])  # (B, T, *R)

    # -- batch keys -----------------------------------------------------------------------------
    @property
    def accepted_image_keys(self) -> list[str]:
        """The camera key the policy was trained on, and the env's `observation.image`."""
        trained = self.spec.image_key or OBS_IMAGE
        return [trained] + ([OBS_IMAGE] if trained != OBS_IMAGE else [])

    def image_key_in(self, batch: dict) -> str:
        """The batch key holding this policy's camera: its trained key, else `observation.image`
        when that is the batch's only camera. Another camera, or several without the trained one,
        is refused rather than guessed."""
        trained = self.spec.image_key or OBS_IMAGE
        if trained in batch:
            return trained
        given = _image_keys(batch)
        if given == [OBS_IMAGE]:
            return OBS_IMAGE
        if not given:
            raise KeyError(f"the policy reads camera frames from {' or '.join(map(repr, self.accepted_image_keys))}"
                           f"; the batch has neither (keys {sorted(batch)})")
        raise ValueError(f"the policy was trained on camera {trained!r}, which is not in the batch; it holds "
                         f"camera keys {given}. Pass that camera's frames as {trained!r} (or as the only "
                         f"{OBS_IMAGE!r}) rather than another camera")

    def state_key_in(self, batch: dict) -> str:
        """The batch key holding the state: the trained key, else `observation.state`."""
        keys = [self.spec.state_key or OBS_STATE] + ([OBS_STATE] if self.spec.state_key not in (None, OBS_STATE)
                                                     else [])
        for k in keys:
            if k in batch:
                return k
        raise KeyError(f"this policy uses proprioception: the batch needs {' or '.join(map(repr, keys))} "
                       f"[B,{self.spec.state_dim}]; got keys {sorted(batch)}")

    def state_from_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if self.spec.state_dim == 0 or not getattr(self.config, "use_state", True):
            return None
        state = torch.as_tensor(batch[self.state_key_in(batch)], dtype=torch.float32, device=self.device)
        if state.ndim == 3:  # (B, T, S): use the latest step
            state = state[:, -1]
        if state.shape[-1] != self.spec.state_dim:
            raise ValueError(f"state has {state.shape[-1]} dims, the policy was trained with {self.spec.state_dim}")
        return self.normalize_state(state)

    # -- policy API -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the frame history of every row (call at the start of each round of episodes)."""
        self._history = None

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        frames = self.frames_from_batch(batch)
        return self.compute_loss(frames, self.state_from_batch(batch), batch)

    def _update_history(self, rep: torch.Tensor) -> torch.Tensor:
        t = self.n_obs_steps
        if self._history is None or self._history.shape[0] != rep.shape[0]:
            self._history = rep[:, None].expand(-1, t, *rep.shape[1:]).clone()  # pad with the first frame
        else:
            self._history = torch.cat([self._history[:, 1:], rep[:, None]], dim=1)
        return self._history  # (B, T, *R)

    @torch.no_grad()
    def select_action(self, batch: dict[str, Any]) -> torch.Tensor:
        """One action per row [B,A] (env units) from the current observation batch."""
        was_training = self.training
        self.eval()
        try:
            if len(self.camera_keys) > 1:
                imgs = [img[None] if img.ndim == 3 else img for img in self.camera_images(batch)]
                if len({img.ndim for img in imgs}) > 1:
                    raise ValueError(f"cameras {self.camera_keys} mix stacked and single frames: "
                                     f"{[tuple(i.shape) for i in imgs]}")
                img = imgs[0]
            else:
                img = torch.as_tensor(batch[self.image_key_in(batch)])
                if img.ndim == 3:
                    img = img[None]
                imgs = [img]
            if len(imgs) > 1:
                rep = self.encode_cameras([i if i.ndim == 5 else i[:, None] for i in imgs])  # (B, T, C*R)
                if img.ndim == 5:
                    rep = rep[:, -self.n_obs_steps:]
                    if rep.shape[1] < self.n_obs_steps:
                        pad = rep[:, :1].expand(-1, self.n_obs_steps - rep.shape[1], *rep.shape[2:])
                        rep = torch.cat([pad, rep], dim=1)
                    frames = self._history = rep
                else:
                    frames = self._update_history(rep[:, 0])
            elif img.ndim == 5:  # (B, T, H, W, 3) stacked by the env: keep the last frames
                b, t = img.shape[:2]
                rep = self.frame_repr(self.adapter.encode(img.flatten(0, 1)))
                rep = rep.reshape(b, t, *rep.shape[1:])[:, -self.n_obs_steps:]
                if rep.shape[1] < self.n_obs_steps:
                    pad = rep[:, :1].expand(-1, self.n_obs_steps - rep.shape[1], *rep.shape[2:])
                    rep = torch.cat([pad, rep], dim=1)
                frames = self._history = rep
            else:
                frames = self._update_history(self.frame_repr(self.adapter.encode(img)))
            state = self.state_from_batch({k: v[None] if torch.as_tensor(v).ndim == 1 else v
                                           for k, v in batch.items() if k in (OBS_STATE, self.spec.state_key)})
            if state is not None and state.shape[0] != frames.shape[0]:
                raise ValueError(f"select_action got {frames.shape[0]} image row(s) but {state.shape[0]} state "
                                 "row(s): one observation per row")
            return self.act(frames, state)
        finally:
            self.train(was_training)

    def act(self, frames: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """Normalised prediction -> env action [B,A] (subclasses may queue chunks)."""
        return self.unnormalize_action(self.predict(frames, state))

    # -- description ----------------------------------------------------------------------------
    def describe(self) -> dict:
        return {"policy_type": self.policy_type, "policy_config": dataclasses.asdict(self.config),
                "encoder": self.adapter.reference(), "spec": dataclasses.asdict(self.spec)}
