#!/usr/bin/env bash
# Mutation testing of one critical module (or all) with the tests that cover it; see docs/testing.md.
#   scripts/mutation.sh validate            # killed / survived / timeout and the surviving mutants
#   scripts/mutation.sh all --fresh --diff  # every critical module from scratch, with each survivor's diff
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" scripts/mutation.py "$@"
