#pragma once
// Emulated nvcuda::wmma (see emu_cuda.h): fragments are distributed over the
// warp's 32 lanes, element e of a tile (row-major index) in lane e % 32, and
// every *_sync operation is warp-collective: all 32 lanes must call it with
// the same pointer and leading dimension. Pointers must be 32-byte aligned
// and leading dimensions a multiple of 16 bytes, as on the device.

#include <type_traits>

#include "emu_cuda.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int kRows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int kCols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = kRows * kCols / 32;
  static constexpr bool kColMajor = std::is_same_v<Layout, col_major>;
  float x[num_elements];  // this lane's elements: tile element lane + 32 * i
};

namespace detail {

template <typename Frag>
struct IoArgs {
  Frag* frag;
  const void* ptr;
  unsigned ldm;
  bool col_major;
};

inline void CheckIo(const void* p, unsigned ldm, size_t element_bytes) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0) emu::Die("wmma: pointer not 32-byte aligned");
  if ((ldm * element_bytes) % 16 != 0) emu::Die("wmma: ldm not a multiple of 16 bytes");
}

template <typename Frag>
void CheckUniform(void** lanes) {
  const auto* first = static_cast<IoArgs<Frag>*>(lanes[0]);
  for (int l = 1; l < 32; ++l) {
    const auto* a = static_cast<IoArgs<Frag>*>(lanes[l]);
    if (a->ptr != first->ptr || a->ldm != first->ldm || a->col_major != first->col_major) {
      emu::Die("wmma: lanes of a warp passed different pointers or leading dimensions");
    }
  }
}

template <typename Frag, typename T>
void Load(Frag& f, const T* p, unsigned ldm, bool col_major) {
  CheckIo(p, ldm, sizeof(T));
  IoArgs<Frag> args{&f, p, ldm, col_major};
  emu::WarpCollective("wmma::load_matrix_sync", &args, [](void** lanes) {
    CheckUniform<Frag>(lanes);
    const auto* a = static_cast<IoArgs<Frag>*>(lanes[0]);
    const T* src = static_cast<const T*>(a->ptr);
    for (int e = 0; e < Frag::kRows * Frag::kCols; ++e) {
      const int r = e / Frag::kCols, c = e % Frag::kCols;
      const T v = a->col_major ? src[c * a->ldm + r] : src[r * a->ldm + c];
      static_cast<IoArgs<Frag>*>(lanes[e % 32])->frag->x[e / 32] = EmuToFloat(v);
    }
  });
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  static_assert(std::is_same_v<T, P>, "wmma: fragment and memory types differ");
  detail::Load(f, p, ldm, fragment<Use, M, N, K, T, Layout>::kColMajor);
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                      layout_t layout) {
  detail::Load(f, p, ldm, layout == mem_col_major);
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                       layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, float>;
  detail::CheckIo(p, ldm, sizeof(float));
  detail::IoArgs<const Frag> args{&f, p, ldm, layout == mem_col_major};
  emu::WarpCollective("wmma::store_matrix_sync", &args, [](void** lanes) {
    detail::CheckUniform<const Frag>(lanes);
    const auto* a = static_cast<detail::IoArgs<const Frag>*>(lanes[0]);
    float* dst = static_cast<float*>(const_cast<void*>(a->ptr));
    for (int e = 0; e < M * N; ++e) {
      const int r = e / N, c = e % N;
      const float v = static_cast<detail::IoArgs<const Frag>*>(lanes[e % 32])->frag->x[e / 32];
      (a->col_major ? dst[c * a->ldm + r] : dst[r * a->ldm + c]) = v;
    }
  });
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float v) {
  for (float& x : f.x) x = v;
}

template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b,
              const fragment<accumulator, M, N, K, float>& c) {
  using FA = fragment<matrix_a, M, N, K, T, LA>;
  using FB = fragment<matrix_b, M, N, K, T, LB>;
  using FC = fragment<accumulator, M, N, K, float>;
  struct Args {
    FC* d;
    const FA* a;
    const FB* b;
    const FC* c;
  } args{&d, &a, &b, &c};
  emu::WarpCollective("wmma::mma_sync", &args, [](void** lanes) {
    auto lane = [&](int l) { return static_cast<Args*>(lanes[l]); };
    float A[M * K], B[K * N], C[M * N];
    for (int e = 0; e < M * K; ++e) A[e] = lane(e % 32)->a->x[e / 32];
    for (int e = 0; e < K * N; ++e) B[e] = lane(e % 32)->b->x[e / 32];
    for (int e = 0; e < M * N; ++e) C[e] = lane(e % 32)->c->x[e / 32];
    // Products of 16-bit inputs are exact in float; sums accumulate in float.
    for (int r = 0; r < M; ++r) {
      for (int col = 0; col < N; ++col) {
        float acc = C[r * N + col];
        for (int k = 0; k < K; ++k) acc = std::fma(A[r * K + k], B[k * N + col], acc);
        C[r * N + col] = acc;
      }
    }
    for (int e = 0; e < M * N; ++e) lane(e % 32)->d->x[e / 32] = C[e];
  });
}

}  // namespace nvcuda::wmma
