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

demo: $(STAMP)
	$(BIN)/c2f manifest folder --root ../shared/videos --split train --out demo_out/shared_videos.csv
	$(BIN)/c2f extract --manifest demo_out/shared_videos.csv --out demo_out/cache \
		--backbone mobilenet_v2@112 --backbone resnet101@224 --backbone resnet50@224-grid7x128 \
		--weights random --fps 1
	$(BIN)/c2f flops

clean:
	rm -rf $(VENV) demo_out
