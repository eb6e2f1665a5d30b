# ResNetFusion — the README's commands are these targets.
#   make demo           generate demo data and train on it (the main job, end to end)
#   make test           build in release mode and run every test
#   make test-asan      the tests under AddressSanitizer
#   make bench          ResNetFusion vs PyTorch (NCHW and channels_last) side by side, and ONNX Runtime for inference
#                       when that python has it (TORCH_PYTHON=path/to/python for PyTorch's side)
#   make bench-kernels  C kernel microbenchmarks (conv / batchnorm / pooling vs this machine's sgemm and FMA peak)
#   make fuzz           libFuzzer targets under Fuzz/, FUZZ_SECONDS each (default 60); layout in Fuzz/README.md
#   make bench-quality  validation F1 per epoch, ours vs PyTorch, 3 seeds on 1000 demo frames (TORCH_PYTHON as for bench)
#   make bench-scale    one epoch of the fusion head from memory-mapped feature stores of SCALE_ROWS frames: time, peak RSS
#   make bench-mpi      data-parallel costs under mpirun (all-reduce, sharded features, train step: 1 vs 2 ranks) and
#                       the scaling model across machines built from them (docs/SCALING.md)
SWIFT      ?= swift
CONFIG     := -c release
# Debian packages the build links against.
DEB_PACKAGES := libopenblas-dev libomp-dev libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libopenmpi-dev openmpi-bin
DEPS_STAMP := .build/.deps-ok

.PHONY: all deps build test test-asan bench bench-kernels bench-quality bench-scale bench-mpi fuzz demo clean

all: build

# Cheap check first: the headers and libraries the build links are present. Install only when not.
$(DEPS_STAMP): Makefile
	@if [ -f /usr/include/x86_64-linux-gnu/cblas.h -o -f /usr/include/cblas.h ] \
	    && [ -f /usr/include/turbojpeg.h ] \
	    && [ -f /usr/include/jpeglib.h ] \
	    && [ -f /usr/include/png.h ] \
	    && [ -f /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] \
	    && command -v mpirun >/dev/null 2>&1 \
	    && ls /usr/lib/*/libomp5.so >/dev/null 2>&1 \
	    && ls /usr/lib/*/libopenblas.so >/dev/null 2>&1; then :; \
	else \
	  echo "Installing $(DEB_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PACKAGES); \
	fi
	@mkdir -p $(dir $@) && touch $@

deps: $(DEPS_STAMP)

build: deps
	$(SWIFT) build $(CONFIG)

test: deps
	$(SWIFT) build $(CONFIG) --build-tests
	$(SWIFT) test $(CONFIG) --skip-build

# The whole suite under AddressSanitizer (its own build folder). XCTest's own bookkeeping leaks a few
# objects; that library is suppressed, project code is not.
test-asan: deps
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/lsan-suppressions.txt \
	  $(SWIFT) test $(CONFIG) --sanitize=address --scratch-path .build-asan

# ResNetFusion vs PyTorch, alternating rounds. PyTorch's side runs when TORCH_PYTHON names a python with
# torch, torchvision, pillow and pandas (CI never needs it).
BENCH_ROUNDS ?= 3
bench: deps
	$(SWIFT) build $(CONFIG) --product bench-model
	.build/release/bench-model --rounds $(BENCH_ROUNDS) $(if $(TORCH_PYTHON),--torch-python $(TORCH_PYTHON))

bench-kernels: deps
	$(SWIFT) run $(CONFIG) bench-kernels

# Data-parallel costs on this machine: the driver spawns itself under mpirun -np 1 / -np 2 --oversubscribe and as a
# plain process. Open MPI refuses to run as root without both OMPI_ALLOW_RUN_AS_ROOT variables (containers, CI).
# BENCH_MPI_ARGS passes more flags (e.g. --rounds 3 --train-steps 8 --hop-latency-us 20).
bench-mpi: deps
	$(SWIFT) build $(CONFIG) --product bench-mpi
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 .build/release/bench-mpi $(BENCH_MPI_ARGS)

# Learning quality, ours vs the user's script (Benchmarks/PyTorch/seed_resnet50.py), same data, same random
# backbone, several seeds. PyTorch's runs take ~25 min per seed at 30 epochs, so their logs are cached in
# .cache/bench-quality and reused; ours reruns every time. QUALITY_TORCH_EPOCHS=10 shortens PyTorch's side;
# QUALITY_ARGS passes more flags (e.g. --rerun-torch, --seeds 0 1, --ours-args "--bn-mode train").
QUALITY_SEEDS  ?= 0 1 2
QUALITY_EPOCHS ?= 30
bench-quality: deps
	$(SWIFT) build $(CONFIG) --product resnet50
	$(or $(TORCH_PYTHON),python3) Benchmarks/Quality/bench_quality.py --resnet50 .build/release/resnet50 \
	  --seeds $(QUALITY_SEEDS) --epochs $(QUALITY_EPOCHS) $(if $(QUALITY_TORCH_EPOCHS),--torch-epochs $(QUALITY_TORCH_EPOCHS)) \
	  $(if $(TORCH_PYTHON),--torch-python $(TORCH_PYTHON)) $(QUALITY_ARGS)

# Training from cached features larger than memory: synthetic feature stores of SCALE_ROWS frames (2048 wide,
# 8 KB a frame in fp32: 8.2 GB at 10^6), built once in .cache/bench-scale and reused; each size in a fresh process.
# SCALE_ARGS passes more flags (e.g. --dtype fp16, --batch-size 32).
SCALE_ROWS ?= 100000 1000000
bench-scale: deps
	$(SWIFT) build $(CONFIG) --product bench-scale
	.build/release/bench-scale --rows $(SCALE_ROWS) $(SCALE_ARGS)

# The main job on built-in data: 200 synthetic frames, then the seed's command with --freeze-backbone.
# torchvision's ImageNet file is used when it is where torchvision keeps it; otherwise the backbone starts
# from random weights (the command says so) and the metadata carries the task.
DEMO_DIR    := demo-data
DEMO_EPOCHS ?= 5
TORCHVISION_WEIGHTS := $(firstword $(wildcard $(TORCH_HOME)/hub/checkpoints/resnet50-0676ba61.pth) \
                         $(wildcard $(HOME)/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth))
DEMO_WEIGHTS := $(if $(TORCHVISION_WEIGHTS),$(TORCHVISION_WEIGHTS),none)

demo: deps
	$(SWIFT) build $(CONFIG) --product resnet50
	.build/release/resnet50 make-demo-data --out $(DEMO_DIR) --count 200 --seed 1 --force
	.build/release/resnet50 train --images-dir $(DEMO_DIR)/images --csv-path $(DEMO_DIR)/labels.csv \
	  --epochs $(DEMO_EPOCHS) --batch-size 8 --max-boxes 10 --freeze-backbone --weights $(DEMO_WEIGHTS) \
	  --output models/demo.safetensors

# Builds each libFuzzer target (Fuzz/<Module>/<target>/main.swift, compiled with swiftc, outside SwiftPM) and
# runs it FUZZ_SECONDS; prints executions per target. Crash inputs: Fuzz/artifacts/<target>/. FUZZ_TARGETS
# picks some (default: all). Adding a target needs no change here: see Fuzz/README.md.
FUZZ_SECONDS ?= 60
fuzz:
	Fuzz/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf .build .build-asan $(DEMO_DIR) models
