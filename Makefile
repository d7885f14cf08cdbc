# Spinal. A newcomer needs two commands, each doing its own set-up:
#   make demo   the main job (spinal run) on simulated sensors, no hardware needed
#   make test   lint + the whole test suite (+ the device tests on Python 3.13 with only the device extras)

PYTHON ?= python3.11
# The device side must work on Python 3.11-3.13; these machines have 3.13 under pyenv.
PYTHON_DEVICE ?= $(shell for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 2>/dev/null \
	| sort -V) python3.13; do "$$p" -c 'import sys' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
VENV := .venv
DEVICE_VENV := .venv-device
# Tests that need only the device extras (numpy 2, LiteRT, onnxruntime, paho): run again in DEVICE_VENV.
DEVICE_TESTS := tests/test_boundary.py tests/test_bundle.py tests/test_cli.py tests/test_cli_commands.py tests/test_manifest.py \
	tests/test_signing.py tests/test_modelfile_fuzz.py tests/sinks \
	tests/daemon/test_pipeline.py tests/daemon/test_dsp.py tests/daemon/test_config.py tests/daemon/test_reference_model.py \
	tests/sensors tests/runtime

.PHONY: test lint venv device-venv system-deps clean demo models field test-pi test-x86-noavx512

# The developer venv: every extra. onnx2tf pins numpy/onnx/onnxruntime/tensorflow exactly (see pyproject.toml).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[device,onnx-runtime,mqtt,host,dev]"
	$(VENV)/bin/pip check
	touch $@

# A device-only venv: what a Raspberry Pi gets (no host stack), on the newest Python we support.
$(DEVICE_VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON_DEVICE)" || { echo "error: python3.13 not found; set PYTHON_DEVICE=/path/to/python3.13"; exit 2; }
	$(PYTHON_DEVICE) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/pip install -q --upgrade pip
	$(DEVICE_VENV)/bin/pip install -q -e ".[device,onnx-runtime,mqtt]" "pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100"
	$(DEVICE_VENV)/bin/pip check
	touch $@

# `make demo` needs only what a Pi gets (device, onnx-runtime, mqtt extras), not the host stack.
# It reuses the developer venv when `make venv` already installed everything.
$(VENV)/.demo-installed: pyproject.toml
	@if [ -f $(VENV)/.installed ] && [ $(VENV)/.installed -nt pyproject.toml ]; then touch $@; exit 0; fi; \
	set -e; test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV); \
	$(VENV)/bin/pip install -q --upgrade pip; \
	$(VENV)/bin/pip install -q -e ".[device,onnx-runtime,mqtt]"; \
	touch $@

venv: $(VENV)/.installed
device-venv: $(DEVICE_VENV)/.installed

# Debian packages the tests use: a real Mosquitto broker (MQTT tests), shellcheck and systemd-analyze
# (firmware/ tests). Installed with apt when missing (as root, or through sudo).
SYSTEM_PACKAGES := mosquitto mosquitto-clients shellcheck systemd
system-deps:
	@if ! command -v mosquitto >/dev/null 2>&1 || ! command -v shellcheck >/dev/null 2>&1 \
	        || ! command -v systemd-analyze >/dev/null 2>&1; then \
	    sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    echo "installing $(SYSTEM_PACKAGES) with apt-get"; \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        $(SYSTEM_PACKAGES) >/dev/null; \
	fi

# The main job on simulated sensors: the daemon replays held-out recordings for 30 s, prints its
# predictions and how many windows it got right (firmware/demo.py, firmware/demo.toml).
demo: $(VENV)/.demo-installed
	$(VENV)/bin/python firmware/demo.py --duration 30

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint system-deps $(DEVICE_VENV)/.installed
	$(VENV)/bin/python -m pytest
	SPINAL_DEVICE_ONLY=1 $(DEVICE_VENV)/bin/python -m pytest -p no:cacheprovider -m "not slow" $(DEVICE_TESTS)

