#!/usr/bin/env bash
# Builds llama-quantize, llama-perplexity and llama-imatrix from the llama.cpp source that node-llama-cpp
# ships (node_modules/node-llama-cpp/llama/gitRelease.bundle), into .cache/llama.cpp/bin. Benches find them
# there (bench/llamaCpp.ts). No network: the source is cloned from the local git bundle. Idempotent: an
# existing clone is reused and cmake only rebuilds what changed; nothing is done when the three binaries
# already exist and are newer than the bundle. Needs git, cmake and a C/C++ compiler.
# Usage: scripts/build-llama-cpp.sh [jobs]   (default: all cores)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="$root/node_modules/node-llama-cpp/llama/gitRelease.bundle"
src="$root/.cache/llama.cpp-src"
build="$src/build"
bin="$root/.cache/llama.cpp/bin"
tools=(llama-quantize llama-perplexity llama-imatrix)
jobs="${1:-$(nproc 2>/dev/null || echo 2)}"

if [[ ! -f "$bundle" ]]; then
  echo "build-llama-cpp: $bundle is missing; run npm install first (node-llama-cpp ships the llama.cpp source there)" >&2
  exit 1
fi
for cmd in git cmake; do
  command -v "$cmd" >/dev/null || { echo "build-llama-cpp: $cmd is not installed" >&2; exit 1; }
done

up_to_date=1
for t in "${tools[@]}"; do
  if [[ ! -x "$bin/$t" || "$bundle" -nt "$bin/$t" ]]; then up_to_date=0; fi
done
if [[ $up_to_date == 1 ]]; then
  echo "build-llama-cpp: ${tools[*]} already in $bin"
  exit 0
fi

if [[ ! -d "$src/.git" ]]; then
  rm -rf "$src"
  mkdir -p "$(dirname "$src")"
  git clone --quiet "$bundle" "$src"
else
  # the bundle may be newer (node-llama-cpp upgraded): fetch its head from the bundle, still no network
  git -C "$src" fetch --quiet "$bundle" && git -C "$src" checkout --quiet --detach FETCH_HEAD
fi

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$build" --config Release -j "$jobs" --target "${tools[@]}"

mkdir -p "$bin"
for t in "${tools[@]}"; do
  cp "$build/bin/$t" "$bin/$t"
done
echo "build-llama-cpp: built ${tools[*]} into $bin"
