#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` once, from the llama.cpp source that the llama-cpp-python sdist
# vendors (PyPI is the only network CI has), and caches the binary under a path keyed by that version.
# Prints the binary's path on stdout (everything else goes to stderr); a second call returns at once.
# A build takes ~14 min on 2 cores; LLAMA_BUILD_JOBS (default 2) bounds its parallelism.
set -euo pipefail

version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cache="${SYNTHGEN_CI_CACHE:-$HOME/.cache/synthgen-ci}/llama-server-${version}"
binary="$cache/llama-server"
jobs="${LLAMA_BUILD_JOBS:-2}"

if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v cmake >/dev/null 2>&1; then
  echo "llama-server.sh: cmake missing, installing it from PyPI" >&2
  "$python" -m pip install -q cmake >&2
fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null 2>&1 || { echo "llama-server.sh: $tool not found" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "llama-server.sh: fetching the llama-cpp-python ${version} sdist" >&2
"$python" -m pip download -q --no-binary :all: --no-deps \
  "llama-cpp-python==${version}" -d "$work" >&2
tar -xzf "$work"/llama_cpp_python-"${version}".tar.gz -C "$work"
src="$work/llama_cpp_python-${version}/vendor/llama.cpp"
[[ -f "$src/CMakeLists.txt" ]] || { echo "llama-server.sh: no llama.cpp source at $src" >&2; exit 1; }

# Options that this llama.cpp knows (older trees lack some; cmake warns on unknown ones, harmlessly).
options=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DGGML_NATIVE=OFF
  -DGGML_CUDA=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_SERVER=ON
)
for option in LLAMA_USE_PREBUILT_UI LLAMA_OPENSSL LLAMA_CURL; do
  if grep -rqs --include=CMakeLists.txt --include='*.cmake' "$option" "$src"; then
    options+=("-D${option}=OFF")
  fi
done
echo "llama-server.sh: building llama-server (-j${jobs}): ${options[*]}" >&2
start=$SECONDS
cmake -S "$src" -B "$work/build" "${options[@]}" >&2
cmake --build "$work/build" --target llama-server -j"$jobs" >&2
echo "llama-server.sh: built in $((SECONDS - start)) s" >&2

built="$(find "$work/build" -type f -name llama-server -perm -u+x | head -n 1)"
[[ -n "$built" ]] || { echo "llama-server.sh: the build made no llama-server" >&2; exit 1; }
mkdir -p "$cache"
# Shared libraries, if this tree still builds any despite BUILD_SHARED_LIBS=OFF, go next to the binary.
find "$work/build" -type f \( -name '*.so' -o -name '*.so.*' \) -exec cp {} "$cache/" \;
cp "$built" "$binary.tmp.$$"
mv "$binary.tmp.$$" "$binary"   # atomic: a half-copied binary is never taken for a cached one
"$binary" --version >&2 || true
echo "$binary"
