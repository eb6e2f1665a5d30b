#!/usr/bin/env bash
# Builds and runs the libFuzzer targets under Fuzz/ (layout and conventions: Fuzz/README.md).
#
#   Fuzz/fuzz.sh SECONDS [TARGET ...]    each TARGET (default: all) for SECONDS, then a summary line each
#   Fuzz/fuzz.sh build [TARGET ...]      build only
#
# Targets are compiled with swiftc straight from Sources/<Module>/ plus the harness, so `swift build` and
# `swift test` never see them. Binaries, logs and the growing working corpus live in .build-fuzz/;
# crash, timeout and out-of-memory inputs land in Fuzz/artifacts/<target>/ (gitignored).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SWIFTC=${SWIFTC:-swiftc}
OUT=.build-fuzz
ARTIFACTS=Fuzz/artifacts

mode=${1:?usage: Fuzz/fuzz.sh SECONDS|build [TARGET ...]}
shift
if [ "$mode" != build ] && ! [[ "$mode" =~ ^[0-9]+$ ]]; then
  echo "fuzz.sh: SECONDS must be a whole number, got '$mode'" >&2
  exit 2
fi

# Every Fuzz/<Module>/<target>/main.swift is a target; its name must be unique across modules.
declare -A module_of
for harness in Fuzz/*/*/main.swift; do
  [ -e "$harness" ] || continue
  dir=$(dirname "$harness")
  target=$(basename "$dir")
  module=$(basename "$(dirname "$dir")")
  if [ -n "${module_of[$target]:-}" ]; then
    echo "fuzz.sh: target name '$target' is used by both ${module_of[$target]} and $module" >&2
    exit 2
  fi
  module_of[$target]=$module
done
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(printf '%s\n' "${!module_of[@]}" | sort)
fi
for target in "${targets[@]}"; do
  if [ -z "${module_of[$target]:-}" ]; then
    echo "fuzz.sh: no target '$target' (known: $(printf '%s ' "${!module_of[@]}"))" >&2
    exit 2
  fi
done

build() {
  local target=$1 module=${module_of[$1]}
  local binary=$OUT/$target
  local sources
  mapfile -t sources < <(find "Sources/$module" -name '*.swift' | sort;
                         find "Fuzz/$module" -maxdepth 1 -name '*.swift' | sort;
                         find "Fuzz/$module/$target" -name '*.swift' | sort)
  # Optional extra swiftc arguments for the module (e.g. -I for a C module map, -l for a library).
  local extra=()
  if [ -f "Fuzz/$module/swiftc-flags" ]; then
    read -r -a extra < <(grep -v '^#' "Fuzz/$module/swiftc-flags" | tr '\n' ' ')
  fi
  # Package modules the module imports (Fuzz/<Module>/depends), built instrumented by Fuzz/build-deps.sh;
  # their objects join the sources, so a rebuilt dependency rebuilds the target.
  if [ -f "Fuzz/$module/depends" ]; then
    local dep_args
    dep_args=$(Fuzz/build-deps.sh $(grep -v '^#' "Fuzz/$module/depends")) || return 1
    for arg in $dep_args; do
      case "$arg" in *.o) sources+=("$arg") ;; *) extra+=("$arg") ;; esac
    done
  fi
  if [ -x "$binary" ] && [ -z "$(find "${sources[@]}" "Fuzz/fuzz.sh" -newer "$binary" 2>/dev/null | head -1)" ]; then
    return 0
  fi
  mkdir -p "$OUT"
  echo "building fuzz target $target ($module, ${#sources[@]} files)"
  # -O keeps Swift's overflow and bounds checks (only -Ounchecked drops them), so a trap is a finding.
  # The harness is compiled into the module itself, so it may use the module's internal helpers.
  "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -O -g -swift-version 5 -use-ld=lld \
    -module-name "$module" "${extra[@]}" "${sources[@]}" -o "$binary"
}

status=0
for target in "${targets[@]}"; do
  build "$target" || { echo "fuzz.sh: building $target failed" >&2; exit 1; }
done
[ "$mode" = build ] && exit 0

summary=()
for target in "${targets[@]}"; do
  module=${module_of[$target]}
  dir=Fuzz/$module/$target
  work=$OUT/corpus/$target
  mkdir -p "$work" "$ARTIFACTS/$target" "Fuzz/corpus/$target"
  options=()
  # Per-target libFuzzer flags (one per line) and token dictionary.
  [ -f "$dir/options" ] && mapfile -t options < <(grep -v -e '^#' -e '^$' "$dir/options")
  [ -f "$dir/dict" ] && options+=("-dict=$dir/dict")
  log=$OUT/$target.log
  echo "fuzzing $target for ${mode}s (log: $log)"
  # New inputs go to the first corpus folder (the working copy); the committed seeds stay as they are.
  # A single input running 10 s is reported as a hang.
  "$OUT/$target" -max_total_time="$mode" -print_final_stats=1 -timeout=10 \
    -artifact_prefix="$ARTIFACTS/$target/" "${options[@]}" "$work" "Fuzz/corpus/$target" >"$log" 2>&1
  code=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  seconds=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  if [ $code -eq 0 ]; then
    result=ok
  else
    status=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="FAILED (exit $code${artifact:+, input: $artifact}; see $log)"
  fi
  summary+=("$(printf '%-16s %12s executions in %6ss  %s' "$target" "${runs:-?}" "${seconds:-?}" "$result")")
done
echo
printf '%s\n' "${summary[@]}"
exit $status
