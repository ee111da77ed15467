#pragma once

// A CUDA-on-CPU emulator for the entrowatch kernels, for tests only. The
// real src/compute/cuda/*.cu sources, rewritten by transform_cu.cmake (the
// <<<...>>> launch syntax and `extern __shared__` arrays only), compile with
// the host compiler against these headers and run here.
//
// Model:
// - every CUDA thread is a fiber with its own stack; a block's warps run one
//   at a time, each as far as it can before it waits at __syncthreads, in
//   forward, reverse or random order (SetOrder), lanes likewise; blocks run
//   one after another;
// - __syncthreads must be reached by every thread of the block, __syncwarp
//   and warp-collective operations (shuffles, WMMA loads, stores and mma) by
//   every lane of the warp, all at the same call: anything else (a barrier
//   under divergent control flow, exited threads, a deadlock) is a fatal
//   error that names the block and thread;
// - shared memory (dynamic and the kernels' static __shared__ storage) is
//   filled with a poison pattern before every block;
// - 16-byte loads through __ldg / LoadAligned are checked for alignment;
// - cub::BlockReduce / WarpReduce leave poison outside thread / lane 0, as
//   cub documents;
// - work on a non-default stream (copies, memsets, launches) runs only when
//   the host synchronizes, so host code that reads results too early reads
//   poison;
// - WMMA fragments are distributed over the 32 lanes (element e of a tile
//   lives in lane e % 32), so a kernel that touches fragment elements or
//   calls WMMA from a partial warp is caught;
// - ex2.approx.ftz: exp2 in float with subnormal results flushed to zero.
// Not modelled: timing, memory ordering beyond barriers, bank conflicts.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/half.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __restrict__
// Static shared storage: one object per kernel instantiation, poisoned
// before every block (emu::SharedStatic registers it).
#define __shared__ static

#define EW_EMULATED_CUDA 1

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorInvalidConfiguration = 9;
constexpr cudaError_t cudaErrorNotReady = 600;
typedef void* cudaStream_t;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

namespace emu {

// ---- fibers ------------------------------------------------------------

// Context switch without a signal-mask system call (ucontext's swapcontext
// makes one per switch, which would dominate the run time).
extern "C" void emu_switch_context(void** save_sp, void* load_sp);

enum Wait { kRun = 0, kBlockBarrier, kWarpBarrier, kWarpCollective };

struct Fiber {
  void* sp = nullptr;
  unsigned tid = 0;
  bool done = false;
  Wait wait = kRun;
  uintptr_t barrier_site = 0;  // return address of the __syncthreads call
  // Left uninitialized, so that only the pages a thread touches are backed.
  std::unique_ptr<unsigned char[]> stack;
};

// A warp-collective operation: each lane parks its arguments here and
// yields; when the whole warp has arrived, `run` executes once for it.
struct Collective {
  const char* name = nullptr;
  std::function<void(void** lane_args)> run;
  void* args = nullptr;
};

struct State {
  void* scheduler_sp = nullptr;
  Fiber* current = nullptr;
  std::vector<Fiber> fibers;
  std::vector<Collective> collectives;  // per thread
  uint3 block_idx;
  dim3 block_dim, grid_dim;
  std::vector<unsigned char> dyn_smem;
  std::map<const void*, int> max_dyn;
  std::vector<std::pair<void*, size_t>> static_shared;
  cudaError_t last_error = cudaSuccess;
  int order = 0;  // 0 forward, 1 reverse, 2 random
  std::mt19937 rng{1};
  std::function<void()> body;
  long launches = 0;
  long blocks = 0;
  long barriers = 0;
  long collectives_run = 0;
};

inline State& S() {
  static State state;
  return state;
}

// Thread order for every block from now on.
inline void SetOrder(int order) { S().order = order; }

[[noreturn]] inline void Die(const char* what) {
  State& s = S();
  std::fprintf(stderr, "EMU FATAL: %s (block %u,%u thread %d)\n", what, s.block_idx.x,
               s.block_idx.y, s.current != nullptr ? static_cast<int>(s.current->tid) : -1);
  std::fflush(stderr);
  std::_Exit(86);
}

inline void Yield(Wait wait) {
  State& s = S();
  Fiber* f = s.current;
  f->wait = wait;
  emu_switch_context(&f->sp, s.scheduler_sp);
}

[[noreturn]] inline void FiberMain() {
  State& s = S();
  s.body();
  s.current->done = true;
  emu_switch_context(&s.current->sp, s.scheduler_sp);
  std::abort();  // a finished fiber is never resumed
}

constexpr size_t kFiberStackBytes = 256 << 10;

inline void* InitialStack(unsigned char* stack) {
  auto top = reinterpret_cast<uintptr_t>(stack + kFiberStackBytes) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;                                       // fake return address
  *--sp = reinterpret_cast<uint64_t>(&FiberMain);  // `ret` target
  for (int i = 0; i < 6; ++i) *--sp = 0;           // rbp rbx r12-r15
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  *--sp = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fpucw) << 32);
  return sp;
}

