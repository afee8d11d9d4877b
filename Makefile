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

# The main job, on what this repository can run anywhere: phase one on the sample clips of
# ../shared/videos (random weights: nothing can be downloaded here), then phase two and the report
# on synthetic feature caches with a known answer (c2f synthetic-cache), until the embedded
# synthetic video dataset lands. About 5 minutes on a 2-core CPU.
LITE := demo_out/synthetic_liteeval
FOCUS := demo_out/synthetic_adafocus
LITE_ARGS := --manifest $(LITE)/manifest.csv --cache $(LITE)/cache --frames 24 --coarse-hidden 16 \
	--fine-hidden 64 --epochs 15 --lr 3e-3 --batch-size 32 --overwrite --no-progress

demo: $(STAMP)
	$(BIN)/c2f manifest check data_manifests/shared_videos.csv
	$(BIN)/c2f extract --manifest data_manifests/shared_videos.csv --out demo_out/cache \
		--backbone mobilenet_v2@112 --backbone resnet101@224 --backbone resnet50@224-grid7x128 \
		--weights random --fps 1
	$(BIN)/c2f synthetic-cache --kind liteeval --out $(LITE) --overwrite
	for method in uniform lstm liteeval; do \
		$(BIN)/c2f train-head --method $$method $(LITE_ARGS) --out demo_out/runs/$$method || exit 1; done
	$(BIN)/c2f evaluate-online --run demo_out/runs/liteeval --budget 1 --budget 2 --budget 3 \
		--uniform-run demo_out/runs/uniform --no-progress
	$(BIN)/c2f synthetic-cache --kind adafocus --out $(FOCUS) --train-videos 400 --val-videos 150 --overwrite
	$(BIN)/c2f train-head --method adafocus --manifest $(FOCUS)/manifest.csv --cache $(FOCUS)/cache \
		--focus resnet50@224-grid5x128 --adafocus-hidden 64 --batch-size 32 --stage-epochs 30,30,10 \
		--stage-lrs 0.1,0.01,0.01 --out demo_out/runs/adafocus --overwrite --no-progress
	$(BIN)/c2f report --runs demo_out/runs --out demo_out/report
	@echo "phase one: demo_out/cache; runs: demo_out/runs; report: demo_out/report/report.md"

clean:
	rm -rf $(VENV) demo_out
