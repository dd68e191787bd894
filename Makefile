# The two set-up commands: `make demo` and `make test`. Each creates .venv on first use.
DEMO_MODEL ?= kernelnet
EVAL_MODELS ?= fixed-gaussian kernelnet kernelnet-norefine s2k
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Software Vulkan (Mesa lavapipe, Debian packages) and QNN host libraries (a PyPI wheel) for
# the GPU and NPU checks, and the real adb (Debian) for the phone harness's tests, unpacked
# into .toolchain/; nothing is installed system-wide.
TOOLCHAIN := .toolchain/vulkan/env.sh .toolchain/qnn/lib/libQnnHtp.so .toolchain/adb/adb
NPU ?= qualcomm:SM8350,SM8550,SM8650,SM8750

.PHONY: demo test toolchain eval eval-sr tune-sr tune-sr-camera error-budget testsets weights latency exports bench android-example pool-example clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,scale]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mkn estimate assets/sample_lr.png --sf 2 --model $(DEMO_MODEL) \
	    --truth assets/sample_kernel.npy --out out/demo --show

test: $(STAMP) $(TOOLCHAIN)
	$(BIN)/python -m pytest -q

toolchain: $(TOOLCHAIN)
.toolchain/vulkan/env.sh:
	tools/setup_vulkan.sh .toolchain/vulkan
.toolchain/qnn/lib/libQnnHtp.so: $(STAMP)
	PIP=$(BIN)/pip tools/setup_qnn.sh .toolchain/qnn
.toolchain/adb/adb:
	tools/setup_adb.sh .toolchain/adb

testsets: $(STAMP)
	for sf in 2 3 4; do test -d testsets/sf$$sf || $(BIN)/mkn make-testset --sf $$sf --out testsets || exit 1; done
	for sf in 2 3 4; do test -d testsets/sf$$sf-camera || $(BIN)/mkn make-testset --sf $$sf --out testsets --camera \
	    --overwrite || exit 1; done

eval: testsets
	$(BIN)/mkn eval --testset testsets --sf 2 3 4 --models $(EVAL_MODELS) --check-backends \
	    --json results/eval_kernels.json --quiet
	$(BIN)/mkn eval --testset testsets --sf 2 --models s2k s2k-noadv --json results/eval_s2k_ablation.json --quiet
	$(BIN)/mkn eval --testset testsets --split camera --sf 2 3 4 --models fixed-gaussian kernelnet s2k \
	    --json results/eval_kernels_camera.json --quiet

eval-sr: testsets
	$(BIN)/mkn eval --sr --testset testsets --sf 2 3 4 --models kernelnet s2k --json results/eval_sr.json --quiet
	$(BIN)/mkn eval --sr --noise-aware --testset testsets --split camera --sf 2 4 --models kernelnet s2k \
	    --json results/eval_sr_camera.json --quiet

tune-sr: $(STAMP)
	$(BIN)/mkn tune-sr --sf 2 4 --models kernelnet s2k --json results/sr_tuning.json --quiet

tune-sr-camera: $(STAMP)
	$(BIN)/mkn tune-sr --camera --sf 2 4 --models kernelnet s2k --json results/sr_tuning_camera.json --quiet

error-budget: testsets
	$(BIN)/mkn eval --error-budget --testset testsets --sf 2 3 4 --json results/kernelnet_error_budget.json --quiet

# Reproduce every shipped weight file: the commands recorded in mobile_kernelnet/weights/*.json.
weights: $(STAMP)
	$(BIN)/python -c "import json,glob; [print(json.load(open(f))['command']) for f in sorted(glob.glob('mobile_kernelnet/weights/*.json'))]" \
	    | while read -r cmd; do echo "$$cmd"; $(BIN)/$$cmd || exit 1; done

latency: $(STAMP)
	$(BIN)/mkn latency --models kernelnet s2k --configs mobile paper --sf 2 --sizes 128 256 512 --threads 2 --runs 15 \
	    --json results/latency_torch.json

# Export the shipped mobile models at every sf to every format, then parity on the test set.
# MODEL:SF:SIZE, input sides = each model's default budget at the sf (mobile_kernelnet/budget.py),
# into exports/MODEL_mobile_sfN; EXTRA_EXPORTS into exports/MODEL_mobile_sfN@SIZE (other sizes).
# A parity failure does not stop the other jobs; the target fails at the end.
EXPORTS ?= kernelnet:2:192 kernelnet:3:168 kernelnet:4:128 s2k:2:128 s2k:3:168 s2k:4:128
EXTRA_EXPORTS ?= kernelnet:2:144 kernelnet:2:256 s2k:2:144 s2k:2:192 s2k:2:256
exports: testsets $(TOOLCHAIN)
	status=0; for job in $(EXPORTS) $(addsuffix :extra,$(EXTRA_EXPORTS)); do model=$${job%%:*}; rest=$${job#*:}; \
	    sf=$${rest%%:*}; rest=$${rest#*:}; size=$${rest%%:*}; name=$${model}_mobile_sf$$sf; at=; \
	    case $$job in *:extra) at=@$$size;; esac; \
	    $(BIN)/mkn export --model $$model --config mobile --sf $$sf --input-size $$size --to all \
	        --npu $(NPU) --out exports/$$name$$at --overwrite || exit 1; \
	    $(BIN)/mkn parity exports/$$name$$at --testset testsets --json results/parity_$${model}_sf$$sf$$at.json \
	        || status=1; done; exit $$status

# Desktop benchmark of both models' sf 2 exports, MODEL:SIZES, the first size each model's
# default budget (other input sizes are exported beside them).
BENCH ?= kernelnet:192,256 s2k:128,192
bench: testsets
	for job in $(BENCH); do model=$${job%%:*}; sizes=$${job#*:}; \
	    test -f exports/$${model}_mobile_sf2/manifest.json || $(MAKE) exports || exit 1; \
	    $(BIN)/mkn bench exports/$${model}_mobile_sf2 --runs 50 --warmup 5 --threads 1,2 --sizes $$sizes \
	    --testset testsets --json results/bench_$${model}_sf2.json || exit 1; done

# Example on-device report from the fake device of the tests (host CPU, not a phone).
android-example: $(STAMP) .toolchain/adb/adb
	test -f exports/kernelnet_mobile_sf2/manifest.json || $(MAKE) exports
	$(BIN)/python tests/fake_android/make_example.py exports/kernelnet_mobile_sf2 results/android_example.json

# A camera's own kernel pool end to end (tools/pool_example.py): photos of a made-up camera,
# estimate-collection on a local Ray, pool build, fine-tunes, scores against the true kernels.
pool-example: $(STAMP)
	$(BIN)/python tools/pool_example.py --json results/pool_example.json

clean:
	rm -rf $(VENV) out testsets exports .toolchain
