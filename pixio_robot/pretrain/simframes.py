"""The built-in pretraining corpus: frames rendered from the bundled simulators, cached once.

Scenes: gymnasium MuJoCo tasks (random actions, a free camera at a random azimuth / elevation /
distance per episode) and MetaWorld v3 tasks (the scripted expert with action noise, or random
actions; a random named camera per episode), so arms and objects move and views vary.
Rendering uses MuJoCo's fast settings (no shadows, no multisampling: 10-60x faster on CPU).

The corpus lives in `~/.cache/pixio_robot/sim_frames/<key>/` (`frames.npy` uint8 [N,S,S,3] and
`meta.json` with one id per frame); `<key>` hashes every setting that changes the frames, so a
changed setting renders a new corpus and an unchanged one is reused instantly.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from pixio_robot.utils.io import atomic_path, save_json
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)
CORPUS_VERSION = 2  # 2: reflections off (envs.rendering.apply_quality)
MW_CAMERAS = ("topview", "corner", "corner2", "corner3", "behindGripper")


def default_cache_root() -> Path:
    return Path(os.environ.get("PIXIO_CACHE", Path.home() / ".cache" / "pixio_robot")) / "sim_frames"


def corpus_key(envs: list[str], frames: int, size: int, frame_every: int, seed: int) -> str:
    blob = json.dumps([CORPUS_VERSION, list(envs), frames, size, frame_every, seed])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _setup_gl() -> None:
    try:  # the envs package owns GL set-up when present
        from pixio_robot.envs.rendering import setup_gl

        setup_gl()
    except ImportError:
        os.environ.setdefault("MUJOCO_GL", "egl")


class _Scene:
    """One simulator scene that yields frames of `size` px for a number of steps."""

    def __init__(self, name: str, size: int, rng: np.random.Generator) -> None:
        import gymnasium as gym

        self.name, self.rng, self.size = name, rng, size
        family, _, task = name.partition("/")
        self.metaworld = family == "metaworld"
        if self.metaworld:
            import metaworld  # noqa: F401  (registers Meta-World/MT1)
            from metaworld.policies import ENV_POLICY_MAP

            self.env = gym.make("Meta-World/MT1", env_name=task, render_mode="rgb_array", width=size,
                                height=size, seed=int(rng.integers(1 << 30)), disable_env_checker=True)
            self.expert = ENV_POLICY_MAP[task]() if task in ENV_POLICY_MAP else None
        elif family == "gym":
            self.env = gym.make(task, render_mode="rgb_array", width=size, height=size, disable_env_checker=True)
            self.expert = None
        else:
            raise ValueError(f"sim corpus env {name!r}: use 'gym/<Id>' or 'metaworld/<task>-v3'")
        from pixio_robot.envs.rendering import apply_quality

        apply_quality(self.env.unwrapped.model, "fast")

    def episode(self, steps: int, every: int):
        """Yield (step, camera name, frame uint8 [S,S,3]) for one episode."""
        env, rng = self.env, self.rng
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        use_expert = self.expert is not None and rng.random() < 0.7
        noise = float(rng.uniform(0.05, 0.5))
        if self.metaworld:
            import mujoco

            u = env.unwrapped
            mujoco.mj_forward(u.model, u.data)  # the first frame after reset can be stale
            cam = MW_CAMERAS[int(rng.integers(len(MW_CAMERAS)))]
            u.mujoco_renderer.camera_id = u.model.camera(cam).id
        else:
            cam = "free"
        for t in range(steps):
            if use_expert:
                action = self.expert.get_action(obs) + rng.normal(0, noise, env.action_space.shape)
                action = np.clip(action, env.action_space.low, env.action_space.high)
            else:
                action = rng.uniform(env.action_space.low, env.action_space.high)
            obs, _, terminated, truncated, _ = env.step(action.astype(np.float32))
            if t == 0 and not self.metaworld:
                self._random_free_camera()
            if t % every == 0:
                frame = env.render()
                if cam.startswith("corner"):
                    frame = frame[::-1, ::-1]  # these cameras render upside down: rotate 180 degrees
                yield t, cam, np.ascontiguousarray(frame)
            if terminated or truncated:
                return

    def _random_free_camera(self) -> None:
        self.env.render()  # builds the viewer
        viewer = self.env.unwrapped.mujoco_renderer._get_viewer("rgb_array")
        viewer.cam.azimuth = float(self.rng.uniform(0, 360))
        viewer.cam.elevation = float(self.rng.uniform(-60, -15))
        viewer.cam.distance = float(self.rng.uniform(1.2, 2.5))

    def close(self) -> None:
        self.env.close()


def render_corpus(directory: Path, envs: list[str], frames: int, size: int, frame_every: int,
                  seed: int, progress: bool = True) -> None:
    """Render `frames` frames spread evenly over `envs` into `directory` (atomic per file)."""
    _setup_gl()
    from tqdm import tqdm

    directory.mkdir(parents=True, exist_ok=True)
    per_env = [frames // len(envs) + (i < frames % len(envs)) for i in range(len(envs))]
    ids: list[str] = []
    t0 = time.time()
    with atomic_path(directory / "frames.npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(frames, size, size, 3))
        bar = tqdm(total=frames, desc="rendering sim corpus", disable=not progress, unit="frame")
        for i, (name, quota) in enumerate(zip(envs, per_env)):
            rng = np.random.default_rng([seed, i])
            scene = _Scene(name, size, rng)
            n, ep = 0, 0
            while n < quota:
                for t, cam, frame in scene.episode(steps=int(rng.integers(60, 150)), every=frame_every):
                    if n >= quota:
                        break
                    out[len(ids)] = frame
                    ids.append(f"{name}/ep{ep}/t{t}/{cam}")
                    n += 1
                    bar.update()
                ep += 1
            scene.close()
        bar.close()
        out.flush()
        del out
    save_json(directory / "meta.json", {"ids": ids, "envs": envs, "size": size, "seed": seed,
                                        "version": CORPUS_VERSION, "seconds": round(time.time() - t0, 1)})
    log.info("rendered %d sim frames in %.0f s -> %s", frames, time.time() - t0, directory)


def ensure_corpus(envs: list[str], frames: int, size: int, frame_every: int = 3, seed: int = 0,
                  cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Return the corpus directory, rendering it first if it is not cached yet.

    Safe when several processes call it at once (one renders under a file lock, the others wait)."""
    if frames < 1 or not envs:
        raise ValueError("the sim corpus needs frames >= 1 and at least one env")
    root = Path(cache_dir) if cache_dir else default_cache_root()
    directory = root / corpus_key(envs, frames, size, frame_every, seed)
    if (directory / "meta.json").exists():
        return directory
    root.mkdir(parents=True, exist_ok=True)
    # One process renders, the others wait; flock is released even when the holder is killed.
    with open(root / f"{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "meta.json").exists():
            render_corpus(directory, envs, frames, size, frame_every, seed, progress)
    return directory


def load_corpus(directory: Path) -> tuple[np.ndarray, list[str]]:
    """Memory-map the frames (uint8 [N,S,S,3]) and read their ids."""
    meta = json.loads((directory / "meta.json").read_text())
    return np.load(directory / "frames.npy", mmap_mode="r"), meta["ids"]
