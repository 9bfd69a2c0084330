#!/usr/bin/env bash
# Installs moto's server (a real implementation of the DynamoDB wire protocol, from PyPI) into a
# virtualenv at target/test-moto for the tests behind the `moto` feature (shards coordinated
# through DynamoDB). Prints nothing when it is already there. Needs python3 with venv and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/test-moto
VERSION=5.1.18
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$VERSION')" 2>/dev/null; then
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$VERSION"
echo "moto $VERSION ready in $VENV"
