# awkgen — every command a newcomer or CI needs. `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MXVENV := .venv-mxnet
MXPY   := $(MXVENV)/bin/python
# Ray refuses to start a local cluster without this on these machines.
export RAY_AUTH_MODE ?= disabled

.PHONY: test lint demo bench bench-quick soak stress clean

# The main venv. torch goes in first and pinned: an unpinned torch pulls GBs of CUDA packages.
$(VENV)/.installed: setup.py setup.cfg Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# MXNet 1.9.1 needs numpy < 1.24, so its tests run in a venv of their own.
# libmxnet.so links the system's gcc runtime (libgomp1, libquadmath0), which slim images lack:
# if mxnet does not import, install them with apt-get (as root, or through sudo).
$(MXVENV)/.installed: setup.py setup.cfg Makefile
	test -x $(MXPY) || $(PYTHON) -m venv $(MXVENV)
	$(MXPY) -m pip install -q "numpy==1.23.5" "mxnet==1.9.1" "pytest>=8" "pytest-timeout>=2.2"
	$(MXPY) -m pip install -q -e .
	$(MXPY) -c "import mxnet" 2>/dev/null || { \
	    sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$sudo apt-get update -q && $$sudo apt-get install -y -q --no-install-recommends libgomp1 libquadmath0; }
	$(MXPY) -c "import mxnet, numpy; assert mxnet.__version__ == '1.9.1', mxnet.__version__; print('mxnet', mxnet.__version__, 'numpy', numpy.__version__)"
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check awkgen tests benchmarks
	$(VENV)/bin/mypy

test: $(VENV)/.installed $(MXVENV)/.installed lint
	$(PY) -m pytest
	$(MXPY) -m pytest -o addopts="-p no:cacheprovider" tests/mxnet

demo: $(VENV)/.installed
	$(PY) -m awkgen demo

bench: $(VENV)/.installed
	$(PY) -m benchmarks.run

bench-quick: $(VENV)/.installed
	$(PY) -m benchmarks.run --quick --out benchmarks/results/quick

soak: $(VENV)/.installed
	$(PY) benchmarks/soak.py

# Random configurations (tests/stress.py) for STRESS_MINUTES; each failure prints a seed to replay.
# Configurations mostly wait (loaders sleep, leak checks poll): STRESS_JOBS children run at once.
STRESS_MINUTES ?= 60
STRESS_JOBS ?= 4
stress: $(VENV)/.installed
	$(PY) -m tests.stress --minutes $(STRESS_MINUTES) --jobs $(STRESS_JOBS)

clean:
	rm -rf $(VENV) $(MXVENV) build *.egg-info .awkgen-cache
