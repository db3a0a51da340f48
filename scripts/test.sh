#!/usr/bin/env bash
# Run the whole cellbox test suite: C unit tests, then the end-to-end,
# security and SDK tests (pytest against a real cellboxd), then the short
# fuzz runs, the sanitizer runs and the unit tests in a cgroup v2 VM. Ends
# with one "N passed, M failed, K skipped" line; exits non-zero on any
# failure.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export CB_BUILD="$PWD/$BUILD"
passed=0; failed=0; skipped=0
add() { passed=$((passed+$1)); failed=$((failed+$2)); skipped=$((skipped+$3)); }

# 1. C unit tests: every binary prints "N passed, M failed, K skipped".
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  echo "== unit: $(basename "$t")"
  out=$("$t" 2>&1); rc=$?
  echo "$out" | grep -v '^ok ' || true
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
  if [ -z "$line" ]; then add 0 1 0; echo "   (no summary line, rc=$rc)"; continue; fi
  read -r p _ f _ s _ <<<"$(echo "$line" | tr -d ,)"
  add "$p" "$f" "${s:-0}"
  [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || add 0 1 0
done

# 2. pytest suites (Debian's pytest runs on /usr/bin/python3).
PYTEST_DIRS=()
for d in tests/e2e tests/security sdk/python/tests; do [ -d "$d" ] && PYTEST_DIRS+=("$d"); done
if ((${#PYTEST_DIRS[@]})); then
  echo "== pytest: ${PYTEST_DIRS[*]}"
  log=$(mktemp)
  /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider "${PYTEST_DIRS[@]}" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "$log" | tail -1)
  p=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
  f=$(echo "$summary" | grep -oE '[0-9]+ (failed|errors?)' | awk '{s+=$1} END{print s+0}')
  s=$(echo "$summary" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' || echo 0)
  add "${p:-0}" "${f:-0}" "${s:-0}"
  # rc 5 = no tests collected; anything else non-zero is a failure.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "${f:-0}" -eq 0 ]; then add 0 1 0; fi
  rm -f "$log"
fi

# 3. Short fuzz runs (long runs: scripts/fuzz.sh --long).
if [ -x scripts/fuzz.sh ] && [ "${CB_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz (short)"
  if scripts/fuzz.sh --short; then add 1 0 0; else add 0 1 0; fi
fi

# 4. The unit, e2e and security suites again under ASan+UBSan (build-san/);
#    any sanitizer report fails it. CB_SKIP_SAN=1 skips.
if [ -x scripts/san.sh ] && [ "${CB_SKIP_SAN:-0}" != 1 ]; then
  echo "== sanitizers (scripts/san.sh)"
  slog=$(mktemp)
  scripts/san.sh 2>&1 | tee "$slog"
  src=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$slog" | tail -1)
  if [ -n "$line" ]; then
    read -r p _ f _ s _ <<<"$(echo "$line" | tr -d ,)"
    add "$p" "$f" "${s:-0}"
  fi
  if [ "$src" -ne 0 ] && { [ -z "$line" ] || [ "${f:-0}" -eq 0 ]; }; then add 0 1 0; fi
  rm -f "$slog"
fi

# 5. The unit tests again in a VM on Debian 12's own kernel (6.1) with
#    cgroup v2 and its controllers (scripts/vm.sh): the kernel and cgroup
#    version most users run, which this host does not. CB_SKIP_VM=1 skips;
#    a host that cannot run the guest counts one skip and says why.
if [ -x scripts/vm.sh ] && [ "${CB_SKIP_VM:-0}" != 1 ]; then
  echo "== unit tests in a Debian 12 kernel VM with cgroup v2 (scripts/vm.sh)"
  vlog=$(mktemp)
  scripts/vm.sh unit 2>&1 | tee "$vlog"
  vrc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$vlog" | tail -1)
  if [ "$vrc" -eq 3 ]; then
    add 0 0 1
  elif [ -n "$line" ]; then
    read -r p _ f _ s _ <<<"$(echo "$line" | tr -d ,)"
    add "$p" "$f" "${s:-0}"
    [ "$vrc" -eq 0 ] || [ "${f:-0}" -gt 0 ] || add 0 1 0
  else
    add 0 1 0
  fi
  rm -f "$vlog"
fi

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
