# The two set-up commands: `make demo` and `make test`. Each creates .venv on first use.
DEMO_MODEL ?= fixed-gaussian
EVAL_MODELS ?= fixed-gaussian
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test eval testsets weights latency clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mkn estimate assets/sample_lr.png --sf 2 --model $(DEMO_MODEL) \
	    --truth assets/sample_kernel.npy --out out/demo --show

test: $(STAMP)
	$(BIN)/python -m pytest -q

testsets: $(STAMP)
	test -d testsets/sf4 || $(BIN)/mkn make-testset --sf 2 3 4 --out testsets

eval: testsets
	$(BIN)/mkn eval --testset testsets --sf 2 3 4 --models $(EVAL_MODELS) --json results/eval_kernels.json --quiet

# Reproduce the shipped KernelNet weights (about 20 min per scale factor on 2 cores).
weights: $(STAMP)
	for sf in 2 3 4; do $(BIN)/mkn train kernelnet --sf $$sf --config mobile --ship || exit 1; done

latency: $(STAMP)
	$(BIN)/mkn latency --model kernelnet --configs mobile paper --sf 2 --sizes 128 256 512 --threads 2 \
	    --json results/latency_torch.json

clean:
	rm -rf $(VENV) out testsets
