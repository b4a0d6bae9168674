"""The SB3 agents of `python -m pixio_robot.rl`: PPO / SAC with `PixioFeaturesExtractor` on
pixels, or an MLP on states; building, describing and loading them.

SAC's pixel policy is SB3's own `MultiInputPolicy`, subclassed twice over:
- its critics list only trainable parameters (`TrainableParamsCritic`), so SAC's target update
  (`polyak_update(critic.parameters(), critic_target.parameters(), tau)`) leaves a frozen encoder's
  target copy bit-identical to the online one. Averaging it anyway drifted ~5% of the copy's weights
  by up to 2.4e-7 (rounding; measured) and cost a pass over the encoder per gradient step.
- its extractors share one `FrozenFeatureCache` for the policy's lifetime: one gradient step hands
  the same replay batch to the frozen encoder five times; the cache makes that two passes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.sac.policies import MultiInputPolicy as SACMultiInputPolicy

from pixio_robot.policies.sb3_extractor import FrozenFeatureCache, PixioFeaturesExtractor
from pixio_robot.rl.config import PIXEL_MODES, RLConfig
from pixio_robot.utils.logging import get_logger

log = get_logger("pixio_robot.rl")
# Replay buffers hold uint8 frames; 1M of them (SB3's default) would not fit in memory.
PIXEL_SAC_DEFAULTS = {"buffer_size": 50_000, "learning_starts": 1_000}
# an encoder run at this many times the frame's side (or more) gets a warning (4x the tokens)
UPSAMPLE_WARN = 2


class TrainableParamsCritic(ContinuousCritic):
    """SB3's `ContinuousCritic` whose `parameters()` leaves out frozen ones (requires_grad=False):
    what SAC's optimizer and its target update iterate over. `state_dict` is unchanged."""

    def parameters(self, recurse: bool = True):
        return (p for p in super().parameters(recurse) if p.requires_grad)


class PixioSACPolicy(SACMultiInputPolicy):
    """SB3's SAC `MultiInputPolicy` with `TrainableParamsCritic` critics and one frozen-feature
    cache shared by its extractors (actor, critic, target critic)."""

    def make_critic(self, features_extractor=None) -> ContinuousCritic:
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return TrainableParamsCritic(**kwargs).to(self.device)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        cache = FrozenFeatureCache()
        for m in self.modules():
            if isinstance(m, PixioFeaturesExtractor):
                m.feature_cache = cache


def _bad_kwargs(cfg: RLConfig, e: BaseException) -> ValueError:
    msg = str(e).strip() or type(e).__name__
    return ValueError(f"bad algo_kwargs for {cfg.algo.upper()} ({type(e).__name__}: {msg}); "
                      f"algo_kwargs={cfg.algo_kwargs} (the {cfg.algo.upper()} constructor's keyword arguments)")


def _policy_kwargs(cfg: RLConfig, kwargs: dict) -> tuple[Any, dict, dict]:
    """(policy, policy_kwargs, algorithm kwargs) for cfg; user policy_kwargs are merged, not replaced."""
    policy_kwargs: dict[str, Any] = dict(kwargs.pop("policy_kwargs", {}) or {})
    if cfg.net_arch is not None:
        policy_kwargs["net_arch"] = list(cfg.net_arch)
    if cfg.obs == "state":
        return "MlpPolicy", policy_kwargs, kwargs
    if policy_kwargs.get("normalize_images", True) is False:
        raise ValueError("policy_kwargs.normalize_images=false would hand the Pixio adapter frames in 0..255 "
                         "(it expects [0,1] and normalises them itself): drop the override")
    cls = policy_kwargs.get("features_extractor_class", PixioFeaturesExtractor)
    if cls not in (PixioFeaturesExtractor, None) and cls != "PixioFeaturesExtractor":
        raise ValueError(f"policy_kwargs.features_extractor_class={cls!r}: obs={cfg.obs} uses "
                         "PixioFeaturesExtractor (use obs=state for a plain MLP)")
    user = dict(policy_kwargs.get("features_extractor_kwargs", {}) or {})
    want_state = "state" if cfg.obs == "pixels_state" else None
    if "state_key" in user and user["state_key"] != want_state:
        raise ValueError(f"policy_kwargs.features_extractor_kwargs.state_key={user['state_key']!r} contradicts "
                         f"obs={cfg.obs}: use obs=pixels (frames only) or obs=pixels_state (frames + state)")
    encoder = {**cfg.encoder.to_dict(), **dict(user.pop("encoder", {}) or {})}
    policy_kwargs.update(features_extractor_class=PixioFeaturesExtractor,
                         features_extractor_kwargs={**user, "encoder": encoder, "state_key": want_state})
    share = cfg.share_features_extractor
    if share is None:
        share = policy_kwargs.get("share_features_extractor",
                                  cfg.encoder.mode == "frozen" if cfg.algo == "sac" else True)
    policy_kwargs["share_features_extractor"] = bool(share)
    if cfg.algo == "sac":
        return PixioSACPolicy, policy_kwargs, {**PIXEL_SAC_DEFAULTS, **kwargs}
    return "MultiInputPolicy", policy_kwargs, kwargs


