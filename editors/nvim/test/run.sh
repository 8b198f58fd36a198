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
testlib_check_no_daemon_left Neovim

echo "nvim: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
