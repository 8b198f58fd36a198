#!/usr/bin/env bash
# Emacs package tests: byte-compilation with warnings as errors, then ERT tests in batch
# Emacs against the real cfgate daemon and the fake gateway.
# Env: CFGATE_BIN, FAKE_GATEWAY_BIN (default: target/debug).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PKG="$(cd "$HERE/.." && pwd)"
REPO="$(cd "$PKG/../.." && pwd)"
NAME=emacs
# shellcheck source=SCRIPTDIR/../../test-lib.sh
. "$REPO/editors/test-lib.sh"

command -v emacs >/dev/null || fail "emacs not found on PATH (Emacs >= 28; .ci/install-tools installs emacs-nox)"
emacs --batch -Q --eval '(kill-emacs (if (and (>= emacs-major-version 28) (fboundp (quote json-serialize))) 0 1))' ||
  fail "Emacs >= 28 with native JSON is required; found: $(emacs --version | head -1)"
testlib_require_binaries
testlib_setup

passed=0
failed=0

# 1. Byte-compile a copy (the checkout stays free of .elc files), warnings as errors.
mkdir -p "$TMP/build"
cp "$PKG"/*.el "$TMP/build/"
if (cd "$TMP/build" && emacs --batch -Q -L . --eval '(setq byte-compile-error-on-warn t)' \
  -f batch-byte-compile *.el) >"$TMP/compile.log" 2>&1; then
  echo "ok - cfgate.el, cfgate-actions.el and cfgate-models.el byte-compile without warnings"
  passed=$((passed + 1))
else
  echo "not ok - byte-compilation:"
  sed 's/^/  /' "$TMP/compile.log"
  failed=$((failed + 1))
fi

# 2. The fake gateway, and nothing of the user's.
testlib_start_fake_gateway
testlib_isolate_env

echo "emacs: $(emacs --version | head -1), daemon $CFGATE_BIN, fake gateway $URL"
# 3. ERT.
set +e
(cd "$REPO" && timeout -k 5 240 emacs --batch -Q -L editors/emacs -l editors/emacs/test/cfgate-test.el \
  -f ert-run-tests-batch-and-exit) </dev/null {FAKE_FD}>&- 2>&1 | tee "$TMP/ert.log"
status=${PIPESTATUS[0]}
set -e
summary="$(grep -E '^Ran [0-9]+ tests?, [0-9]+ results? as expected' "$TMP/ert.log" | tail -1 || true)"
if [ -n "$summary" ]; then
  ran="$(sed -E 's/^Ran ([0-9]+) tests?.*/\1/' <<<"$summary")"
  expected="$(sed -E 's/^Ran [0-9]+ tests?, ([0-9]+) results? as expected.*/\1/' <<<"$summary")"
  passed=$((passed + expected))
  failed=$((failed + ran - expected))
else
  echo "not ok - ERT did not finish (exit status $status)"
  failed=$((failed + 1))
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "not ok - emacs exited with status $status"
  failed=$((failed + 1))
fi

# 4. No daemon of this run may outlive Emacs.
testlib_check_no_daemon_left Emacs

echo "emacs: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
