#pragma once

// fp16 / bf16 -> fp32 conversion shared by the CPU engines and the CUDA
// kernels (no CUDA header here: EW_HD expands to __host__ __device__ only
// under nvcc).

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define EW_HD __host__ __device__ __forceinline__
#else
#define EW_HD inline
#endif

namespace entrowatch::common {

EW_HD float BitsToFloat(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

EW_HD uint32_t FloatToBits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

EW_HD float BFloat16ToFloat(uint16_t h) { return BitsToFloat(static_cast<uint32_t>(h) << 16); }

// Round-to-nearest-even; NaN stays NaN.
EW_HD uint16_t FloatToBFloat16(float f) {
  uint32_t bits = FloatToBits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((bits >> 16) | 0x40u);
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

EW_HD float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) {  // inf / nan
    return BitsToFloat(sign | 0x7f800000u | (mant << 13));
  }
  if (exp == 0) {
    if (mant == 0) {
      return BitsToFloat(sign);
    }
    // Subnormal: value = mant * 2^-24.
    const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -magnitude : magnitude;
  }
  return BitsToFloat(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Round-to-nearest-even; overflow becomes inf.
EW_HD uint16_t FloatToHalf(float f) {
  const uint32_t bits = FloatToBits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) {
    return sign | 0x7e00u;
  }
  if (abs >= 0x477ff000u) {  // rounds to >= 65520: inf
    return sign | 0x7c00u;
  }
  if (abs < 0x38800000u) {  // below the smallest normal: subnormal or zero
    const float magnitude = BitsToFloat(abs);
    const uint32_t mant = static_cast<uint32_t>(magnitude * 16777216.0f + 0.5f);
    return sign | static_cast<uint16_t>(mant);
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return sign | static_cast<uint16_t>(((rounded >> 23) - 112u) << 10 | ((rounded >> 13) & 0x3ffu));
}

}  // namespace entrowatch::common