def algo_class(algo: str):
    """The SB3 class of `algo`."""
    import stable_baselines3 as sb3

    return sb3.PPO if algo == "ppo" else sb3.SAC


def build_agent(cfg: RLConfig, env, device: torch.device, tensorboard_log: str | None = None):
    """PPO / SAC with the Pixio extractor (obs=pixels|pixels_state) or an MLP (obs=state)."""
    policy, policy_kwargs, kwargs = _policy_kwargs(cfg, dict(cfg.algo_kwargs))
    try:
        model = algo_class(cfg.algo)(policy, env, policy_kwargs=policy_kwargs, seed=cfg.seed, device=device,
                                     tensorboard_log=tensorboard_log, verbose=0, **kwargs)
    except (TypeError, AssertionError, ValueError) as e:
        raise _bad_kwargs(cfg, e) from e
    if cfg.algo == "ppo" and cfg.total_timesteps < model.n_steps * model.n_envs:
        log.warning("rl: total_timesteps=%d is less than one PPO rollout (n_steps %d x %d envs): SB3 will run %d; "
                    "lower it with +algo_kwargs.n_steps=...", cfg.total_timesteps, model.n_steps, model.n_envs,
                    model.n_steps * model.n_envs)
    # PPO's orthogonal init re-draws every Linear / Conv of the extractor, the Pixio backbone too:
    # give the backbone back its pretrained (or seeded) weights; the heads keep SB3's init
    restored = [m.restore_encoder() for m in model.policy.modules() if isinstance(m, PixioFeaturesExtractor)]
    if any(restored):
        log.info("rl: restored the encoder weights that %s's init had overwritten", cfg.algo.upper())
    return model


def extractor_of(model) -> PixioFeaturesExtractor | None:
    return getattr(model.policy, "features_extractor", None) or \
        getattr(getattr(model.policy, "actor", None), "features_extractor", None)


def describe_observation(cfg: RLConfig, model) -> dict:
    """What the agent's policy gets as input: pixels shape, state dims, feature dims."""
    space = model.observation_space
    if cfg.obs == "state":
        dim = int(np.prod(space.shape))
        return {"obs": "state", "pixels": None, "state_dim": dim, "features_dim": dim,
                "text": f"the state vector only ({dim} dims), no pixels"}
    ext = extractor_of(model)
    pix = [cfg.image_size, cfg.image_size, 3]  # what the env renders (SB3 may hand it over channels-first)
    state_dim = int(np.prod(space["state"].shape)) if ext.state_key is not None else 0
    frames = f"{ext.n_frames} frame(s) of {cfg.image_size}x{cfg.image_size} RGB"
    text = (f"pixels ({frames}) -> {ext.n_frames * ext.adapter.out_dim} Pixio features "
            f"({ext.adapter.out_dim} per frame at {ext.adapter.image_size} px)")
    text += f" + the env's state vector ({state_dim} dims)" if state_dim else ", no state vector"
    return {"obs": cfg.obs, "pixels": pix, "state_dim": state_dim, "features_dim": int(ext.features_dim),
            "text": f"{text} = {ext.features_dim}-d policy input"}


