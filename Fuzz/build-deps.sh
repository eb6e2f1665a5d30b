#!/usr/bin/env bash
# Builds the modules a fuzz target's module imports, instrumented as the target is (libFuzzer coverage +
# AddressSanitizer, Swift's checks kept), into .build-fuzz/deps/, and prints the swiftc arguments that use
# them, one per line: -I/-l flags and object files. Fuzz/fuzz.sh runs it for a module whose folder holds a
# `depends` file (the module names, in dependency order), e.g. Fuzz/DataPipeline/depends.
#
#   Fuzz/build-deps.sh MODULE ...
#
# Known modules: CTurboJPEG (system library), CPUFeatures, CImaging, CKernels and CKernelsReference (C), SeededRandom,
# FileIO, UntrustedJSON, Imaging, Tensors, NN, WeightFiles, Models,
# DataPipeline, CSV (the CSV.swift package, read from the checkouts of any SwiftPM scratch folder here: run
# `swift build` once first). A module is rebuilt only when one of its sources, or the object of a module listed
# before it, is newer than its object. Build output goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SWIFTC=${SWIFTC:-swiftc}
CLANG=${CLANG:-$(dirname "$(command -v "$SWIFTC")")/clang}
DEPS=.build-fuzz/deps
mkdir -p "$DEPS"
args=()

# True when $1 is missing or older than any of the remaining files.
stale() {
  local output=$1
  shift
  [ ! -e "$output" ] || [ -n "$(find "$@" -newer "$output" 2>/dev/null | head -1)" ]
}

# Objects of the modules built so far: a Swift module compiled against them is stale when one of them is newer.
upstream=()

# A Swift module compiled whole into one object, with its .swiftmodule next to it for `import`.
swift_module() {
  local name=$1
  shift
  local sources=("$@")
  local object=$DEPS/$name.o
  if stale "$object" "${sources[@]}" "$0" "${upstream[@]}"; then
    echo "building fuzz dependency $name (${#sources[@]} files)" >&2
    "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -O -g -swift-version 5 -wmo -module-name "$name" \
      -I "$DEPS" -I "$DEPS/CImaging" -I Sources/CTurboJPEG -I Sources/CPUFeatures/include -I CKernels/include \
      -I CKernelsReference/include "${module_flags[@]}" \
      -emit-module -emit-module-path "$DEPS/$name.swiftmodule" -c "${sources[@]}" -o "$object" >&2
  fi
  args+=("$object")
  upstream+=("$object")
}

