#!/usr/bin/env bash
# Compile-check (no link, no GPU) the CUDA-only C++ code of lseg_cpp on a machine without CUDA.
#
# The CPU torch wheel ships the ATen/cuda and c10/cuda headers; the CUDA runtime headers
# (cuda_runtime_api.h, driver_types.h, ...) come from the nvidia-cuda-runtime-cu12 wheel and the
# crt/ headers that cuda_runtime.h includes from the nvidia-cuda-nvcc-cu12 wheel, unpacked without
# installing them (12.9.79 and 12.9.86 were used):
#     pip download --no-deps nvidia-cuda-runtime-cu12 'nvidia-cuda-nvcc-cu12==12.9.*' -d /tmp/cudawhl
#     unzip -q -o /tmp/cudawhl/nvidia_cuda_runtime_cu12-*.whl 'nvidia/*' -d /tmp/cudahdr
#     unzip -q -o /tmp/cudawhl/nvidia_cuda_nvcc_cu12-*.whl 'nvidia/cuda_nvcc/include/*' -d /tmp/cudahdr_nvcc
# Override the locations with CUDA_INCLUDE / CUDA_CRT_INCLUDE (e.g. both /usr/local/cuda/include).
#
# Checks cpp/src/cuda_graph.cpp and cpp/src/aoti_backend.cpp with -DLSEG_WITH_CUDA=1 (the CUDA build's
# view), and main.cpp / aoti_backend.cpp without it (the CPU build's view), all with -Wall -Wextra
# -Werror. This proves the code is well-formed against this torch's headers only; the GPU machine
# (torch 2.11) builds it for real through CMake.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TORCH_INC=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')
TORCH_VER=$("$PY" -c 'import torch; print(torch.__version__)')
CUDA_INCLUDE=${CUDA_INCLUDE:-/tmp/cudahdr/nvidia/cuda_runtime/include}
CUDA_CRT_INCLUDE=${CUDA_CRT_INCLUDE:-/tmp/cudahdr_nvcc/nvidia/cuda_nvcc/include}
CXX=${CXX:-g++}
if [ ! -f "$CUDA_INCLUDE/cuda_runtime_api.h" ]; then
  echo "cpp_cuda_syntax_check: $CUDA_INCLUDE/cuda_runtime_api.h not found; see the header of this script" >&2
  exit 2
fi
if [ ! -f "$CUDA_CRT_INCLUDE/crt/host_config.h" ]; then
  echo "cpp_cuda_syntax_check: $CUDA_CRT_INCLUDE/crt/host_config.h not found; see the header of this script" >&2
  exit 2
fi
# A CUDA wheel ships c10/cuda/impl/cuda_cmake_macros.h (generated at torch's build); the CPU wheel
# does not. Supply the one line it holds in a CUDA build, in a temp folder searched after torch's.
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
if [ ! -f "$TORCH_INC/c10/cuda/impl/cuda_cmake_macros.h" ]; then
  mkdir -p "$stub/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$stub/c10/cuda/impl/cuda_cmake_macros.h"
fi
common=(-std=c++20 -fsyntax-only -Wall -Wextra -Werror -D_GLIBCXX_USE_CXX11_ABI=1
        -isystem "$TORCH_INC" -isystem "$TORCH_INC/torch/csrc/api/include")
echo "torch $TORCH_VER headers: $TORCH_INC; CUDA headers: $CUDA_INCLUDE, $CUDA_CRT_INCLUDE; $($CXX --version | head -1)"
for f in cpp/src/cuda_graph.cpp cpp/src/aoti_backend.cpp cpp/src/main.cpp cpp/src/bench.cpp cpp/src/cli.cpp; do
  echo "  LSEG_WITH_CUDA=1  $f"
  "$CXX" "${common[@]}" -DLSEG_WITH_CUDA=1 -isystem "$CUDA_INCLUDE" -isystem "$CUDA_CRT_INCLUDE" -idirafter "$stub" "$f"
done
for f in cpp/src/aoti_backend.cpp cpp/src/main.cpp cpp/src/bench.cpp cpp/src/cli.cpp cpp/src/npy.cpp cpp/src/atomic_file.cpp; do
  echo "  CPU build         $f"
  "$CXX" "${common[@]}" "$f"
done
echo "cpp_cuda_syntax_check: OK"
