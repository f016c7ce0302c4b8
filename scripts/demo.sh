#!/usr/bin/env bash
# knockwarden's first-run demo.
#
#   scripts/demo.sh        sets up a local Synapse (installed from PyPI into target/synapse-venv),
#                          registers knockwarden with it, creates a knock-only room governed by the
#                          example policy policies/examples/support.yaml and a control room, makes one user
#                          knock who is let in and one who is refused, and prints what happened.
#                          Synapse and knockwarden keep running for you to explore with a client.
#   scripts/demo.sh stop   stops them.
#
# Everything lives under target/demo/ (configs, databases, logs).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=target/demo
VENV=target/synapse-venv
SYNAPSE=matrix-synapse==1.163.2

case "${1:-start}" in
  stop)
    exec python3 scripts/demo.py stop "$DEMO"
    ;;
  start) ;;
  *)
    echo "usage: scripts/demo.sh [start|stop]" >&2
    exit 2
    ;;
esac

echo "==> building knockwarden"
cargo build --quiet --bin knockwarden

if [ ! -e "$VENV/.installed-$SYNAPSE" ]; then
  echo "==> installing Synapse ($SYNAPSE) into $VENV (about 30 s)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --only-binary=:all: "$SYNAPSE"
  touch "$VENV/.installed-$SYNAPSE"
fi

exec "$VENV/bin/python" scripts/demo.py start "$DEMO"