inline unsigned WarpEnd(unsigned w0, unsigned threads) { return std::min(threads, w0 + 32); }

// Releases warp w0's barrier or collective when all its lanes wait there.
// Returns true when something was released.
inline bool ReleaseWarp(unsigned w0, unsigned threads) {
  State& s = S();
  const unsigned end = WarpEnd(w0, threads);
  unsigned alive = 0, at_bar = 0, at_coll = 0;
  for (unsigned t = w0; t < end; ++t) {
    const Fiber& f = s.fibers[t];
    if (f.done) continue;
    ++alive;
    at_bar += f.wait == kWarpBarrier;
    at_coll += f.wait == kWarpCollective;
  }
  if (alive == 0 || (at_bar != alive && at_coll != alive)) return false;
  s.current = &s.fibers[w0];
  if (alive != end - w0) {
    Die(at_bar ? "__syncwarp in a warp with exited lanes"
               : "warp-collective operation in a warp with exited lanes");
  }
  if (at_coll) {
    const Collective& first = s.collectives[w0];
    void* args[32] = {};
    for (unsigned t = w0; t < end; ++t) {
      if (s.collectives[t].name != first.name) {
        s.current = &s.fibers[t];
        Die("lanes of a warp at different warp-collective operations");
      }
      args[t - w0] = s.collectives[t].args;
    }
    first.run(args);
    ++s.collectives_run;
  }
  s.current = nullptr;
  for (unsigned t = w0; t < end; ++t) s.fibers[t].wait = kRun;
  return true;
}

// Runs one block. Warps run one at a time, each as far as it can go (through
// its warp barriers and collectives) before the next starts, so a warp races
// ahead of the others as far as a real device would let it: forward order
// runs warp 0 first, reverse the last warp first, random a random warp; the
// lanes of a warp run in the same order.
inline void RunBlock(unsigned threads) {
  State& s = S();
  if (s.fibers.size() < threads) {
    s.fibers.resize(threads);
    s.collectives.resize(threads);
  }
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = s.fibers[t];
    if (!f.stack) f.stack.reset(new unsigned char[kFiberStackBytes]);
    f.sp = InitialStack(f.stack.get());
    f.tid = t;
    f.done = false;
    f.wait = kRun;
    f.barrier_site = 0;
  }
  const unsigned warps = (threads + 31) / 32;
  std::vector<unsigned> warp_order(warps);
  for (unsigned w = 0; w < warps; ++w) warp_order[w] = s.order == 1 ? warps - 1 - w : w;
  std::vector<unsigned> lanes(32);
  for (;;) {
    if (s.order == 2) std::shuffle(warp_order.begin(), warp_order.end(), s.rng);
    bool progressed = false;
    for (unsigned w : warp_order) {
      const unsigned w0 = w * 32;
      const unsigned n = WarpEnd(w0, threads) - w0;
      lanes.resize(n);
      for (unsigned l = 0; l < n; ++l) lanes[l] = s.order == 1 ? n - 1 - l : l;
      for (;;) {
        if (s.order == 2) std::shuffle(lanes.begin(), lanes.end(), s.rng);
        bool ran = false;
        for (unsigned l : lanes) {
          Fiber& f = s.fibers[w0 + l];
          if (f.done || f.wait != kRun) continue;
          s.current = &f;
          emu_switch_context(&s.scheduler_sp, f.sp);
          ran = true;
        }
        s.current = nullptr;
        const bool released = ReleaseWarp(w0, threads);
        if (!ran && !released) break;
        progressed = true;
      }
    }
    unsigned alive = 0, at_block = 0;
    for (unsigned t = 0; t < threads; ++t) {
      if (!s.fibers[t].done) ++alive;
      if (!s.fibers[t].done && s.fibers[t].wait == kBlockBarrier) ++at_block;
    }
    if (alive == 0) break;
    if (at_block > 0 && at_block == alive) {
      if (alive != threads) {
        s.current = &s.fibers[0];
        Die("__syncthreads reached by a block with exited threads");
      }
      const uintptr_t site = s.fibers[0].barrier_site;
      for (unsigned t = 0; t < threads; ++t) {
        if (s.fibers[t].barrier_site != site) {
          s.current = &s.fibers[t];
          Die("threads of a block at different __syncthreads calls");
        }
        s.fibers[t].wait = kRun;
      }
      ++s.barriers;
      progressed = true;
    }
    if (!progressed) {
      for (unsigned t = 0; t < threads; ++t) {
        if (!s.fibers[t].done) {
          s.current = &s.fibers[t];
          break;
        }
      }
      Die("deadlock: the block's threads wait at barriers that can never complete");
    }
  }
}

