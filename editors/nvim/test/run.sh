#!/usr/bin/env bash
# Neovim plugin tests: headless Neovim with the plugin from this checkout, the real cfgate
# daemon and the fake gateway. Env: CFGATE_BIN, FAKE_GATEWAY_BIN (default: target/debug).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PLUGIN="$(cd "$HERE/.." && pwd)"
REPO="$(cd "$PLUGIN/../.." && pwd)"
NAME=nvim
# shellcheck source=SCRIPTDIR/../../test-lib.sh
. "$REPO/editors/test-lib.sh"

testlib_require_nvim 0.10
testlib_require_binaries
testlib_setup
testlib_start_fake_gateway
testlib_isolate_env
unset NVIM_APPNAME
export CFGATE_NVIM_PLUGIN="$PLUGIN" CFGATE_TEST_RESULT="$TMP/result"

echo "nvim: $(nvim --version | head -1), daemon $CFGATE_BIN, fake gateway $URL"
passed=0
failed=0
status=0
timeout -k 5 240 nvim --headless --clean -n -i NONE --cmd "set rtp^=$PLUGIN" \
  -c "luafile $HERE/cfgate_test.lua" </dev/null {FAKE_FD}>&- || status=$?
testlib_nvim_results "$status"

# A real terminal: Neovim in tmux (256 colours, no COLORTERM, as in the issue's report),
# driven by keys; the screen is read back with capture-pane. Waits poll the screen with
# a deadline, never a fixed sleep.
TMUX_SOCKET="cfgate-nvim-test-$$"
tmux_cmd() { tmux -L "$TMUX_SOCKET" "$@"; }
# However the run ends, the tmux server (and the Neovim in it) goes too.
trap 'rc=$?; tmux_cmd kill-server 2>/dev/null || true; (exit $rc); testlib_cleanup' EXIT
# Waits until the pane (with escapes when $2 = -e) matches the regex $1; prints it.
tmux_wait() {
  local pane
  for _ in $(seq 300); do
    pane="$(tmux_cmd capture-pane -p ${2:-} -t t 2>/dev/null || true)"
    if grep -Eq -- "$1" <<<"$pane"; then
      printf '%s' "$pane"
      return 0
    fi
    sleep 0.05
  done
  echo "timed out waiting for /$1/ on the screen:" >&2
  printf '%s\n' "$pane" >&2
  return 1
}
terminal_run() { # $1: base_url
  tmux_cmd kill-server 2>/dev/null || true
  tmux_cmd -f /dev/null new-session -d -s t -x 100 -y 12 \
    "env -u COLORTERM TERM=tmux-256color CFGATE_TERMINAL_BASE_URL='$1' nvim --clean -n -i NONE -u '$HERE/terminal_init.lua' '$TMP/terminal.lua'"
  tmux_wait '^~' >/dev/null
}
terminal_check() { # $1: description, then the commands of the check
  local what=$1
  shift
  if out="$("$@" 2>&1)"; then
    echo "ok - $what"
    passed=$((passed + 1))
  else
    echo "not ok - $what"
    sed 's/^/  /' <<<"$out"
    failed=$((failed + 1))
  fi
  tmux_cmd kill-server 2>/dev/null || true
}
unreachable_gateway_in_a_terminal() {
  terminal_run "http://127.0.0.1:9/v1"
  tmux_cmd send-keys -t t "ilocal x = "
  tmux_wait 'local x = +cfgate: cannot connect' >/dev/null
  tmux_cmd send-keys -t t "y"
  local pane
  pane="$(tmux_wait '^local x = y')"
  if grep -q "Press ENTER" <<<"$pane"; then echo "a hit-enter prompt:"; echo "$pane"; return 1; fi
  grep -q -- "-- INSERT --" <<<"$pane" || { echo "not in insert mode:"; echo "$pane"; return 1; }
}
ghost_text_in_a_terminal() {
  curl -sS --fail -X POST "$URL/__fake/reset" >/dev/null
  curl -sS --fail -X POST "$URL/__fake/script" -H 'content-type: application/json' \
    --data-binary '{"content": "compute(42)"}' >/dev/null
  terminal_run "$URL/v1/acc/gw/compat"
  tmux_cmd send-keys -t t "ilocal x = "
  # Grey (colour 244 of 256), not the typed text's colour; the cursor where typed (column 10).
  tmux_wait $'38;5;244m[^\e]*compute\\(42\\)' -e >/dev/null
  local cursor
  cursor="$(tmux_cmd display -p -t t '#{cursor_x},#{cursor_y}')"
  [ "$cursor" = "10,0" ] || { echo "cursor at $cursor, not 10,0 (after 'local x = ')"; return 1; }
}
if command -v tmux >/dev/null; then
  terminal_check "in a terminal, an unreachable gateway while typing shows one line and no hit-enter prompt" \
    unreachable_gateway_in_a_terminal
  terminal_check "in a terminal (256 colours), the suggestion is grey and the cursor stays where the user types" \
    ghost_text_in_a_terminal
else
  echo "not ok - tmux not found: the real-terminal checks need it (.ci/install-tools installs it)"
  failed=$((failed + 1))
fi

testlib_check_no_daemon_left Neovim

echo "nvim: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
