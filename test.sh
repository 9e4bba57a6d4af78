#!/usr/bin/env bash
# The test command: installs everything the tests need (venv, extras, system services) and
# runs lint, types and the whole pytest suite. Works on a fresh machine; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[grpc,local,test]'

# Servers the pre-fork and Celery tests run against (Redis, uWSGI's build needs).
if [ -f .ci/services.sh ]; then
  bash .ci/services.sh
fi

.venv/bin/ruff check src tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
