#!/usr/bin/env bash
# Install everything the test suite needs, then run it: lint, format check, pytest.
# Usage (from anywhere): bash tests/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# The browser tests drive Debian's Chromium (Playwright's own download does not work everywhere);
# the TLS test makes its certificate with openssl; the scale-out tests start their own redis-server
# and haproxy (and tests/test_postgres.py its own PostgreSQL);
# the listen-queue test reads it with ss.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v openssl >/dev/null || missing+=(openssl)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v haproxy >/dev/null || missing+=(haproxy)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql)
command -v ss >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
# The benchmark harness's Node side (tests/test_bench.py runs the harness in its smallest mode).
if [ ! bench/node_modules/.package-lock.json -nt bench/package-lock.json ]; then
    npm ci --prefix bench --no-audit --no-fund --loglevel=error
fi
# The official Node.js socket.io-client (tests/test_node_client.py).
if [ ! tests/node/node_modules/.package-lock.json -nt tests/node/package-lock.json ]; then
    npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
