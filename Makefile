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
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_STORAGE)/compression-demo
	$(BIN)/sweeplab run sweeps/compression-single-gamma-smoke.yaml --set storage=$(DEMO_STORAGE) name=compression-demo
	$(BIN)/sweeplab results $(DEMO_STORAGE)/compression-demo --sql "SELECT trial_id, codec, quantization, gamma, \
	  round(psnr, 2) AS psnr_db, round(bpp, 3) AS bpp, round(bpp_coded, 3) AS bpp_coded, round(gmacs, 2) AS gmacs \
	  FROM trials ORDER BY trial_id"
	$(BIN)/sweeplab plot $(DEMO_STORAGE)/compression-demo --out $(DEMO_STORAGE)/compression-demo.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) results build *.egg-info
