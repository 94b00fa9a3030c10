#!/usr/bin/env bash
# awkgen as a user gets it: the built sdist and wheel, in venvs that hold only awkgen's core
# dependencies (plus pytest, pytest-timeout and hypothesis). `make core` (part of `make test`) runs
#
#     tools/core_check.sh DIST_DIR VENV...
#
# 1. The sdist carries every file git tracks, and runs its own tests: it is unpacked in a
#    temporary directory and SDIST_TESTS run there, from its own source, with its own setup.cfg
#    (in the first VENV).
# 2. Then its awkgen/ is removed, so that only the installed wheel can be imported, and in each
#    VENV: the wheel is installed with its dependencies resolved from the package index; nothing
#    beyond the core dependencies is importable (no tqdm, no framework); CORE_TESTS run against
#    the wheel; README's quick start runs as written (tools/readme_quickstart.py); `awkgen bench`
#    runs without tqdm (its progress is then a line per row on stderr); `awkgen demo` refuses to
#    run without its extra, naming it.
# 3. Nothing is left in /dev/shm by a process that has ended.
set -euo pipefail

dist=$1; shift
venvs=(); for venv in "$@"; do venvs+=("$(cd "$venv" && pwd)"); done  # absolute: the checks cd
set -- "${venvs[@]}"
sdist=$(ls "$dist"/awkgen-*.tar.gz)
wheel=$(ls "$dist"/awkgen-*.whl)
SDIST_TESTS=${SDIST_TESTS:-tests/test_sampling.py tests/test_arguments.py}
CORE_TESTS=${CORE_TESTS:-tests/test_packaging.py tests/test_sampling.py tests/test_arguments.py tests/test_generator.py tests/test_interrupts.py tests/test_wire.py tests/test_pool.py tests/test_classes.py}

shm_names() { ls /dev/shm 2>/dev/null | grep '^awkgen-' | sort || true; }
shm_before=$(shm_names)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/awkgen-core.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar xzf "$sdist" -C "$tmp"
root=$(echo "$tmp"/awkgen-*)

# In a git checkout: the sdist carries every tracked file but the top-level .gitignore.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    missing=$(comm -23 <(git ls-files | grep -vx '.gitignore' | sort) \
                       <(cd "$root" && find . -type f | sed 's|^\./||' | sort))
    [ -z "$missing" ] || { echo "missing from $(basename "$sdist"):"; echo "$missing"; exit 1; }
fi

install_wheel() {  # $1: venv
    "$1/bin/python" -m pip uninstall -q -y awkgen >/dev/null 2>&1 || true
    "$1/bin/python" -m pip install -q "$wheel"
    "$1/bin/python" -m pip check >/dev/null
}

first=$1
install_wheel "$first"
echo "== sdist $(basename "$sdist"): its own tests, from its own source ($("$first/bin/python" -V))"
(cd "$root" && "$first/bin/python" -c 'import awkgen, os, sys; assert awkgen.__file__.startswith(os.getcwd()), awkgen.__file__' \
    && "$first/bin/python" -m pytest -q $SDIST_TESTS)
rm -rf "$root/awkgen"

for venv in "$@"; do
    py=$venv/bin/python
    echo "== $(basename "$wheel") with core dependencies only ($("$py" -V), $venv)"
    install_wheel "$venv"
    (cd "$root" && "$py" - <<'PY'
import importlib.util, os, sys
import awkgen
assert not awkgen.__file__.startswith(os.getcwd()), f"awkgen imported from the source tree: {awkgen.__file__}"
extra = [m for m in ("tqdm", "torch", "tensorflow", "keras", "jax", "ray", "art", "sklearn", "PIL", "mxnet",
                     "matplotlib", "grain") if importlib.util.find_spec(m) is not None]
assert not extra, f"installed beside the core dependencies: {extra}"
print(f"awkgen {awkgen.__version__} from {os.path.dirname(awkgen.__file__)}; no framework, no tqdm")
PY
    )
    (cd "$root" && "$py" -m pytest -q -m "not ray" $CORE_TESTS)
    (cd "$tmp" && "$py" "$root/tools/readme_quickstart.py" "$root/README.rst")
    "$venv/bin/awkgen" bench --quick --no-progress --workers 1,2 --batches 5 >/dev/null
    "$venv/bin/awkgen" bench --quick --workers 1 --batches 1 >"$tmp/bench.out" 2>"$tmp/bench.err" || {
        echo "awkgen bench failed without tqdm installed"; cat "$tmp/bench.out" "$tmp/bench.err"; exit 1; }
    grep -q '^DataGeneratorMultiProc ' "$tmp/bench.out" || { cat "$tmp/bench.out"; exit 1; }
    grep -q 'awkgen bench: timing DataGenerator ' "$tmp/bench.err" || { cat "$tmp/bench.err"; exit 1; }
    if "$venv/bin/awkgen" demo --epochs 1 --cache "$tmp/demo-cache" >"$tmp/demo.out" 2>&1; then
        echo "awkgen demo ran without its extra"; exit 1
    fi
    grep -q 'pip install "awkgen\[demo\]"' "$tmp/demo.out" || { cat "$tmp/demo.out"; exit 1; }
done

# Segments of ended processes that appeared during the run: something was left behind.
left=$(comm -13 <(echo "$shm_before") <(shm_names) | while read -r name; do
    pid=${name#awkgen-}; pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || echo "$name"
done)
[ -z "$left" ] || { echo "left in /dev/shm: $left"; exit 1; }
echo "== core checks passed; nothing left in /dev/shm"
