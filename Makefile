# The README's commands. Every target sets up first (idempotent, seconds when done).
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
export MUJOCO_GL ?= egl

.PHONY: setup quickstart pretrain test test-fast lint bench
setup:
	@bash scripts/setup.sh

quickstart: setup
	$(PY) -m pixio_robot.quickstart

pretrain: setup
	$(PY) -m pixio_robot.pretrain

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not distributed"

lint: setup
	$(PY) -m ruff check pixio_robot tests benchmarks plugins

bench: setup
	$(PY) benchmarks/bench_train_step.py
	$(PY) benchmarks/plan_pretrain.py
	$(PY) benchmarks/bench_pretrain_data.py
	$(PY) benchmarks/bench_pretrain_train.py
	$(PY) benchmarks/bench_feature_cache.py
	$(PY) benchmarks/bench_envs.py
	$(PY) benchmarks/bench_evaluation.py
	$(PY) benchmarks/bench_rl_frozen.py --repeats 1
	$(PY) benchmarks/bench_lerobot_policies.py --repeats 1
	$(PY) benchmarks/bench_lerobot_eval.py --repeats 1