// ---- shared memory -----------------------------------------------------

constexpr unsigned char kSharedPoison = 0xA5;

// Dynamic shared memory, 128-byte aligned like the device's.
template <typename T>
T* DynShared() {
  const auto p = reinterpret_cast<uintptr_t>(S().dyn_smem.data());
  return reinterpret_cast<T*>((p + 127) & ~uintptr_t{127});
}

// Registers a kernel's static __shared__ object for poisoning (once).
template <typename T>
T& SharedStatic(T& object) {
  static bool registered = false;
  if (!registered) {
    S().static_shared.emplace_back(static_cast<void*>(&object), sizeof(T));
    registered = true;
  }
  return object;
}

// ---- streams -----------------------------------------------------------

struct Stream {
  std::vector<std::function<void()>> ops;
  size_t done = 0;
};

inline void Enqueue(cudaStream_t stream, std::function<void()> f) {
  if (stream == nullptr) {
    f();
    return;
  }
  static_cast<Stream*>(stream)->ops.push_back(std::move(f));
}

inline void Drain(Stream* s, size_t upto) {
  while (s->done < upto) {
    auto f = s->ops[s->done];
    ++s->done;
    f();
  }
}

// ---- launches ----------------------------------------------------------

struct Config {
  dim3 grid, block;
  size_t smem = 0;
  cudaStream_t stream = nullptr;
  Config(dim3 g, dim3 b, size_t sm = 0, cudaStream_t st = nullptr)
      : grid(g), block(b), smem(sm), stream(st) {}
};

template <typename... A>
void Execute(const Config& c, void (*kernel)(A...), std::tuple<std::decay_t<A>...> args) {
  State& s = S();
  s.block_dim = c.block;
  s.grid_dim = c.grid;
  for (unsigned by = 0; by < c.grid.y; ++by) {
    for (unsigned bx = 0; bx < c.grid.x; ++bx) {
      s.block_idx = uint3{bx, by, 0};
      s.dyn_smem.assign(c.smem + 128, kSharedPoison);
      for (auto& [ptr, bytes] : s.static_shared) std::memset(ptr, kSharedPoison, bytes);
      s.body = [&] { std::apply(kernel, args); };
      RunBlock(c.block.x);
      ++s.blocks;
    }
  }
}

// `kernel<<<grid, block, smem, stream>>>(args...)` is rewritten to
// `kernel * emu::Config{grid, block, smem, stream} * emu::Args(args...)`.
template <typename... A>
struct Bound {
  void (*kernel)(A...);
  Config config;
};

template <typename... A>
Bound<A...> operator*(void (*kernel)(A...), Config config) {
  return Bound<A...>{kernel, config};
}

template <typename... V>
std::tuple<V...> Args(V... values) {
  return std::tuple<V...>(values...);
}

template <typename... A, typename... V>
void operator*(Bound<A...> bound, std::tuple<V...> values) {
  State& s = S();
  ++s.launches;
  const Config& c = bound.config;
  const auto it = s.max_dyn.find(reinterpret_cast<const void*>(bound.kernel));
  const size_t limit = it != s.max_dyn.end() ? static_cast<size_t>(it->second) : 48 * 1024;
  if (c.block.x < 1 || c.block.x > 1024 || c.block.y != 1 || c.block.z != 1 || c.grid.x < 1 ||
      c.grid.x > 0x7fffffffu || c.grid.y < 1 || c.grid.y > 65535 || c.grid.z != 1 ||
      c.smem > limit) {
    s.last_error = cudaErrorInvalidConfiguration;
    return;
  }
  std::tuple<std::decay_t<A>...> args(values);
  auto kernel = bound.kernel;
  Enqueue(c.stream, [c, kernel, args] { Execute(c, kernel, args); });
}

