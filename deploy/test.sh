#!/usr/bin/env bash
# Run the whole test suite on real PostgreSQL and Redis (started if needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/bootstrap.sh requirements-dev.txt
exec .venv/bin/pytest "$@"
