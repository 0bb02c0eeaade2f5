# `make demo`: set up .venv from a clean checkout, then run the main job offline.
# `make test`: set up .venv, then run the whole test suite; `make test-fast`: the tier without training.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
FASHION := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

.PHONY: demo test test-fast install data sshd bench-overhead docs clean

demo: install data
	$(VENV)/bin/toolkit quickstart --output quickstart-out

# Two workers, one test file each at a time (module fixtures are built once): the suite is mostly child processes.
test: install data sshd
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

# Everything that needs no training, conversion with TensorFlow or new virtual environments: under a minute.
test-fast: install
	$(PY) -m pytest -q -m "not slow" -n 2

install: $(STAMP)

$(STAMP): pyproject.toml examples/toolkit-onnx-evaluator/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps --no-build-isolation -e examples/toolkit-onnx-evaluator
	touch $@

# Fashion-MNIST ships as a Debian package: the quickstart's offline default. Without it, quickstart uses digits.
data:
	@if [ ! -f $(FASHION) ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	    (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null); \
	  else \
	    echo "note: install the Debian package dataset-fashion-mnist for the quickstart's default dataset"; \
	  fi; \
	fi

# The remote-device tests run a real sshd on 127.0.0.1 (tests/support/device.py); without it they are skipped.
sshd:
	@if [ ! -x /usr/sbin/sshd ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server >/dev/null 2>&1 || \
	    (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server >/dev/null); \
	  else \
	    echo "note: install the Debian package openssh-server for the remote-device tests (they are skipped without it)"; \
	  fi; \
	fi

docs: install
	$(PY) docs/gen_cli_reference.py

bench-overhead: install
	$(PY) benchmarks/harness_overhead.py

clean:
	rm -rf $(VENV) quickstart-out .pytest_cache
