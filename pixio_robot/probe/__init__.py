"""`python -m pixio_robot.probe`: frozen-feature probes against simulator ground truth (object /
hand state, depth, segmentation) for several encoders: fast, low-variance, beside rollouts."""