# Proof on other CPUs (tests/emulation/; each installs its Debian packages, needs root or sudo).
# test-pi: an emulated Raspberry Pi 4 (qemu-user-static, Debian bookworm arm64, Python 3.11, only the device
# extras; root filesystem cached in ~/.cache/spinal/pi-bookworm-arm64): DEVICE_TESTS, `spinal verify` on every
# bundle in models/, the demo. PI_CPUS="cortex-a72 cortex-a76" adds a Pi 5.
PI_CPUS ?= cortex-a72
test-pi:
	DEVICE_TESTS="$(DEVICE_TESTS)" SPINAL_PI_CPUS="$(PI_CPUS)" tests/emulation/pi.sh

# test-x86-noavx512: an x86_64 without AVX-512/VNNI (qemu-x86_64 -cpu Haswell runs both venvs' Python;
# onnxruntime and XNNPACK take their AVX2 kernels): `spinal verify` on every bundle in models/, X86_TESTS,
# and X86_HOST_TESTS in the developer venv.
X86_TESTS ?= tests/runtime
X86_HOST_TESTS ?= tests/models/test_bundles.py
test-x86-noavx512: $(DEVICE_VENV)/.installed $(VENV)/.installed
	X86_VENVS="$(DEVICE_VENV) $(VENV)" X86_TESTS="$(X86_TESTS)" X86_HOST_TESTS="$(X86_HOST_TESTS)" \
	    tests/emulation/x86-noavx512.sh

# The reference models (models/<name>/): data from sktime/pvlib, seeded training, ONNX export,
# spinal convert, scoring, metrics.json + MODEL_CARD.md + replay/ (a few minutes on one core).
MODELS := imu-activity weather anomaly
models: $(VENV)/.installed
	@for m in $(MODELS); do echo "== models/$$m"; $(VENV)/bin/python models/$$m/train.py || exit 1; done

clean:
	rm -rf $(VENV) $(DEVICE_VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info

# The field benchmark (issue 14; not in CI, it takes long): real models shipped in PyPI wheels (rapidocr,
# openwakeword, mediapipe) fetched with `pip download --no-deps` into FIELD_CACHE, package-made data (Pillow +
# Debian fonts, espeak-ng), spinal inspect/bench/verify on every file, convert every ONNX model, score every
# artifact against the original. Tables: FIELD_CACHE/results/table.md (copied into benchmarks/RESULTS.md by hand).
FIELD_CACHE ?= $(HOME)/.cache/spinal/field
FIELD_DATA_VENV := $(FIELD_CACHE)/venv-data
FIELD_PACKAGES := espeak-ng fonts-dejavu-core fonts-liberation2 fonts-noto-cjk
field: $(VENV)/.installed
	@if ! command -v espeak-ng >/dev/null 2>&1 || ! test -d /usr/share/fonts/opentype/noto \
	        || ! test -d /usr/share/fonts/truetype/liberation2; then \
	    sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        $(FIELD_PACKAGES) >/dev/null; \
	fi
	@test -x $(FIELD_DATA_VENV)/bin/python || { $(PYTHON) -m venv $(FIELD_DATA_VENV) && \
	    $(FIELD_DATA_VENV)/bin/pip install -q pillow numpy scipy onnxruntime; }
	$(VENV)/bin/python benchmarks/field/fetch.py --cache $(FIELD_CACHE)
	$(FIELD_DATA_VENV)/bin/python benchmarks/field/make_data.py --cache $(FIELD_CACHE)
	FIELD_CACHE=$(FIELD_CACHE) $(VENV)/bin/python benchmarks/field/run.py plain
	FIELD_CACHE=$(FIELD_CACHE) $(VENV)/bin/python benchmarks/field/run.py convert
	FIELD_CACHE=$(FIELD_CACHE) $(VENV)/bin/python benchmarks/field/run.py ungated
	FIELD_CACHE=$(FIELD_CACHE) PYTHONPATH=$(CURDIR) $(VENV)/bin/python benchmarks/field/run.py score
	FIELD_CACHE=$(FIELD_CACHE) $(VENV)/bin/python benchmarks/field/run.py table | tee $(FIELD_CACHE)/results/table.md
