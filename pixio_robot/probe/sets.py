"""Probe sets: frames rendered from the bundled MetaWorld scenes with the simulator's own truth.

Per kept frame (every `every`-th step of noisy scripted-expert episodes):
- `rgb`    (H, W, 3) uint8, MuJoCo's renderer with the env's camera and fast quality;
- `depth`  (H, W) float32 metres, MuJoCo's depth rendering (`Renderer.enable_depth_rendering`);
- `seg`    (H, W) uint8 classes from MuJoCo's segmentation rendering (geom ids -> 0 scene /
           background, 1 robot (the subtree rooted where the `hand` body is), 2 task objects (any
           other root subtree with a joint: the drawer, the button, a free object));
- state from `MjData`, not the policy's observation: `hand` (3) = the hand body's world position,
  `objects` = the env's object positions (`_get_pos_objects`), `joints` (7) = the arm's joint
  angles `right_j0..6`.
Episodes are the split unit (`episode` per frame). Sets are cached under
`~/.cache/pixio_robot/probe_sets/<key>/<task>.npz`, keyed by everything that decides them, written
atomically under a lock (parallel probe jobs render a set once).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pixio_robot.utils.io import atomic_save_file, file_lock
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)
VERSION = 1
SEG_CLASSES = ("scene", "robot", "object")
ARM_JOINTS = tuple(f"right_j{i}" for i in range(7))


def default_root() -> Path:
    return Path("~/.cache/pixio_robot/probe_sets").expanduser()


def set_key(tasks: list[str], episodes: int, steps: int, every: int, size: int, camera: str, noise: float,
            seed: int) -> str:
    spec = json.dumps({"v": VERSION, "tasks": sorted(tasks), "episodes": episodes, "steps": steps, "every": every,
                       "size": size, "camera": camera, "noise": noise, "seed": seed}, sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def segmentation_classes(model) -> np.ndarray:
    """Per geom id -> class (0 scene, 1 robot, 2 object), from the model's body tree."""
    root = np.asarray(model.body_rootid)
    robot_root = int(root[model.body("hand").id])
    has_joint = np.zeros(model.nbody, bool)
    for j in range(model.njnt):
        has_joint[root[model.jnt_bodyid[j]]] = True
    cls = np.zeros(model.ngeom, np.uint8)
    for g in range(model.ngeom):
        r = int(root[model.geom_bodyid[g]])
        cls[g] = 1 if r == robot_root else (2 if r != 0 and has_joint[r] and model.body(r).name != "mocap" else 0)
    return cls


class _Renders:
    """RGB, depth and segmentation of one camera with one MuJoCo renderer."""

    def __init__(self, model, size: int, camera: str) -> None:
        import mujoco

        self.r = mujoco.Renderer(model, size, size)
        self.camera = camera
        self.flip = camera.startswith("corner")  # MetaWorld's corner cameras render upside down
        self.geom_class = segmentation_classes(model)

    def __call__(self, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import mujoco

        r = self.r
        r.update_scene(data, camera=self.camera)
        rgb = r.render().copy()
        r.enable_depth_rendering()
        r.update_scene(data, camera=self.camera)
        depth = r.render().astype(np.float32)
        r.disable_depth_rendering()
        r.enable_segmentation_rendering()
        r.update_scene(data, camera=self.camera)
        ids = r.render()
        r.disable_segmentation_rendering()
        is_geom = (ids[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)) & (ids[..., 0] >= 0)
        seg = np.where(is_geom, self.geom_class[np.clip(ids[..., 0], 0, None)], 0).astype(np.uint8)
        if self.flip:
            rgb, depth, seg = rgb[::-1, ::-1], depth[::-1, ::-1], seg[::-1, ::-1]
        return np.ascontiguousarray(rgb), np.ascontiguousarray(depth), np.ascontiguousarray(seg)

    def close(self) -> None:
        self.r.close()


def render_task(task: str, episodes: int, steps: int, every: int, size: int, camera: str, noise: float,
                seed: int, progress: bool = False) -> dict[str, np.ndarray]:
    """Roll noisy scripted-expert episodes of a MetaWorld task and keep every `every`-th frame."""
    from tqdm import tqdm

    from pixio_robot.envs.experts import MetaWorldExpert
    from pixio_robot.envs.metaworld_env import MetaWorldEnv
    from pixio_robot.envs.rendering import no_gc_finalizers, setup_gl

    setup_gl()
    env = MetaWorldEnv(task, size, camera=camera, pixels=False, seed=seed)
    expert = MetaWorldExpert(task, noise=noise, seed=seed)
    renders = _Renders(env.model, size, camera)
    joint_ids = [env.model.joint(n).qposadr[0] for n in ARM_JOINTS]
    out: dict[str, list] = {k: [] for k in ("rgb", "depth", "seg", "hand", "objects", "joints", "episode")}
    try:
        for ep in tqdm(range(episodes), desc=f"probe set {task}", disable=not progress, unit="ep"):
            obs, info = env.reset(seed=seed * 1000 + ep)
            for t in range(steps):
                if t % every == 0:
                    with no_gc_finalizers():
                        rgb, depth, seg = renders(env.data)
                    out["rgb"].append(rgb)
                    out["depth"].append(depth)
                    out["seg"].append(seg)
                    out["hand"].append(np.asarray(env.data.body("hand").xpos, np.float32).copy())
                    out["objects"].append(np.asarray(env.raw_env._get_pos_objects(), np.float32).copy())
                    out["joints"].append(np.asarray(env.data.qpos[joint_ids], np.float32).copy())
                    out["episode"].append(ep)
                obs, _, _, _, info = env.step(expert.act(obs, info))
    finally:
        renders.close()
        env.close()
    return {k: np.stack(v) for k, v in out.items()}


def ensure_set(tasks: list[str], *, episodes: int, steps: int, every: int, size: int, camera: str,
               noise: float, seed: int, root: str | Path | None = None, progress: bool = True) -> Path:
    """Render (once) and cache the probe set; return its directory."""
    directory = Path(root or default_root()).expanduser() / set_key(tasks, episodes, steps, every, size, camera,
                                                                      noise, seed)
    with file_lock(directory.parent / f"{directory.name}.lock"):
        for task in tasks:
            path = directory / f"{task}.npz"
            if path.is_file():
                continue
            log.info("rendering probe set %s: %d episodes x %d steps, every %d, %d px (once; cached in %s)",
                     task, episodes, steps, every, size, directory)
            arrays = render_task(task, episodes, steps, every, size, camera, noise, seed, progress)
            directory.mkdir(parents=True, exist_ok=True)
            atomic_save_file(path, lambda p, a=arrays: _savez(p, a))
    return directory


def _savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_set(directory: str | Path, task: str) -> dict[str, np.ndarray]:
    with np.load(Path(directory) / f"{task}.npz") as z:
        return {k: z[k] for k in z.files}
