# Everything installs from nothing: `make test` and `make demo` build the venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch/torchvision are pinned in setup.cfg; pip takes them from this machine's local wheels.
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

# The main job, on the embedded default: `c2f demo` generates the demo videos
# (data_manifests/demo), fine-tunes the demo's ResNet-18, extracts the coarse, fine, glance and
# patch-grid features, trains uniform, lstm, liteeval and adafocus, evaluates online and writes the
# report. It prints each step as the c2f command it runs. About 8 minutes on a 2-core CPU.
demo: $(STAMP)
	$(BIN)/c2f demo --data data_manifests/demo --out demo_out

clean:
	rm -rf $(VENV) demo_out data_manifests/demo/videos
