# Rewrites a CUDA source for the emulator (emu_cuda.h):
#   kernel<<<grid, block, smem, stream>>>(args)
#     -> kernel * emu::Config(grid, block, smem, stream) * emu::Args(args)
#   extern __shared__ T name[];  ->  T* name = emu::DynShared<T>();
# Optionally applies one mutation (MUTATE_FROM -> MUTATE_TO, which must
# match exactly once; write ; as @SEMI@, which CMake lists cannot carry)
# for the tests that prove the emulator catches broken kernels.
# Usage: cmake -DIN=a.cu -DOUT=a.cc [-DMUTATE_FROM=.. -DMUTATE_TO=..] -P transform_cu.cmake
file(READ "${IN}" src)
if(DEFINED MUTATE_FROM)
  string(REPLACE "@SEMI@" ";" MUTATE_FROM "${MUTATE_FROM}")
  string(REPLACE "@SEMI@" ";" MUTATE_TO "${MUTATE_TO}")
  string(FIND "${src}" "${MUTATE_FROM}" first)
  if(first EQUAL -1)
    message(FATAL_ERROR "mutation: '${MUTATE_FROM}' not found in ${IN}")
  endif()
  string(LENGTH "${MUTATE_FROM}" from_length)
  math(EXPR after "${first} + ${from_length}")
  string(SUBSTRING "${src}" ${after} -1 rest)
  string(FIND "${rest}" "${MUTATE_FROM}" second)
  if(NOT second EQUAL -1)
    message(FATAL_ERROR "mutation: '${MUTATE_FROM}' found more than once in ${IN}")
  endif()
  string(REPLACE "${MUTATE_FROM}" "${MUTATE_TO}" src "${src}")
endif()
string(REPLACE "<<<" " * emu::Config(" src "${src}")
string(REPLACE ">>>(" ") * emu::Args(" src "${src}")
string(REPLACE "__align__(16) " "" src "${src}")
string(REGEX REPLACE "extern __shared__ ([A-Za-z_0-9 ()]*[A-Za-z_0-9)]) ([A-Za-z_0-9]+)\\[\\];"
       "\\1* \\2 = emu::DynShared<\\1>();" src "${src}")
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by transform_cu.cmake: do not edit.\n${src}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
