#!/usr/bin/env bash
# Build and run every libFuzzer target in tests/fuzz/ (clang from Debian).
#   scripts/fuzz.sh --short        each target for $CB_FUZZ_SECONDS (default 10 s): CI
#   scripts/fuzz.sh --long [SECS]  each target for SECS (default 600 s): nightly
# Targets link against every library and daemon source built with
# -fsanitize=fuzzer-no-link,address,undefined. Crashes are saved under
# build-fuzz/crashes/<target>/ and fail the run. Prints executions per target.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:---short}
secs=${CB_FUZZ_SECONDS:-10}
[ "$mode" = --long ] && secs=${2:-600}
B=build-fuzz
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz: $CC not installed"; exit 1; }
FLAGS="-g -O1 -std=gnu17 -D_GNU_SOURCE -Isrc/lib -Isrc/daemon -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
LIBS="-luv -lsqlite3 -ljansson -lhttp_parser -lwslay -lseccomp -larchive -lcrypto -lpthread"
mkdir -p $B/obj $B/bin
objs=()
for src in src/lib/*.c $(ls src/daemon/*.c src/daemon/api/*.c 2>/dev/null | grep -v 'src/daemon/main.c'); do
  o=$B/obj/$(echo "$src" | tr / _).o
  if [ ! -f "$o" ] || [ "$src" -nt "$o" ]; then
    $CC $FLAGS -c "$src" -o "$o" || { echo "fuzz: cannot compile $src"; exit 1; }
  fi
  objs+=("$o")
done
fail=0; report=()
for t in tests/fuzz/fuzz_*.c; do
  [ -f "$t" ] || continue
  name=$(basename "$t" .c)
  $CC $FLAGS -fsanitize=fuzzer "$t" "${objs[@]}" $LIBS -o $B/bin/$name || { echo "fuzz: cannot build $name"; fail=1; continue; }
  corpus_src=tests/fuzz/corpus/${name#fuzz_}
  work=$B/corpus/$name; mkdir -p "$work" $B/crashes/$name
  [ -d "$corpus_src" ] && cp -n "$corpus_src"/* "$work"/ 2>/dev/null
  log=$B/$name.log
  (cd $B/crashes/$name && "../../bin/$name" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "../../corpus/$name" >"../../$name.log" 2>&1)
  rc=$?
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  if [ $rc -ne 0 ]; then fail=1; echo "fuzz: $name FAILED (rc=$rc), see $log"; tail -30 "$log"; fi
  report+=("$name: $execs executions in ${secs}s, rc=$rc")
done
printf 'fuzz: %s\n' "${report[@]}"
exit $fail