// ---- warp collectives --------------------------------------------------

// Parks `args` for the calling lane and waits for the warp; `run` gets the
// 32 lanes' args once all have arrived at the same operation.
inline void WarpCollective(const char* name, void* args, std::function<void(void**)> run) {
  State& s = S();
  Collective& c = s.collectives[s.current->tid];
  c.name = name;
  c.args = args;
  c.run = std::move(run);
  Yield(kWarpCollective);
}

}  // namespace emu

#define threadIdx (::uint3{::emu::S().current->tid, 0, 0})
#define blockIdx (::emu::S().block_idx)
#define blockDim (::emu::S().block_dim)
#define gridDim (::emu::S().grid_dim)

// Every thread of a block must wait at the same __syncthreads call (the
// return address tells call sites apart).
__attribute__((noinline)) inline void __syncthreads() {
  emu::S().current->barrier_site = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  emu::Yield(emu::kBlockBarrier);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) emu::Die("__syncwarp with a partial mask is not modelled");
  emu::Yield(emu::kWarpBarrier);
}

// 16-byte and smaller loads through the read-only path: alignment checked.
template <typename T>
inline T __ldg(const T* p) {
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0) emu::Die("misaligned vector load");
  return *p;
}

inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline int __float_as_int(float f) { return static_cast<int>(__float_as_uint(f)); }

// ex2.approx.ftz.f32: subnormal inputs and results flush to (signed) zero.
inline float EmuExp2Ftz(float x) {
  const float r = std::exp2(x);
  return std::fabs(r) < 1.17549435e-38f ? 0.0f : r;
}

struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};
inline __half __ushort_as_half(unsigned short s) { return __half{s}; }
inline float __half2float(__half h) { return entrowatch::common::HalfToFloat(h.bits); }
inline float __bfloat162float(__nv_bfloat16 h) {
  return entrowatch::common::BFloat16ToFloat(h.bits);
}
inline float EmuToFloat(float v) { return v; }
inline float EmuToFloat(__half v) { return __half2float(v); }
inline float EmuToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::S().last_error;
  emu::S().last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::S().last_error; }

template <typename... A>
inline cudaError_t cudaFuncSetAttribute(void (*f)(A...), cudaFuncAttribute, int value) {
  if (value > 232448) return cudaErrorInvalidValue;  // sm_90 opt-in limit
  emu::S().max_dyn[reinterpret_cast<const void*>(f)] = value;
  return cudaSuccess;
}

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  if (mask != 0xffffffffu) emu::Die("__shfl_xor_sync with a partial mask is not modelled");
  struct Slot {
    T in;
    T out;
    int lane_mask;
  } slot{value, value, lane_mask};
  emu::WarpCollective("shfl_xor", &slot, [](void** lanes) {
    for (int l = 0; l < 32; ++l) {
      auto* me = static_cast<Slot*>(lanes[l]);
      if (me->lane_mask != static_cast<Slot*>(lanes[0])->lane_mask) {
        emu::Die("__shfl_xor_sync with lane masks that differ across the warp");
      }
      me->out = static_cast<Slot*>(lanes[l ^ me->lane_mask])->in;
    }
  });
  return slot.out;
}

namespace cub {

// Result valid in thread 0 only (others get poison), as cub documents.
template <typename T, int kThreads>
class BlockReduce {
 public:
  struct TempStorage {
    T slot[kThreads];
  };
  explicit BlockReduce(TempStorage& s) : s_(emu::SharedStatic(s)) {}
  template <typename Op>
  T Reduce(T in, Op op) {
    const unsigned t = threadIdx.x;
    s_.slot[t] = in;
    __syncthreads();
    T out;
    std::memset(static_cast<void*>(&out), 0xff, sizeof out);
    if (t == 0) {
      T warp_aggr[(kThreads + 31) / 32];
      for (int w = 0; w < (kThreads + 31) / 32; ++w) {
        T v[32];
        for (int l = 0; l < 32; ++l) v[l] = s_.slot[w * 32 + l];
        for (int off = 1; off < 32; off *= 2)
          for (int l = 0; l + off < 32; l += 2 * off) v[l] = op(v[l], v[l + off]);
        warp_aggr[w] = v[0];
      }
      out = warp_aggr[0];
      for (int w = 1; w < (kThreads + 31) / 32; ++w) out = op(out, warp_aggr[w]);
    }
    __syncthreads();
    return out;
  }

