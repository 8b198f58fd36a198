#!/usr/bin/env bash
# Neovim plugin tests: headless Neovim with the plugin from this checkout, the real cfgate
# daemon and the fake gateway. Env: CFGATE_BIN, FAKE_GATEWAY_BIN (default: target/debug).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PLUGIN="$(cd "$HERE/.." && pwd)"
REPO="$(cd "$PLUGIN/../.." && pwd)"
CFGATE_BIN="${CFGATE_BIN:-$REPO/target/debug/cfgate}"
FAKE_GATEWAY_BIN="${FAKE_GATEWAY_BIN:-$REPO/target/debug/fake-gateway}"

fail() {
  echo "nvim: FAIL: $*" >&2
  exit 1
}

command -v nvim >/dev/null || fail "nvim not found on PATH (Neovim >= 0.10; .ci/install-tools installs it)"
[ "$(nvim --headless --clean -n -i NONE --cmd 'lua io.stdout:write(vim.fn.has("nvim-0.10"))' --cmd 'qa!' </dev/null 2>/dev/null)" = 1 ] ||
  fail "Neovim >= 0.10 is required; found: $(nvim --version | head -1)"
[ -f "$CFGATE_BIN" ] || fail "CFGATE_BIN does not exist: $CFGATE_BIN (run: cargo build --workspace --bins)"
[ -x "$CFGATE_BIN" ] || fail "CFGATE_BIN is not executable: $CFGATE_BIN"
[ -x "$FAKE_GATEWAY_BIN" ] || fail "FAKE_GATEWAY_BIN does not exist or is not executable: $FAKE_GATEWAY_BIN (run: cargo build --workspace --bins)"
command -v curl >/dev/null || fail "curl not found (the tests drive the fake gateway with it)"
command -v timeout >/dev/null || fail "timeout (coreutils) not found"
CFGATE_BIN="$(cd "$(dirname "$CFGATE_BIN")" && pwd)/$(basename "$CFGATE_BIN")"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cfgate-nvim-test.XXXXXX")"
TAG="cfgate-nvim-test-$$-$RANDOM$RANDOM"
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

# The fake gateway serves until its stdin (a FIFO we hold open) reaches EOF.
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
unset CLOUDFLARE_ACCOUNT_ID CLOUDFLARE_AI_GATEWAY_ID CLOUDFLARE_AI_GATEWAY_TOKEN CFGATE_CONFIG CFGATE_LOG NVIM_APPNAME
export HOME="$TMP/home" XDG_CONFIG_HOME="$TMP/xdg/config" XDG_STATE_HOME="$TMP/xdg/state" \
  XDG_DATA_HOME="$TMP/xdg/data" XDG_CACHE_HOME="$TMP/xdg/cache"
export CLOUDFLARE_API_TOKEN="test-token" CFGATE_TEST_TAG="$TAG" CFGATE_BIN FAKE_GATEWAY_URL="$URL" \
  CFGATE_NVIM_PLUGIN="$PLUGIN" CFGATE_TEST_RESULT="$TMP/result"

echo "nvim: $(nvim --version | head -1), daemon $CFGATE_BIN, fake gateway $URL"
status=0
timeout -k 5 240 nvim --headless --clean -n -i NONE --cmd "set rtp^=$PLUGIN" \
  -c "luafile $HERE/cfgate_test.lua" </dev/null {FAKE_FD}>&- || status=$?

passed=0
failed=0
if [ -f "$TMP/result" ]; then
  read -r passed failed <"$TMP/result"
else
  echo "not ok - the Neovim test run did not finish (exit status $status)"
  failed=$((failed + 1))
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "not ok - nvim exited with status $status"
  failed=$((failed + 1))
fi

# No daemon of this run may outlive Neovim.
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
  echo "not ok - cfgate process(es) still running after Neovim exited: $left"
  failed=$((failed + 1))
fi

echo "nvim: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