def warn_upsampling(cfg: RLConfig, model) -> None:
    if cfg.obs == "state":
        return
    ad = extractor_of(model).adapter
    if ad.image_size >= UPSAMPLE_WARN * cfg.image_size:
        log.warning("rl: %d px frames are upsampled to the encoder's %d px input: %.0fx the tokens (and compute) "
                    "for no extra detail; set encoder.image_size=%d (a multiple of the patch size) or render larger "
                    "frames with image_size=", cfg.image_size, ad.image_size, (ad.image_size / cfg.image_size) ** 2,
                    cfg.image_size)


def agent_meta(cfg: RLConfig, model) -> dict:
    meta = {"format": "pixio_robot.rl_agent", "algo": cfg.algo, "env": cfg.env, "obs": cfg.obs,
            "image_size": cfg.image_size, "camera": cfg.camera, "frame_stack": cfg.frame_stack,
            "action_repeat": cfg.action_repeat, "config": dataclasses.asdict(cfg)}
    if cfg.obs in PIXEL_MODES:
        meta["encoder"] = extractor_of(model).adapter.reference()
    return meta


class SB3Actor:
    """An SB3 agent behind the Policy API that `pixio_robot.evaluation.evaluate_policy` drives
    (`reset()`, `select_action(batch) -> [B, A]`): the batch's `observation.image` /
    `observation.state` become the observation the agent was trained on (`obs=`), and SB3's
    `predict` (deterministic) picks the actions. One rollout loop for RL and imitation alike."""

    def __init__(self, model, obs: str) -> None:
        self.model, self.obs = model, obs

    def reset(self) -> None:
        """SB3's MLP / CNN policies keep no state between steps."""

    def select_action(self, batch: dict) -> torch.Tensor:
        from lerobot.utils.constants import OBS_IMAGE, OBS_STATE

        state = batch.get(OBS_STATE)
        state = None if state is None else state.cpu().numpy()
        if self.obs == "state":
            obs: Any = state
        else:
            obs = {"pixels": batch[OBS_IMAGE].cpu().numpy()}
            if self.obs == "pixels_state":
                obs["state"] = state
        action, _ = self.model.predict(obs, deterministic=True)
        return torch.as_tensor(np.asarray(action, dtype=np.float32))


def load_agent(path: str | Path, device: str = "cpu"):
    """Load a saved agent: a run directory (model.zip + agent.json), its `best/` directory
    (best_model.zip), or a `.zip` file (model, best model or checkpoint)."""
    import stable_baselines3 as sb3
    import yaml

    from pixio_robot.utils.io import clean_torch_error

    path = Path(path)
    if path.is_dir():
        cands = [path / "model.zip", path / "best_model.zip"]
        zip_path = next((p for p in cands if p.exists()), cands[0])
    else:
        zip_path = path
    if not zip_path.exists():
        raise FileNotFoundError(f"no SB3 agent at {zip_path} (expected a python -m pixio_robot.rl run directory, "
                                "its best/ directory or a .zip)")
    algo = None
    for meta_path in (zip_path.parent / "agent.json", zip_path.parent.parent / "agent.json",
                      zip_path.parent.parent / "config.yaml"):
        if meta_path.is_file():
            algo = (yaml.safe_load(meta_path.read_text()) or {}).get("algo")
            if algo:
                break
    if algo is None:
        from pixio_robot.envs.experts import sb3_algo_of

        algo = sb3_algo_of(zip_path)
    try:
        return getattr(sb3, str(algo).upper()).load(str(zip_path), device=device)
    except Exception as e:
        raise clean_torch_error(e, zip_path) from None


__all__ = ["PIXEL_SAC_DEFAULTS", "PixioSACPolicy", "SB3Actor", "TrainableParamsCritic", "agent_meta", "algo_class",
           "build_agent", "describe_observation", "extractor_of", "load_agent", "warn_upsampling"]
