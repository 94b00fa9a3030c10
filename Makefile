# awkgen — every command a newcomer or CI needs. `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MXVENV := .venv-mxnet
MXPY   := $(MXVENV)/bin/python
# Ray refuses to start a local cluster without this on these machines.
export RAY_AUTH_MODE ?= disabled

.PHONY: test lint docs dist core demo bench bench-quick soak stress oracle r-compat clean

# The main venv. awkgen is installed in editable mode "compat": a path in a .pth file, which mypy and
# pyright follow (setuptools' default editable finder is an import hook they cannot see).
# torch goes in first and pinned: on this machine torch==2.13.0 is the CPU build
# (an open torch requirement pulls GBs of CUDA packages). The extras state lower bounds only;
# the builds this project's own tests run on are chosen here.
$(VENV)/.installed: setup.py setup.cfg pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q "tensorflow-cpu==2.21.*" "adversarial-robustness-toolbox==1.20.*"
	$(PY) -m pip install -q -e ".[test]" --config-settings editable_mode=compat
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
	$(VENV)/bin/ruff check awkgen tests benchmarks tools docs
	$(VENV)/bin/mypy

test: $(VENV)/.installed $(MXVENV)/.installed lint docs core
	$(PY) -m pytest --durations=15
	$(MXPY) -m pytest -o addopts="-p no:cacheprovider" tests/mxnet

# The site (docs/_build/html): the guide pages and the API reference, built from the docstrings;
# every warning is an error, every cross-reference must resolve (-n), and the doctests in docs/
# and the docstrings run. Then a real browser (Debian's chromium, headless; installed with apt-get
# if missing) checks every page at 1280 px: no code block cut, no page wider than the window, every
# page reachable from the navigation; screenshots go to docs/_build/screenshots.
SPHINXOPTS ?= -W --keep-going -n -q
docs: $(VENV)/.installed
	$(VENV)/bin/sphinx-build $(SPHINXOPTS) -b html docs docs/_build/html
	$(VENV)/bin/sphinx-build $(SPHINXOPTS) -b doctest docs docs/_build/doctest
	command -v chromium >/dev/null || { \
	    sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$sudo apt-get update -q && $$sudo apt-get install -y -q --no-install-recommends chromium; }
	$(PY) tools/docs_check.py docs/_build/html

# The sdist and the wheel, as a user's pip builds them (an isolated build from pyproject.toml),
# checked as PyPI checks them.
dist: $(VENV)/.installed
	rm -rf dist build
	mkdir dist
	$(PY) -m build -o dist . >dist/build.log 2>&1 || { cat dist/build.log; exit 1; }
	$(VENV)/bin/twine check --strict dist/*.tar.gz dist/*.whl

# The core on the oldest and the newest Python awkgen supports, installed from the wheel into
# venvs with only its core dependencies: the sdist's own tests, core test files, README's quick
# start (tools/core_check.sh). pyenv's builds are used when there are, else pythonX.Y on PATH.
CORE_PYTHONS ?= 3.10 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
core_python = $(or $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)))),python$(1))

.venv-core%/.installed: setup.cfg Makefile
	rm -rf .venv-core$*
	$(call core_python,$*) -m venv .venv-core$*
	.venv-core$*/bin/python -m pip install -q "pytest>=8" "pytest-timeout>=2.2" "hypothesis>=6.100"
	touch $@

core: dist $(foreach v,$(CORE_PYTHONS),.venv-core$(v)/.installed)
	tools/core_check.sh dist $(foreach v,$(CORE_PYTHONS),.venv-core$(v))

demo: $(VENV)/.installed
	$(PY) -m awkgen demo

# The benchmarks' extra packages beyond the test extras: Ray Data's (the Ray backend's peer, on request).
$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install -q "ray[data]>=2.40" "pandas>=2.2.3"
	touch $@

# Bytecode is compiled first (compileall writes it even under PYTHONDONTWRITEBYTECODE, as pip does when it
# installs a package): otherwise the forkserver and every worker of an editable checkout compile awkgen from
# source at each start, which a real install never does, and cold starts measure the compiler.
bench: $(VENV)/.bench-installed
	$(PY) -m compileall -q awkgen benchmarks
	$(PY) -m benchmarks.run

bench-quick: $(VENV)/.bench-installed
	$(PY) -m compileall -q awkgen benchmarks
	$(PY) -m benchmarks.run --quick --out benchmarks/results/quick

soak: $(VENV)/.installed
	$(PY) benchmarks/soak.py

# Random configurations (tests/stress.py) for STRESS_MINUTES; each failure prints a seed to replay.
# Configurations mostly wait (loaders sleep, leak checks poll): STRESS_JOBS children run at once.
STRESS_MINUTES ?= 60
STRESS_JOBS ?= 4
stress: $(VENV)/.installed
	$(PY) -m tests.stress --minutes $(STRESS_MINUTES) --jobs $(STRESS_JOBS)

# The differential oracle at scale (tests/oracle.py): ORACLE_TREES result trees per backend, each
# batch compared with the serial loader's; thread and process in configurations of two trees, Ray
# in configurations of a hundred (its actors take a second to start). Prints a seed to replay.
ORACLE_TREES ?= 10000
ORACLE_SEED ?= 1
oracle: $(VENV)/.installed
	$(PY) -m tests.oracle --trees $(ORACLE_TREES) --chunk 2 --seed $(ORACLE_SEED) --backends thread,process
	$(PY) -m tests.oracle --trees $$(( $(ORACLE_TREES) / 4 )) --chunk 100 --seed $(ORACLE_SEED) --backends ray

# awkgen's R toolkit (awkgen.images, awkgen.classes) and generators against real R running AwkwardMLTools
# (tools/rcompat/): installs R from Debian's packages (apt-get; root or sudo) and the package from a copy of
# AWKWARD_SRC into .rcompat/, then compares every case and prints the counts; any difference beyond R's
# errors, NULLs and known bugs (README, R users) fails. Not part of `make test`: it needs apt.
AWKWARD_SRC ?= ../shared/AwkwardMLTools
RCOMPAT_CASES ?= 300
r-compat: $(VENV)/.installed
	tools/rcompat/install.sh $(AWKWARD_SRC) .rcompat/R
	$(PY) tools/rcompat/run.py --rlib .rcompat/R --cases $(RCOMPAT_CASES)

clean:
	rm -rf $(VENV) $(MXVENV) .venv-core* build dist docs/_build *.egg-info .awkgen-cache .rcompat
