#!/usr/bin/env bash
# Set-up command 2: install what is missing, build (plain and ASan+UBSan),
# and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
make -j"$(nproc)" all
./scripts/test.sh
