#!/usr/bin/env bash
# The suite under AddressSanitizer + UndefinedBehaviorSanitizer: builds
# `make SAN=1` (build-san/; cellbox-init stays a static libc-only binary) and
# runs every unit test binary, then the e2e and security pytest suites against
# build-san/cellboxd and build-san/tools/cbrun (CB_BUILD). Every sanitizer
# report is written to a log file (log_path) and halts the process that hit
# it; the run fails on any test failure and on any report, which are printed.
# Ends with one "N passed, M failed, K skipped" line like scripts/test.sh.
#   CB_SAN_PYTEST="-k foo"  extra pytest arguments
#   CB_SAN_BUILD=build-x    build directory (default build-san), so several
#                           engineers can run it side by side
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0; failed=0; skipped=0
add() { passed=$((passed+$1)); failed=$((failed+$2)); skipped=$((skipped+$3)); }

echo "== san: make SAN=1 BUILD=${CB_SAN_BUILD:-build-san}"
sb=${CB_SAN_BUILD:-build-san}
if ! make -s -j"$(nproc)" SAN=1 BUILD="$sb" all >/tmp/cb-san-build.$$ 2>&1; then
  tail -40 /tmp/cb-san-build.$$; rm -f /tmp/cb-san-build.$$
  echo "0 passed, 1 failed, 0 skipped"; exit 1
fi
rm -f /tmp/cb-san-build.$$

logs=$(mktemp -d /tmp/cb-san-logs.XXXXXX)
# Every report file (ASan, UBSan, LeakSanitizer at a process's exit) not
# yet counted is printed and counted as one failure, after each phase, so a
# report says which phase made it.
reports=0
declare -A seen=()
# ASan's notice that it skipped a stack check, and nothing else, is not a
# report: the daemon's sandbox child (src/lib/ns.c) is cloned with CLONE_VM
# onto a stack of its own and is pid 1 of its new pid namespace ("==1==")
# until it execs cellbox-init; when its setup ends early (a step failed, or
# the daemon died and its go-ahead never came) it calls _exit, a noreturn
# function, and ASan, seeing a stack far from the thread's, says it will not
# clean it up and that false positives may follow. Any such false positive
# would be an error report of its own, and counted.
stack_notice_only() {
  ! grep -qv -e 'ASan is ignoring requested __asan_handle_no_return' \
    -e '^False positive error reports may follow' \
    -e '^For details see https://github.com/google/sanitizers/issues/189' -e '^$' "$1"
}
check_reports() {
  local r n=0
  for r in "$logs"/*; do
    [ -s "$r" ] && [ -z "${seen[$r]:-}" ] || continue
    seen[$r]=1
    if stack_notice_only "$r"; then
      echo "== sanitizer notice ($1), not counted (stack of a sandbox's clone child): $r"
      continue
    fi
    n=$((n+1))
    echo "== sanitizer report ($1): $r"; head -60 "$r"
  done
  reports=$((reports+n))
  [ "$n" -eq 0 ] || add 0 "$n" 0
}
# halt_on_error: the first report ends the process (a test then fails too);
# log_path: reports land in files we count, whatever the test did with the
# process's stderr. Leak checking is on for the unit tests and for the
# daemons of the e2e and security suites (see below).
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:log_path=$logs/asan:strict_string_checks=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
export CB_SAN_LOG_DIR=$logs
export CB_BUILD="$PWD/$sb"

for t in "$sb"/tests/test_*; do
  [ -x "$t" ] || continue
  out=$("$t" 2>&1); rc=$?
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
  echo "== san unit: $(basename "$t"): ${line:-no summary (rc=$rc)}"
  if [ -z "$line" ]; then add 0 1 0; echo "$out" | tail -20; continue; fi
  read -r p _ f _ s _ <<<"$(echo "$line" | tr -d ,)"
  add "$p" "$f" "${s:-0}"
  [ "$f" -eq 0 ] || echo "$out" | grep -v '^ok '
  [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || add 0 1 0
done

check_reports "unit tests"

echo "== san pytest: tests/e2e tests/security"
# Leak checking stays on for the daemons these suites start: a SIGTERM ends
# cellboxd gracefully (tests/e2e/cellboxd.py stop()/terminate() wait for it),
# and its shutdown frees everything it owns, so LeakSanitizer's report at
# exit lands in log_path like any other. (A daemon a test kills with SIGKILL
# never reports; that is the point of those tests.) Hunting a leak: add
# fast_unwind_on_malloc=0 to ASAN_OPTIONS (jansson and libuv have no frame
# pointers) and build with CFLAGS=-fno-optimize-sibling-calls so a handler
# called in tail position keeps its frame.
plog=$(mktemp)
# shellcheck disable=SC2086
/usr/bin/python3 -m pytest -q -rs -p no:cacheprovider tests/e2e tests/security ${CB_SAN_PYTEST:-} 2>&1 | tee "$plog" | tail -25
rc=${PIPESTATUS[0]}
summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "$plog" | tail -1)
p=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
f=$(echo "$summary" | grep -oE '[0-9]+ (failed|errors?)' | awk '{s+=$1} END{print s+0}')
s=$(echo "$summary" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' || echo 0)
add "${p:-0}" "${f:-0}" "${s:-0}"
if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "${f:-0}" -eq 0 ]; then add 0 1 0; fi
grep -E '^(FAILED|ERROR) ' "$plog" || true
rm -f "$plog"

check_reports "e2e and security suites"
echo "san: $reports sanitizer reports (logs in $logs)"
[ "$reports" -eq 0 ] && rm -rf "$logs"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
