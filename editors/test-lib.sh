# Shared by the editors' test/run.sh scripts (sourced, not run): they all drive the real
# cfgate daemon against the fake gateway, in a sandbox of their own, and all must prove
# that no daemon outlives the editor. Kept in one place so the editors cannot drift apart
# on how that is done.
#
# The sourcing script sets NAME (its prefix in messages) and REPO (the checkout), then calls,
# in this order: testlib_require_binaries, testlib_setup, testlib_start_fake_gateway,
# testlib_isolate_env, and at the end testlib_check_no_daemon_left "Editor". It keeps its
# own counts in `passed` and `failed`. Env: CFGATE_BIN, FAKE_GATEWAY_BIN (default:
# target/debug).
# shellcheck shell=bash

CFGATE_BIN="${CFGATE_BIN:-$REPO/target/debug/cfgate}"
FAKE_GATEWAY_BIN="${FAKE_GATEWAY_BIN:-$REPO/target/debug/fake-gateway}"

fail() {
  echo "$NAME: FAIL: $*" >&2
  exit 1
}

# The daemon and fake gateway binaries, and the tools the tests run; CFGATE_BIN becomes an
# absolute path (our_daemons matches processes by it).
testlib_require_binaries() {
  [ -f "$CFGATE_BIN" ] || fail "CFGATE_BIN does not exist: $CFGATE_BIN (run: cargo build --workspace --bins)"
  [ -x "$CFGATE_BIN" ] || fail "CFGATE_BIN is not executable: $CFGATE_BIN"
  [ -x "$FAKE_GATEWAY_BIN" ] || fail "FAKE_GATEWAY_BIN does not exist or is not executable: $FAKE_GATEWAY_BIN (run: cargo build --workspace --bins)"
  command -v curl >/dev/null || fail "curl not found (the tests drive the fake gateway with it)"
  command -v timeout >/dev/null || fail "timeout (coreutils) not found"
  CFGATE_BIN="$(cd "$(dirname "$CFGATE_BIN")" && pwd)/$(basename "$CFGATE_BIN")"
}

# The temp dir (TMP), this run's tag, and the trap that cleans up whatever happens.
testlib_setup() {
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/cfgate-$NAME-test.XXXXXX")"
  TAG="cfgate-$NAME-test-$$-$RANDOM$RANDOM"
  FAKE_PID=""
  FAKE_FD=""
  trap testlib_cleanup EXIT
  trap 'exit 130' INT TERM
}

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

testlib_cleanup() {
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

# The fake gateway serves until its stdin (a FIFO we hold open on FAKE_FD) reaches EOF.
# Sets URL. The editor must not inherit FAKE_FD (run it with `{FAKE_FD}>&-`), or the fake
# would outlive a failed run.
testlib_start_fake_gateway() {
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
}

# Nothing of the user's: HOME and XDG dirs in the temp dir, no cfgate env settings.
testlib_isolate_env() {
  mkdir -p "$TMP/home" "$TMP/xdg/config" "$TMP/xdg/state" "$TMP/xdg/data" "$TMP/xdg/cache"
  unset CLOUDFLARE_ACCOUNT_ID CLOUDFLARE_AI_GATEWAY_ID CLOUDFLARE_AI_GATEWAY_TOKEN CFGATE_CONFIG CFGATE_LOG
  export HOME="$TMP/home" XDG_CONFIG_HOME="$TMP/xdg/config" XDG_STATE_HOME="$TMP/xdg/state" \
    XDG_DATA_HOME="$TMP/xdg/data" XDG_CACHE_HOME="$TMP/xdg/cache"
  export CLOUDFLARE_API_TOKEN="test-token" CFGATE_TEST_TAG="$TAG" CFGATE_BIN FAKE_GATEWAY_URL="$URL"
}

# No daemon of this run may outlive the editor ($1, for the message); counts the result.
testlib_check_no_daemon_left() {
  local left=""
  for _ in $(seq 50); do
    left="$(our_daemons)"
    [ -z "$left" ] && break
    sleep 0.1
  done
  if [ -z "$left" ]; then
    echo "ok - no cfgate process left behind"
    passed=$((passed + 1))
  else
    echo "not ok - cfgate process(es) still running after $1 exited: $left"
    failed=$((failed + 1))
  fi
}

# Neovim-based tests ----------------------------------------------------------------------

# Neovim $1 (e.g. 0.10) or newer on PATH.
testlib_require_nvim() {
  command -v nvim >/dev/null || fail "nvim not found on PATH (Neovim >= $1; .ci/install-tools installs it)"
  [ "$(nvim --headless --clean -n -i NONE --cmd "lua io.stdout:write(vim.fn.has('nvim-$1'))" --cmd 'qa!' </dev/null 2>/dev/null)" = 1 ] ||
    fail "Neovim >= $1 is required; found: $(nvim --version | head -1)"
}

# Adds the counts a Lua test file wrote to $TMP/result ("passed failed") after a Neovim run
# that ended with exit status $1; a run that wrote none, or failed without saying, fails.
testlib_nvim_results() {
  local status=$1 p=0 f=0
  if [ -f "$TMP/result" ]; then
    read -r p f <"$TMP/result"
  else
    echo "not ok - the Neovim test run did not finish (exit status $status)"
    f=1
  fi
  if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "not ok - nvim exited with status $status"
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}
