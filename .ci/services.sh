#!/usr/bin/env bash
# What the pre-fork tests need that `pip install -e .[test]` cannot provide:
#   - redis-server (Debian package): the real Celery broker. The tests start their own private
#     instance on an ephemeral port; a shared one is also started on 127.0.0.1:${REDIS_PORT}
#     for running the Celery example by hand.
#   - uWSGI: built from PyPI's source distribution, which needs gcc and the Python headers.
# Idempotent; runs as root on a fresh Debian machine with access to the package registries only.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT="${REDIS_PORT:-6390}"
PY=.venv/bin/python

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
if ! "$PY" - <<'EOF' 2>/dev/null
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
EOF
then
  need_apt+=(python3-dev)
fi

if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "services.sh: need root to install: ${need_apt[*]}" >&2
    exit 1
  fi
  echo "services.sh: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# uWSGI compiles its C core at install time (about a minute on 2 cores); only once.
if [ ! -x .venv/bin/uwsgi ]; then
  echo "services.sh: building uWSGI"
  "$PY" -m pip install -q "uwsgi>=2.0.28"
fi

# A shared Redis for running the examples by hand (the tests start private ones).
if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --logfile /tmp/hyperdx-redis-"$REDIS_PORT".log >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
redis-cli -p "$REDIS_PORT" ping >/dev/null
echo "services.sh: redis on 127.0.0.1:$REDIS_PORT, $(.venv/bin/uwsgi --version | head -1 | sed 's/^/uWSGI /')"
