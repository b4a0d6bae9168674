"""Hydra config root of `python -m pixio_robot.probe`."""
