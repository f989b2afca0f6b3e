#!/usr/bin/env bash
# The project's one test command (README.md): installs what the tests need,
# then runs every test. Safe to run on a fresh machine and repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
# promtool and prometheus, for tests/observe.rs (Debian's package has both).
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# tests/auth.rs signs JWTs with an independent implementation (PyJWT).
python3 -c "import jwt, cryptography" 2>/dev/null \
  || python3 -m pip install --quiet pyjwt cryptography \
  || python3 -m pip install --quiet --break-system-packages pyjwt cryptography

cargo build --all-targets --locked 2>/dev/null || cargo build --all-targets
cargo test --all-targets -- --test-threads 2
