# `make demo` and `make test` create .venv in the repo root when it is missing and install the project into it.
# TORCH pins the CPU wheel that lies on this machine's disk; on a GPU machine use e.g. `make demo TORCH=torch`
# (the package itself asks for any torch>=2.3).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sweeplab-installed
DEMO_STORAGE := results/demo

.PHONY: demo test bench clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,hevc]"  # hevc: GPL x265 (pyproject.toml)
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_STORAGE)/segmentation-demo
	$(BIN)/sweeplab run sweeps/segmentation-demo.yaml --set storage=$(DEMO_STORAGE)
	$(BIN)/sweeplab results $(DEMO_STORAGE)/segmentation-demo --sql "SELECT method, M, lr, alpha, k_1 AS k, threshold, \
	  round(f_measure, 3) AS f_measure, round(ap50, 3) AS ap50, round(ap70, 3) AS ap70, \
	  round(train_seconds, 1) AS seconds FROM trials ORDER BY method, alpha, threshold"
	$(BIN)/sweeplab plot $(DEMO_STORAGE)/segmentation-demo --out $(DEMO_STORAGE)/segmentation-demo.png
	$(BIN)/sweeplab report $(DEMO_STORAGE)/segmentation-demo
	@echo "browse the sweep: $(BIN)/sweeplab dashboard $(DEMO_STORAGE)/segmentation-demo  (http://127.0.0.1:8080)"
	@echo "the sweep beside the paper: open $(DEMO_STORAGE)/segmentation-demo/results/report.html (or its .md twin);"
	@echo "  rewrite it with: $(BIN)/sweeplab report $(DEMO_STORAGE)/segmentation-demo"

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/overhead.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) results build *.egg-info
