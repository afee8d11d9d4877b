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

# Until the embedded synthetic dataset lands, the demo extracts the shared sample clips
# (../shared/videos) with the coarse, fine and patch-grid feature sets. Random weights: no
# pretrained file can be downloaded here (see README, "Weights").
demo: $(STAMP)
	$(BIN)/c2f manifest check data_manifests/shared_videos.csv
	$(BIN)/c2f extract --manifest data_manifests/shared_videos.csv --out demo_out/cache \
		--backbone mobilenet_v2@112 --backbone resnet101@224 --backbone resnet50@224-grid7x128 \
		--weights random --fps 1
	$(BIN)/c2f flops
	@echo "cache written to demo_out/cache (index.json and shards per feature set)"

clean:
	rm -rf $(VENV) demo_out
