# The two set-up commands: `make demo` and `make test`. Each creates .venv on first use.
DEMO_MODEL ?= kernelnet
EVAL_MODELS ?= fixed-gaussian kernelnet kernelnet-norefine
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test eval eval-sr testsets weights latency clean

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
	$(BIN)/mkn eval --testset testsets --sf 2 3 4 --models $(EVAL_MODELS) --check-backends \
	    --json results/eval_kernels.json --quiet

eval-sr: testsets
	$(BIN)/mkn eval --sr --testset testsets --sf 2 3 4 --models kernelnet --json results/eval_sr.json --quiet

# Reproduce the shipped KernelNet weights: the commands recorded in mobile_kernelnet/weights/*.json
# (sf 2 ran alone on 2 threads, about 17 min; sf 3 and 4 ran side by side on 1 thread each).
weights: $(STAMP)
	$(BIN)/mkn train kernelnet --sf 2 --config mobile --ship
	$(BIN)/mkn train kernelnet --sf 3 --config mobile --threads 1 --ship & p3=$$!; \
	$(BIN)/mkn train kernelnet --sf 4 --config mobile --threads 1 --ship & p4=$$!; \
	wait $$p3 && wait $$p4

latency: $(STAMP)
	$(BIN)/mkn latency --model kernelnet --configs mobile paper --sf 2 --sizes 128 256 512 --threads 2 \
	    --json results/latency_torch.json

clean:
	rm -rf $(VENV) out testsets
