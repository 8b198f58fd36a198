#!/usr/bin/env bash
# Builds, type-checks, tests and packages the VS Code extension against the real
# `cfgate serve` and `fake-gateway` binaries. Prints `vscode: N passed, M failed` last.
#
#   CFGATE_BIN, FAKE_GATEWAY_BIN   the binaries (default: target/debug/ of this repository;
#                                  build them with `cargo build --workspace --bins`)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"

fail() {
    echo "vscode: $*" >&2
    echo "vscode: 0 passed, 1 failed"
    exit 1
}

command -v node >/dev/null 2>&1 || fail "node is not installed (Node.js 20 or newer is needed)"
command -v npm >/dev/null 2>&1 || fail "npm is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || fail "Node.js 20 or newer is needed, found $(node --version)"

export CFGATE_BIN="${CFGATE_BIN:-$repo/target/debug/cfgate}"
export FAKE_GATEWAY_BIN="${FAKE_GATEWAY_BIN:-$repo/target/debug/fake-gateway}"
for bin in "$CFGATE_BIN" "$FAKE_GATEWAY_BIN"; do
    [ -x "$bin" ] || fail "missing binary $bin (run: cd $repo && cargo build --workspace --bins)"
done

# Every process the tests start inherits this marker, so leftovers can be found without
# mistaking another run's daemons for ours.
marker="$$-$RANDOM-$(date +%s)"
export VSCODE_CFGATE_TEST_RUN="$marker"

work="$(mktemp -d "${TMPDIR:-/tmp}/cfgate-vscode-run.XXXXXX")"
vsix=/tmp/cfgate-vscode-test.vsix
cleanup() {
    rm -rf "$work"
    rm -f "$vsix"
}
trap cleanup EXIT

if [ ! -d node_modules ]; then
    echo "== npm ci"
    npm ci --no-audit --no-fund
fi

echo "== npm run compile"
rm -rf out
npm run --silent compile

echo "== tsc --noEmit"
npx --no-install tsc --noEmit -p .

echo "== node --test out/test/"
status=0
timeout 240 node --test --test-timeout=120000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$work/tap" \
    out/test/ || status=$?
passed="$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$work/tap" 2>/dev/null | tail -1)"
failed="$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$work/tap" 2>/dev/null | tail -1)"
cancelled="$(sed -n 's/^# cancelled \([0-9][0-9]*\)$/\1/p' "$work/tap" 2>/dev/null | tail -1)"
passed="${passed:-0}"
failed=$(( ${failed:-0} + ${cancelled:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "vscode: node --test exited with status $status" >&2
    failed=1
fi

echo "== vsce package"
rm -f "$vsix"
if npx --no-install vsce package --no-dependencies --allow-missing-repository -o "$vsix" </dev/null >"$work/vsce.log" 2>&1 && [ -s "$vsix" ]; then
    echo "packaged $(du -k "$vsix" | cut -f1) KB: $vsix (removed again)"
    rm -f "$vsix"
    passed=$(( passed + 1 ))
else
    cat "$work/vsce.log" >&2
    echo "vscode: vsce package did not produce $vsix" >&2
    failed=$(( failed + 1 ))
fi

echo "== leftover processes"
leftover=()
if [ -d /proc/self ]; then
    for environ in /proc/[0-9]*/environ; do
        pid="${environ#/proc/}"
        pid="${pid%/environ}"
        [ "$pid" = "$$" ] && continue
        if { tr '\0' '\n' <"$environ"; } 2>/dev/null | grep -qx "VSCODE_CFGATE_TEST_RUN=$marker"; then
            state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
            [ -n "$state" ] && [ "$state" != Z ] || continue
            exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
            exe="${exe% (deleted)}"
            case "$exe" in
                */cfgate | */fake-gateway) leftover+=("$pid:$exe") ;;
            esac
        fi
    done
    if [ "${#leftover[@]}" -gt 0 ]; then
        echo "vscode: processes started by the tests are still running: ${leftover[*]}" >&2
        for entry in "${leftover[@]}"; do kill "${entry%%:*}" 2>/dev/null || true; done
        failed=$(( failed + 1 ))
    else
        echo "none"
        passed=$(( passed + 1 ))
    fi
else
    echo "skipped (no /proc)"
fi

echo "vscode: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
