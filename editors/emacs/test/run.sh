#!/usr/bin/env bash
# Emacs package tests: byte-compilation with warnings as errors, then ERT tests in batch
# Emacs against the real cfgate daemon and the fake gateway.
# Env: CFGATE_BIN, FAKE_GATEWAY_BIN (default: target/debug).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PKG="$(cd "$HERE/.." && pwd)"
REPO="$(cd "$PKG/../.." && pwd)"
CFGATE_BIN="${CFGATE_BIN:-$REPO/target/debug/cfgate}"
FAKE_GATEWAY_BIN="${FAKE_GATEWAY_BIN:-$REPO/target/debug/fake-gateway}"

fail() {
  echo "emacs: FAIL: $*" >&2
  exit 1
}

command -v emacs >/dev/null || fail "emacs not found on PATH (Emacs >= 28; .ci/install-tools installs emacs-nox)"
emacs --batch -Q --eval '(kill-emacs (if (and (>= emacs-major-version 28) (fboundp (quote json-serialize))) 0 1))' ||
  fail "Emacs >= 28 with native JSON is required; found: $(emacs --version | head -1)"
[ -f "$CFGATE_BIN" ] || fail "CFGATE_BIN does not exist: $CFGATE_BIN (run: cargo build --workspace --bins)"
[ -x "$CFGATE_BIN" ] || fail "CFGATE_BIN is not executable: $CFGATE_BIN"
[ -x "$FAKE_GATEWAY_BIN" ] || fail "FAKE_GATEWAY_BIN does not exist or is not executable: $FAKE_GATEWAY_BIN (run: cargo build --workspace --bins)"
command -v curl >/dev/null || fail "curl not found (the tests drive the fake gateway with it)"
command -v timeout >/dev/null || fail "timeout (coreutils) not found"
CFGATE_BIN="$(cd "$(dirname "$CFGATE_BIN")" && pwd)/$(basename "$CFGATE_BIN")"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cfgate-emacs-test.XXXXXX")"
TAG="cfgate-emacs-test-$$-$RANDOM$RANDOM"
FAKE_PID=""
FAKE_FD=""

# Daemons this run started: the test binary, with this run's tag in its environment.
our_daemons() {
  local d exe
  for d in /proc/[0-9]*; do
    exe="$(readlink "$d/exe" 2>/dev/null || true)"
    case "$exe" in "$CFGATE_BIN" | "$CFGATE_BIN (deleted)") ;; *) continue ;; esac
    if tr '\0' '\n' <"$d/environ" 2>/dev/null | grep -qx "CFGATE_TEST_TAG=$TAG"; then
      echo "${d#/proc/}"
    fi
  done
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$FAKE_FD" ]; then
    exec {FAKE_FD}>&- # EOF on the fake's stdin: it exits
  fi
  local left
  left="$(our_daemons)"
  if [ -n "$left" ]; then
    # shellcheck disable=SC2086
    kill $left 2>/dev/null
  fi
  if [ -n "$FAKE_PID" ]; then
    for _ in $(seq 50); do kill -0 "$FAKE_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$FAKE_PID" 2>/dev/null
    wait "$FAKE_PID" 2>/dev/null
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0

# 1. Byte-compile a copy (the checkout stays free of .elc files), warnings as errors.
mkdir -p "$TMP/build"
cp "$PKG/cfgate.el" "$TMP/build/"
if (cd "$TMP/build" && emacs --batch -Q --eval '(setq byte-compile-error-on-warn t)' \
  -f batch-byte-compile cfgate.el) >"$TMP/compile.log" 2>&1; then
  echo "ok - cfgate.el byte-compiles without warnings"
  passed=$((passed + 1))
else
  echo "not ok - cfgate.el byte-compilation:"
  sed 's/^/  /' "$TMP/compile.log"
  failed=$((failed + 1))
fi

# 2. The fake gateway serves until its stdin (a FIFO we hold open) reaches EOF.
mkfifo "$TMP/fake.in"
"$FAKE_GATEWAY_BIN" <"$TMP/fake.in" >"$TMP/fake.out" 2>"$TMP/fake.err" &
FAKE_PID=$!
exec {FAKE_FD}>"$TMP/fake.in"
URL=""
for _ in $(seq 100); do
  URL="$(sed -n 's/^FAKE_GATEWAY_URL=//p' "$TMP/fake.out")"
  [ -n "$URL" ] && break
  kill -0 "$FAKE_PID" 2>/dev/null || fail "the fake gateway exited: $(cat "$TMP/fake.err")"
  sleep 0.1
done
[ -n "$URL" ] || fail "the fake gateway printed no FAKE_GATEWAY_URL within 10 s"

# Nothing of the user's: HOME and XDG dirs in the temp dir, no cfgate env settings.
mkdir -p "$TMP/home" "$TMP/xdg/config" "$TMP/xdg/state" "$TMP/xdg/data" "$TMP/xdg/cache"
unset CLOUDFLARE_ACCOUNT_ID CLOUDFLARE_AI_GATEWAY_ID CLOUDFLARE_AI_GATEWAY_TOKEN CFGATE_CONFIG CFGATE_LOG
export HOME="$TMP/home" XDG_CONFIG_HOME="$TMP/xdg/config" XDG_STATE_HOME="$TMP/xdg/state" \
  XDG_DATA_HOME="$TMP/xdg/data" XDG_CACHE_HOME="$TMP/xdg/cache"
export CLOUDFLARE_API_TOKEN="test-token" CFGATE_TEST_TAG="$TAG" CFGATE_BIN FAKE_GATEWAY_URL="$URL"

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
left=""
for _ in $(seq 50); do
  left="$(our_daemons)"
  [ -z "$left" ] && break
  sleep 0.1
done
if [ -z "$left" ]; then
  echo "ok - no cfgate process left behind"
  passed=$((passed + 1))
else
  echo "not ok - cfgate process(es) still running after Emacs exited: $left"
  failed=$((failed + 1))
fi

echo "emacs: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