# A C target of this package compiled for baseline x86-64: c_module NAME SOURCE_DIR INCLUDE_DIR CLANG_FLAGS...
# (its module map ships in INCLUDE_DIR).
c_module() {
  local name=$1 folder=$2 include=$3
  shift 3
  mkdir -p "$DEPS/$name"
  for source in "$folder"/*.c; do
    local object=$DEPS/$name/$(basename "$source" .c).o
    if stale "$object" "$source" "$folder"/*.h "$include"/*.h CKernels/include/*.h "$0"; then
      echo "building fuzz dependency $name/$(basename "$source")" >&2
      "$CLANG" -fsanitize=fuzzer-no-link,address -g -Wall -Wextra "$@" -I "$include" -c "$source" -o "$object" >&2
    fi
    args+=("$object")
    upstream+=("$object")
  done
  args+=(-I "$include")
}

# A Swift module of this package: Sources/NAME, compiled whole.
package_module() {
  local sources
  mapfile -t sources < <(find "Sources/$1" -name '*.swift' | sort)
  swift_module "$1" "${sources[@]}"
}

for module in "$@"; do
  module_flags=()
  case "$module" in
    CTurboJPEG)
      args+=(-I Sources/CTurboJPEG -lturbojpeg)
      ;;
    CPUFeatures)
      # The CPU feature detector CImaging and CKernels use: baseline x86-64, as in Package.swift.
      c_module CPUFeatures Sources/CPUFeatures Sources/CPUFeatures/include -O1
      ;;
    CKernelsReference)
      # The kernels' reference twins: as in Package.swift, baseline x86-64 without FP contraction.
      c_module CKernelsReference CKernelsReference CKernelsReference/include -O1 -ffp-contract=off -I CKernels/include
      ;;
    CImaging)
      mkdir -p "$DEPS/CImaging"
      for source in Sources/CImaging/*.c; do
        object=$DEPS/CImaging/$(basename "$source" .c).o
        if stale "$object" "$source" Sources/CImaging/include/*.h "$0"; then
          echo "building fuzz dependency CImaging/$(basename "$source")" >&2
          # The package's flags (x86-64-v3), instrumented; -O1 keeps ASan's reports readable.
          "$CLANG" -fsanitize=fuzzer-no-link,address -O1 -g -march=x86-64-v3 -Wall -Wextra \
            -I Sources/CImaging/include -I Sources/CPUFeatures/include -c "$source" -o "$object" >&2
        fi
        args+=("$object")
      done
      # SwiftPM writes this module map for the package build; the fuzz build needs its own.
      printf 'module CImaging {\n    header "%s"\n    export *\n}\n' "$ROOT/Sources/CImaging/include/cimaging.h" \
        >"$DEPS/CImaging/module.modulemap.new"
      cmp -s "$DEPS/CImaging/module.modulemap.new" "$DEPS/CImaging/module.modulemap" 2>/dev/null \
        || mv "$DEPS/CImaging/module.modulemap.new" "$DEPS/CImaging/module.modulemap"
      rm -f "$DEPS/CImaging/module.modulemap.new"
      args+=(-I "$DEPS/CImaging" -ljpeg)
      # libpng once Imaging reads PNG (the package links it from CImaging).
      if grep -q png16 Package.swift; then args+=(-lpng16); fi
      ;;
    CKernels)
      # The convolution / batch norm / pooling kernels: the package's flags (x86-64-v3, OpenMP), instrumented;
      # -O1 keeps ASan's reports readable. The module map ships in CKernels/include.
      mkdir -p "$DEPS/CKernels"
      for source in CKernels/src/*.c; do
        object=$DEPS/CKernels/$(basename "$source" .c).o
        if stale "$object" "$source" CKernels/src/*.h CKernels/include/*.h Sources/CPUFeatures/include/*.h "$0"; then
          echo "building fuzz dependency CKernels/$(basename "$source")" >&2
          "$CLANG" -fsanitize=fuzzer-no-link,address -O1 -g -march=x86-64-v3 -fopenmp -Wall -Wextra \
            -I CKernels/include -I Sources/CPUFeatures/include -c "$source" -o "$object" >&2
        fi
        args+=("$object")
        upstream+=("$object")
      done
      args+=(-I CKernels/include -lopenblas -lomp5 -lm)
      ;;
    SeededRandom | FileIO | UntrustedJSON | Tensors | NN | WeightFiles | Models | DataPipeline)
      package_module "$module"
      ;;
    Imaging)
      # As in Package.swift: the resampler's 8-lane integer SIMD is compiled for AVX2.
      module_flags=(-target-cpu haswell)
      mapfile -t sources < <(find Sources/Imaging -name '*.swift' | sort)
      swift_module Imaging "${sources[@]}"
      ;;
    CSV)
      checkout=$(ls -d .build*/checkouts/CSV.swift/Sources/CSV 2>/dev/null | head -1 || true)
      if [ -z "$checkout" ]; then
        echo "build-deps.sh: CSV.swift is not checked out; run swift build (or swift package resolve) once" >&2
        exit 1
      fi
      mapfile -t sources < <(find "$checkout" -name '*.swift' | sort)
      swift_module CSV "${sources[@]}"
      ;;
    *)
      echo "build-deps.sh: unknown module '$module'" >&2
      exit 2
      ;;
  esac
done
args+=(-I "$DEPS")
printf '%s\n' "${args[@]}"