 private:
  TempStorage& s_;
};

template <typename T>
class WarpReduce {
 public:
  struct TempStorage {
    T slot[32];
  };
  explicit WarpReduce(TempStorage& s) : s_(s) {}
  template <typename Op>
  T Reduce(T in, Op op) {
    const unsigned lane = threadIdx.x % 32;
    s_.slot[lane] = in;
    __syncwarp();
    T out;
    std::memset(static_cast<void*>(&out), 0xff, sizeof out);
    if (lane == 0) {
      T v[32];
      for (int l = 0; l < 32; ++l) v[l] = s_.slot[l];
      for (int off = 1; off < 32; off *= 2)
        for (int l = 0; l + off < 32; l += 2 * off) v[l] = op(v[l], v[l + off]);
      out = v[0];
    }
    __syncwarp();
    return out;
  }

 private:
  TempStorage& s_;
};

}  // namespace cub

// ---- runtime API used by cuda_engine.cc and kernel_timing.cc ----------

struct EmuEvent {
  emu::Stream* stream = nullptr;
  size_t at = 0;
};
typedef EmuEvent* cudaEvent_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrL2CacheSize = 38 };
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDisableTiming = 2;
struct cudaDeviceProp {
  char name[256];
  int major, minor;
  size_t totalGlobalMem;
  int multiProcessorCount;
  int l2CacheSize;
};

namespace emu {
// Device count the runtime reports (tests of the no-device path set 0).
inline int& DeviceCount() {
  static int count = 1;
  return count;
}
// L2 size the runtime reports (an H100's by default; tests of the timing
// code shrink it so that emulated shapes can exceed it).
inline int& L2Bytes() {
  static int bytes = 50 << 20;
  return bytes;
}
// Memsets run so far, and the size of the last one.
inline long& Memsets() {
  static long count = 0;
  return count;
}
inline size_t& LastMemsetBytes() {
  static size_t bytes = 0;
  return bytes;
}
}  // namespace emu

inline const char* cudaGetErrorName(cudaError_t e) {
  return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated";
}
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "emulated error";
}
inline cudaError_t cudaGetDeviceCount(int* c) {
  *c = emu::DeviceCount();
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int) {
  *v = attr == cudaDevAttrL2CacheSize ? emu::L2Bytes() : 132;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::snprintf(p->name, sizeof p->name, "emulated sm_90");
  p->major = 9;
  p->minor = 0;
  p->totalGlobalMem = size_t{80} << 30;
  p->multiProcessorCount = 132;
  p->l2CacheSize = emu::L2Bytes();
  return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
// Device memory starts as garbage (0xCD), as it would on a device.
inline cudaError_t cudaMalloc(void** p, size_t n) {
  *p = std::aligned_alloc(256, (n + 255) & ~size_t{255});
  if (*p == nullptr) return cudaErrorInvalidValue;
  std::memset(*p, 0xCD, n);
  return cudaSuccess;
}
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t n) {
  return cudaMalloc(reinterpret_cast<void**>(p), n);
}
inline cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void** p, size_t n) { return cudaMalloc(p, n); }
inline cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new emu::Stream;
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete static_cast<emu::Stream*>(s);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (s != nullptr) {
    auto* st = static_cast<emu::Stream*>(s);
    emu::Drain(st, st->ops.size());
  }
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new EmuEvent;
  return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr) {
  e->stream = static_cast<emu::Stream*>(s);
  e->at = s != nullptr ? e->stream->ops.size() : 0;
  return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (e->stream != nullptr) emu::Drain(e->stream, e->at);
  return cudaSuccess;
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
  *ms = 1;
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind,
                                   cudaStream_t st) {
  emu::Enqueue(st, [=] { std::memcpy(d, s, n); });
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
  std::memcpy(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t st = nullptr) {
  emu::Enqueue(st, [=] {
    std::memset(d, v, n);
    ++emu::Memsets();
    emu::LastMemsetBytes() = n;
  });
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* d, int v, size_t n) { return cudaMemsetAsync(d, v, n); }
