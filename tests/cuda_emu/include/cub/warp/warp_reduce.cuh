#pragma once
// Emulated CUDA header for the tests in tests/cuda_emu (see emu_cuda.h).
#include "emu_cuda.h"
