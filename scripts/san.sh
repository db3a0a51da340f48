#!/usr/bin/env bash
# The suite under AddressSanitizer + UndefinedBehaviorSanitizer: builds
# `make SAN=1` (build-san/; cellbox-init stays a static libc-only binary) and
# runs every unit test binary, then the e2e and security pytest suites against
# build-san/cellboxd and build-san/tools/cbrun (CB_BUILD). Every sanitizer
# report is written to a log file (log_path) and halts the process that hit
# it; the run fails on any test failure and on any report, which are printed.
# Ends with one "N passed, M failed, K skipped" line like scripts/test.sh.
#   CB_SAN_PYTEST="-k foo"  extra pytest arguments
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0; failed=0; skipped=0
add() { passed=$((passed+$1)); failed=$((failed+$2)); skipped=$((skipped+$3)); }

echo "== san: make SAN=1"
if ! make -s -j"$(nproc)" SAN=1 all >/tmp/cb-san-build.$$ 2>&1; then
  tail -40 /tmp/cb-san-build.$$; rm -f /tmp/cb-san-build.$$
  echo "0 passed, 1 failed, 0 skipped"; exit 1
fi
rm -f /tmp/cb-san-build.$$

logs=$(mktemp -d /tmp/cb-san-logs.XXXXXX)
# halt_on_error: the first report ends the process (a test then fails too);
# log_path: reports land in files we count, whatever the test did with the
# process's stderr. Leak checking is on for the unit tests (see below for the
# daemon).
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:log_path=$logs/asan:strict_string_checks=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
export CB_SAN_LOG_DIR=$logs
export CB_BUILD="$PWD/build-san"

for t in build-san/tests/test_*; do
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

echo "== san pytest: tests/e2e tests/security"
# The daemons these suites start exit on SIGTERM with requests and sandboxes
# in flight; LeakSanitizer then reports what shutdown does not free (known,
# listed in docs/security.md), which would drown real findings. Address and
# UB checks stay on; leaks are checked in the unit tests above.
export ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}"
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

reports=0
for r in "$logs"/*; do
  [ -s "$r" ] || continue
  reports=$((reports+1))
  echo "== sanitizer report: $r"; head -40 "$r"
done
echo "san: $reports sanitizer reports (logs in $logs)"
[ "$reports" -eq 0 ] || add 0 "$reports" 0
[ "$reports" -eq 0 ] && rm -rf "$logs"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
