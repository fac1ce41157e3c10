#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls it).
# Runs every test with the default features (CPU engine, HTTP API, CLI, parity with
# transformers on the committed fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets
