#!/usr/bin/env bash
# `make bench`: install what the benchmark needs, then run it (bench/bench.py).
#
#   bash bench/run.sh              # the full run, ~15 min: rewrites docs/performance.md and docs/perf-*.png
#   bash bench/run.sh --quick      # a smoke run, ~2-3 min: results under bench/results/ only
#   bash bench/run.sh --help       # bench/bench.py's options; any of them can be passed here
#
# Installs, each only when missing or when its pin file changed:
#   bench/.venv-bench     aiohttp, psutil, matplotlib (bench/requirements.txt): the harness itself
#   bench/.venv-litellm   LiteLLM's proxy (bench/requirements-litellm.txt + constraints-litellm.txt)
#   bench/portkey         Portkey's gateway (npm ci from bench/portkey/package-lock.json)
#   .venv                 aiserver itself, through the main Makefile's `make install`
# A part that fails to install is reported, and the harness skips that target.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BENCH=bench

say() { printf '[run.sh] %s\n' "$*"; }

sha() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# venv_install DIR STAMP_INPUTS... -- PIP_ARGS...
venv_install() {
    local dir=$1; shift
    local inputs=()
    while [ "$1" != "--" ]; do inputs+=("$1"); shift; done
    shift
    local want; want=$(sha "${inputs[@]}")
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.installed" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    say "installing $dir (pip install $*)"
    [ -x "$dir/bin/python" ] || timeout 300 "$PYTHON" -m venv "$dir"
    if timeout 1200 "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" 2>&1 | grep -v '^WARNING: Location'; [ "${PIPESTATUS[0]}" -eq 0 ]; then
        echo "$want" > "$dir/.installed"
    else
        say "WARNING: installing $dir failed"
        return 1
    fi
}

# 1. The harness's own venv: without it nothing runs.
venv_install $BENCH/.venv-bench $BENCH/requirements.txt -- -r $BENCH/requirements.txt

# 2. LiteLLM, in its own venv.
venv_install $BENCH/.venv-litellm $BENCH/requirements-litellm.txt $BENCH/constraints-litellm.txt -- \
    -r $BENCH/requirements-litellm.txt -c $BENCH/constraints-litellm.txt \
    || say "LiteLLM could not be installed: the harness will skip it"

# 3. Portkey's gateway from npm.
if command -v npm >/dev/null 2>&1; then
    want=$(sha $BENCH/portkey/package.json $BENCH/portkey/package-lock.json)
    if [ "$(cat $BENCH/portkey/node_modules/.installed 2>/dev/null)" != "$want" ]; then
        say "installing Portkey's gateway (npm ci in bench/portkey)"
        if (cd $BENCH/portkey && timeout 600 npm ci --no-audit --no-fund --loglevel=error); then
            echo "$want" > $BENCH/portkey/node_modules/.installed
        else
            say "WARNING: npm ci failed in bench/portkey: the harness will skip Portkey"
        fi
    fi
else
    say "npm is not installed: the harness will skip Portkey"
fi

# 4. aiserver itself (its .venv), through the main Makefile; the harness skips aiserver if it fails.
if [ -f Makefile ] && [ -f requirements.txt ]; then
    timeout 1200 make --no-print-directory install || say "WARNING: make install failed: the harness will skip aiserver"
fi

# 5. Start-up time (read by the report's Targets section).
mkdir -p $BENCH/results
timeout 300 .venv/bin/python $BENCH/startup.py --runs 5 --json $BENCH/results/startup.json \
    || say "WARNING: the start-up measurement failed"

# 6. The benchmark. bench.py bounds itself with --max-minutes; this is the backstop.
say "running: $BENCH/.venv-bench/bin/python $BENCH/bench.py $*"
exec timeout --kill-after=60 3600 $BENCH/.venv-bench/bin/python $BENCH/bench.py "$@"
