"""pixio_robot: Pixio (pixel-supervised MAE) pretraining and robot policies on a Pixio backbone."""

__version__ = "0.1.0"

from pixio_robot import _timm_hook  # noqa: E402

_timm_hook.install()  # timm.create_model("pixio_vitb16") after `import pixio_robot`, import stays instant
