#!/usr/bin/env bash
# cfgate as a plain language server in a real editor: headless Neovim with nothing but its
# built-in LSP client (no cfgate plugin), the real cfgate daemon and the fake gateway.
# Env: CFGATE_BIN, FAKE_GATEWAY_BIN (default: target/debug).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
NAME=lsp
# shellcheck source=SCRIPTDIR/../../test-lib.sh
. "$REPO/editors/test-lib.sh"

testlib_require_nvim 0.11
testlib_require_binaries
testlib_setup
testlib_start_fake_gateway
testlib_isolate_env
unset NVIM_APPNAME
mkdir -p "$TMP/work"
export CFGATE_TEST_RESULT="$TMP/result" CFGATE_TEST_WORKDIR="$TMP/work"

echo "lsp: $(nvim --version | head -1) as a plain LSP client, daemon $CFGATE_BIN, fake gateway $URL"
passed=0
failed=0
status=0
timeout -k 5 240 nvim --headless --clean -n -i NONE -c "luafile $HERE/lsp_test.lua" \
  </dev/null {FAKE_FD}>&- || status=$?
testlib_nvim_results "$status"
testlib_check_no_daemon_left Neovim

echo "lsp: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
