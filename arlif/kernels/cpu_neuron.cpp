// Fused multi-step neuron for CPU: forward and backward through time in one call each.
//
// Work is split into blocks of B neurons (one parallel work item each).  A block sweeps
// the time steps row by row, so every row of x, spikes, flags and gradients is read or
// written as one contiguous run, while the per-neuron state (u, r, ...) and, in backward,
// the rebuilt trajectory stay in a per-thread buffer sized for L2.  Memory traffic is x,
// the spikes and one flag byte per neuron-step (bit 0 spike, bit 1 surrogate window) in
// forward; x, the flags and the two gradients in backward.  The derivation is in
// docs/kernels.md.
//
// Bit-exactness with the PyTorch reference: every forward quantity is formed with the
// same float operations in the same order (no FMA contraction: built with
// -ffp-contract=off); sigmoid is the formula of PyTorch's vectorised CPU kernel,
// 1 / (1 + exp(0 - x)) with the same SLEEF exp; the threshold's tanh is a fast SLEEF one
// whose spike and window decisions are certified, and vectors it cannot certify are rerun
// with at::tanh, the reference's own function (forward_step).

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/SequenceNumber.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t L = Vec::size();

enum Reset : int64_t { HARD = 0, SOFT = 1, ADAPTIVE = 2 };

struct Params {
  float decay, v_threshold, width, half_width, alpha, beta;
};

inline Vec sigmoid(const Vec& x) {
  return ((Vec(0.f) - x).exp() + Vec(1.f)).reciprocal();
}

// Floats of per-block scratch per neuron in backward (r or h history, σ(i), σ(α·i), and
// two running gradients); the forward needs 4.
inline int64_t scratch_per_neuron(int64_t T) {
  return 3 * (T + 1) + 2;
}

// Neuron-steps below which a block's work is not worth waking another thread for: a small
// input runs as one block on the calling thread (at::parallel_for runs one item inline).
constexpr int64_t kMinBlockSteps = int64_t{1} << 14;

// Neurons per block: a multiple of L whose scratch fits in about 256 KiB of L2, at most
// an equal share of N per thread so that every thread gets work, and at least
// kMinBlockSteps / T neurons (or all N).
int64_t block_size(int64_t T, int64_t N) {
  const int64_t cache_bound = std::max<int64_t>(256, (int64_t{1} << 16) / scratch_per_neuron(T));
  const int64_t per_thread = std::max((N + at::get_num_threads() - 1) / at::get_num_threads(),
                                      kMinBlockSteps / std::max<int64_t>(T, 1));
  const int64_t b = std::min({cache_bound, per_thread, N});  // no scratch beyond N neurons
  return std::max<int64_t>(L, (b + L - 1) / L * L);
}

// Valid lanes of the vector starting at neuron j of a block ending at n1.
inline int64_t lanes(int64_t j, int64_t n1) {
  return std::min<int64_t>(n1 - j, L);
}

// Per-neuron scratch rows are padded to whole vectors, so a ragged last block can load and
// store full vectors (the padding lanes compute on zeros).
inline int64_t padded(int64_t n) {
  return (n + L - 1) / L * L;
}

inline void store_flags(uint8_t* dst, const Vec& s, const Vec& win, int64_t cnt) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m128i bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(s + win + win));
  if (cnt == L) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), bytes);
  else _mm_mask_storeu_epi8(dst, static_cast<__mmask16>((1u << cnt) - 1), bytes);
#else
  float buf[L];
  (s + win + win).store(buf);
  for (int64_t l = 0; l < cnt; ++l) dst[l] = static_cast<uint8_t>(buf[l]);
#endif
}

inline void load_flags(const uint8_t* src, Vec& s, Vec& win, int64_t cnt) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m128i bytes = cnt == L ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(src))
                                 : _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << cnt) - 1), src);
  const __m512i f = _mm512_cvtepu8_epi32(bytes);
  s = Vec(_mm512_cvtepi32_ps(_mm512_and_si512(f, _mm512_set1_epi32(1))));
  win = Vec(_mm512_cvtepi32_ps(_mm512_srli_epi32(f, 1)));
#else
  float sb[L] = {0.f}, wb[L] = {0.f};
  for (int64_t l = 0; l < cnt; ++l) {
    sb[l] = static_cast<float>(src[l] & 1);
    wb[l] = static_cast<float>(src[l] >> 1);
  }
  s = Vec::loadu(sb);
  win = Vec::loadu(wb);
#endif
}

// tanh for the adaptive threshold: SLEEF's 3.5-ulp version, about 6x cheaper than the
// at::tanh the reference calls (MKL VML in the x86 wheels).
inline Vec fast_tanh(const Vec& x) {
#if defined(CPU_CAPABILITY_AVX512)
  return Vec(Sleef_tanhf16_u35(x));
#elif defined(CPU_CAPABILITY_AVX2)
  return Vec(Sleef_tanhf8_u35(x));
#else
  return x.tanh();
#endif
}

// Bound on |fast_tanh(x) - at::tanh(x)|: both lie within 3.5 ulp and 1 ulp of tanh(x), and
// every |tanh(x)| < 1 has an ulp of at most 2^-24, so they differ by less than 2^-21.
// (Measured over all 2^32 floats against MKL: at most 2^-24.)
constexpr float kTanhGap = 0x1p-20f;
// One rounding moves a result by at most 2^-24 of its magnitude (plus a subnormal step):
// kRound = 2^-22 and kTiny = 2^-120 over-cover that fourfold.
constexpr float kRound = 0x1p-22f;
constexpr float kTiny = 0x1p-120f;

// How the adaptive threshold gets tanh(i): not at all (β = 0: V + 0·tanh(i) is V exactly),
// from fast_tanh with certified decisions, or from at::tanh values passed in.
enum class Tanh { NONE, FAST, EXACT };

// Per-layer constants of one forward step.
struct StepConsts {
  Vec decay, vth0, half_width, alpha, beta, round, z_slack, reset_slack;
  bool same_gate;  // α = 1: σ(1·i) is σ(i) to the bit, compute it once

  explicit StepConsts(const Params& p)
      : decay(p.decay), vth0(p.v_threshold), half_width(p.half_width), alpha(p.alpha),
        beta(p.beta), round(kRound), same_gate(p.alpha == 1.f) {
    // |Vth| ≤ vmax; dv bounds |Vth - Vth_ref|; the slacks add the roundings of
    // z = h - Vth (|z| ≤ |h| + vmax) and of u = h - (Vth + σ(r)) (σ ≤ 1).
    const float vmax = std::abs(p.v_threshold) + std::abs(p.beta);
    const float dv = std::abs(p.beta) * kTanhGap + kRound * (std::abs(p.beta) + vmax) + kTiny;
    z_slack = Vec(dv + kRound * (vmax + p.half_width) + kTiny);
    reset_slack = Vec(dv + kRound * (vmax + 1.f) + kTiny);
  }
};

// One forward step of one vector: updates the state (u, r) and, with Tanh::FAST, du (a
// bound on |u - u_ref|) and doubt (lanes whose decision is not certified); returns the
// spike and window bits.  `tanh_i` is read only with Tanh::EXACT.
//
// Certification: with tanh off by at most kTanhGap the threshold is off by at most dv; the
// charge h starts exact (h_0 = i_0) and drifts only through resets that use the threshold,
// by at most dh, which also absorbs every rounding (the bounds may use fused multiply-adds:
// they only need to be large enough).  If z = h - Vth lies further than dh + dv (plus
// roundings) from 0 and from ±a/2, the reference's z is on the same side of both, so its
// spike and window bits equal ours.  The memory r does not depend on the threshold, so it is
// exact while the spikes are.
template <int64_t RESET, Tanh TANH>
inline void forward_step(const Vec& i, const Vec& tanh_i, const StepConsts& c, Vec& u, Vec& r,
                         Vec& du, Vec& doubt, Vec& s, Vec& win) {
  const Vec zero(0.f), one(1.f), two(2.f);
  const Vec ku = c.decay * u;
  const Vec h = ku + i;
  Vec vth = c.vth0;
  if constexpr (TANH == Tanh::FAST) vth = c.beta * fast_tanh(i) + c.vth0;
  if constexpr (TANH == Tanh::EXACT) vth = c.beta * tanh_i + c.vth0;
  const Vec z = h - vth;
  const Vec az = z.abs();
  s = z.ge(zero);
  win = az.le(c.half_width);
  Vec dh;
  if constexpr (TANH == Tanh::FAST) {
    const Vec ah = h.abs();
    dh = at::vec::fmadd(c.decay, du, at::vec::fmadd(c.round, ku.abs() + ah, Vec(kTiny)));
    const Vec margin = at::vec::fmadd(c.round, ah, dh + c.z_slack);
    doubt = doubt | (at::vec::minimum(az, (az - c.half_width).abs()) <= margin);
  }
  if constexpr (RESET == HARD) {
    u = h * (one - s);
  } else if constexpr (RESET == SOFT) {
    u = h - s * vth;
  } else {
    const Vec q = sigmoid(i);
    const Vec g = c.same_gate ? q : sigmoid(c.alpha * i);
    r = Vec::blendv((one - g) * r, g * r, r >= zero) + (two * s - one) * q;
    u = h - s * (vth + sigmoid(r));
    if constexpr (TANH == Tanh::FAST) {
      du = at::vec::fmadd(s, at::vec::fmadd(c.round, h.abs() + u.abs(), c.reset_slack), dh);
    }
  }
}

// Rerun the vector at neuron j from t = 0 with tanh from at::tanh (the reference's).  The
// tensors here need no gradient, so at::tanh_out also runs on worker threads, which do not
// inherit the caller's no-grad mode.
template <int64_t RESET>
void forward_exact_vector(const float* xp, float* spikes, uint8_t* flags, int64_t T, int64_t N,
                          int64_t j, int64_t n1, const StepConsts& c) {
  const int64_t cnt = lanes(j, n1);
  at::Tensor tanh_x = at::zeros({T, L}, at::kFloat);
  at::Tensor valid = tanh_x.narrow(1, 0, cnt);
  at::tanh_out(valid, at::from_blob(const_cast<float*>(xp + j), {T, cnt}, {N, 1}, at::kFloat));
  const float* tp = tanh_x.data_ptr<float>();
  Vec u(0.f), r(0.f), du(0.f), doubt(0.f), s, win;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = t * N + j;
    forward_step<RESET, Tanh::EXACT>(Vec::loadu(xp + o, cnt), Vec::loadu(tp + t * L), c, u, r,
                                     du, doubt, s, win);
    s.store(spikes + o, cnt);
    store_flags(flags + o, s, win, cnt);
  }
}

// Forward of the block [n0, n1), row by row; state holds u, r, du, doubt for its neurons.
// Returns how many vectors were rerun exactly.
template <int64_t RESET, Tanh TANH>
int64_t forward_block(const float* xp, float* spikes, uint8_t* flags, int64_t T, int64_t N,
                      int64_t n0, int64_t n1, const StepConsts& c, float* state) {
  const int64_t B = padded(n1 - n0);
  float *su = state, *sr = state + B, *sdu = state + 2 * B, *sdoubt = state + 3 * B;
  std::fill(state, state + 4 * B, 0.f);
  constexpr bool has_r = RESET == ADAPTIVE, certify = TANH == Tanh::FAST;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = n0; j < n1; j += L) {
      const int64_t cnt = lanes(j, n1), o = t * N + j, m = j - n0;
      Vec u = Vec::loadu(su + m), r, du, doubt, s, win;
      if (has_r) r = Vec::loadu(sr + m);
      if (certify) {
        du = Vec::loadu(sdu + m);
        doubt = Vec::loadu(sdoubt + m);
      }
      forward_step<RESET, TANH>(Vec::loadu(xp + o, cnt), Vec(0.f), c, u, r, du, doubt, s, win);
      u.store(su + m);
      if (has_r) r.store(sr + m);
      if (certify) {
        du.store(sdu + m);
        doubt.store(sdoubt + m);
      }
      s.store(spikes + o, cnt);
      store_flags(flags + o, s, win, cnt);
    }
  }
  int64_t reruns = 0;
  if constexpr (TANH == Tanh::FAST) {
    for (int64_t j = n0; j < n1; j += L) {
      const int64_t cnt = lanes(j, n1);
      const int valid = (1 << cnt) - 1;
      if ((Vec::loadu(sdoubt + j - n0).zero_mask() & valid) != valid) {
        forward_exact_vector<RESET>(xp, spikes, flags, T, N, j, n1, c);
        ++reruns;
      }
    }
  }
  return reruns;
}

// Forward over rows [T, N] (row t at x + t·N); returns how many vectors were rerun exactly.
template <int64_t RESET, Tanh TANH>
int64_t forward_impl(const float* x, float* spikes, uint8_t* flags, int64_t T, int64_t N, const Params& p) {
  const int64_t B = block_size(T, N), nblocks = (N + B - 1) / B;
  const StepConsts c(p);
  std::vector<int64_t> reruns(nblocks, 0);
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> state(4 * B);
    for (int64_t b = b0; b < b1; ++b) {
      reruns[b] = forward_block<RESET, TANH>(x, spikes, flags, T, N, b * B, std::min(N, (b + 1) * B), c,
                                             state.data());
    }
  });
  int64_t total = 0;
  for (int64_t n : reruns) total += n;
  return total;
}

// Backward over the block [n0, n1).  scratch (scratch_per_neuron(T)·B floats) receives the
// rebuilt trajectory [t][neuron] and the running values; the block's partial sums of
// dL/dα and dL/dβ are added to acc_alpha and acc_beta.
template <int64_t RESET, bool THRESH, bool GRAD_ALPHA, bool GRAD_BETA>
void backward_block(const float* x, const uint8_t* flags, const float* grad_s, float* grad_x,
                    int64_t T, int64_t N, int64_t n0, int64_t n1, const Params& p,
                    float* scratch, double& acc_alpha, double& acc_beta) {
  const Vec decay(p.decay), vth0(p.v_threshold), inv_width(1.f / p.width), one(1.f), zero(0.f);
  const Vec alpha(p.alpha), beta(p.beta), two(2.f);
  const bool same_gate = p.alpha == 1.f;
  const int64_t B = padded(n1 - n0);
  float* hist = scratch;                 // [t][B]: r[t-1] (AR-LIF, t ≤ T) or h[t] (hard)
  float* qs = scratch + (T + 1) * B;     // σ(i[t])
  float* gs = scratch + 2 * (T + 1) * B; // σ(α·i[t])
  float* s_gu = scratch + 3 * (T + 1) * B;  // dL/du[t] per neuron (u[t-1] in pass 1)
  float* s_gr = s_gu + B;                    // dL/dr[t] per neuron
  std::fill(s_gu, s_gu + 2 * B, 0.f);
  // Pass 1, forward in time: rebuild the state the reverse pass needs (u before step t
  // for the hard reset lives in s_gu until pass 2 zeroes it).
  if constexpr (RESET != SOFT) {
    if constexpr (RESET == ADAPTIVE) std::fill(hist, hist + B, 0.f);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = n0; j < n1; j += L) {
        const int64_t cnt = lanes(j, n1), o = t * N + j, m = j - n0;
        Vec s, win;
        load_flags(flags + o, s, win, cnt);
        const Vec i = Vec::loadu(x + o, cnt);
        if constexpr (RESET == HARD) {
          const Vec h = decay * Vec::loadu(s_gu + m) + i;
          h.store(hist + t * B + m);
          (h * (one - s)).store(s_gu + m);
        } else {
          const Vec q = sigmoid(i);
          const Vec g = same_gate ? q : sigmoid(alpha * i);
          const Vec r = Vec::loadu(hist + t * B + m);
          g.store(gs + t * B + m);
          q.store(qs + t * B + m);
          (Vec::blendv((one - g) * r, g * r, r >= zero) + (two * s - one) * q).store(hist + (t + 1) * B + m);
        }
      }
    }
    std::fill(s_gu, s_gu + B, 0.f);
  }
  // Pass 2, backward in time.  gu = dL/du[t], gr = dL/dr[t] from step t + 1.
  for (int64_t t = T - 1; t >= 0; --t) {
    Vec sum_alpha(0.f), sum_beta(0.f);  // this row's terms (padding lanes add zeros)
    for (int64_t j = n0; j < n1; j += L) {
      const int64_t cnt = lanes(j, n1), o = t * N + j, m = j - n0;
      Vec s, win;
      load_flags(flags + o, s, win, cnt);
      const Vec gu = Vec::loadu(s_gu + m);
      Vec gs_total = Vec::loadu(grad_s + o, cnt);
      Vec gh = gu, gvth = zero, gi = zero, a = zero, i = zero;
      if constexpr (RESET == HARD) {
        gh = gu * (one - s);
        gs_total = gs_total - gu * Vec::loadu(hist + t * B + m);
      } else if constexpr (RESET == SOFT) {
        gs_total = gs_total - gu * vth0;
      } else {
        i = Vec::loadu(x + o, cnt);
        if (THRESH || GRAD_BETA) a = fast_tanh(i);  // enters gradients only
        const Vec vth = THRESH ? beta * a + vth0 : vth0;
        const Vec r_prev = Vec::loadu(hist + t * B + m);
        const Vec pr = sigmoid(Vec::loadu(hist + (t + 1) * B + m));
        const Vec q = Vec::loadu(qs + t * B + m), g = Vec::loadu(gs + t * B + m);
        const Vec su = s * gu;
        const Vec gr_t = Vec::loadu(s_gr + m) - su * pr * (one - pr);  // dL/dr[t], all paths
        gs_total = gs_total - gu * (vth + pr) + two * q * gr_t;
        gvth = zero - su;
        gi = (two * s - one) * gr_t * q * (one - q);
        // R[t] = c·r[t-1], c = g if r[t-1] >= 0 else 1 - g
        const Vec nonneg = r_prev >= zero;
        const Vec dc = r_prev * gr_t;                                          // dL/dc
        const Vec dpre = Vec::blendv(zero - dc, dc, nonneg) * g * (one - g);  // dL/d(α·i)
        gi = gi + dpre * alpha;
        if (GRAD_ALPHA) sum_alpha = sum_alpha + dpre * i;
        Vec::blendv((one - g) * gr_t, g * gr_t, nonneg).store(s_gr + m);
      }
      const Vec gz = gs_total * win * inv_width;
      gh = gh + gz;
      gvth = gvth - gz;
      if (THRESH) gi = gi + gvth * beta * (one - a * a);
      if (GRAD_BETA) sum_beta = sum_beta + gvth * a;
      (gi + gh).store(grad_x + o, cnt);
      (decay * gh).store(s_gu + m);
    }
    float vals[L];
    if (GRAD_ALPHA) {
      sum_alpha.store(vals);
      for (int64_t l = 0; l < L; ++l) acc_alpha += vals[l];
    }
    if (GRAD_BETA) {
      sum_beta.store(vals);
      for (int64_t l = 0; l < L; ++l) acc_beta += vals[l];
    }
  }
}

template <int64_t RESET, bool THRESH, bool GRAD_ALPHA, bool GRAD_BETA>
void backward_impl(const float* x, const uint8_t* flags, const float* grad_s, float* grad_x, int64_t T,
                   int64_t N, const Params& p, double& galpha, double& gbeta) {
  const int64_t B = block_size(T, N);
  const int64_t nblocks = (N + B - 1) / B;
  std::vector<double> part_alpha(nblocks, 0.0), part_beta(nblocks, 0.0);
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> scratch(scratch_per_neuron(T) * B);
    for (int64_t b = b0; b < b1; ++b) {
      backward_block<RESET, THRESH, GRAD_ALPHA, GRAD_BETA>(x, flags, grad_s, grad_x, T, N, b * B,
                                                           std::min(N, (b + 1) * B), p, scratch.data(),
                                                           part_alpha[b], part_beta[b]);
    }
  });
  galpha = 0.0;
  gbeta = 0.0;
  for (int64_t b = 0; b < nblocks; ++b) {  // fixed order: deterministic
    galpha += part_alpha[b];
    gbeta += part_beta[b];
  }
}

Params make_params(double decay, double v_threshold, double width, double alpha, double beta) {
  return Params{static_cast<float>(decay), static_cast<float>(v_threshold),
                static_cast<float>(width), static_cast<float>(width / 2),
                static_cast<float>(alpha), static_cast<float>(beta)};
}

// A fresh output tensor (sizes and strides of a dense layout) whose untouched pages the kernel
// may back with 2 MiB pages: the first-touch page faults of a 4 KiB-paged output otherwise
// cost as much as the kernel.
at::Tensor empty_output(at::IntArrayRef sizes, at::IntArrayRef strides, const at::TensorOptions& options) {
  at::Tensor out = at::empty_strided(sizes, strides, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t huge = uintptr_t{1} << 21;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t first = (begin + huge - 1) & ~(huge - 1);
  const uintptr_t last = (begin + out.nbytes()) & ~(huge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
  return out;
}

// Forward over rows [T, N]: the kernel instance for the reset and β.
int64_t forward_rows(const float* x, float* spikes, uint8_t* flags, int64_t T, int64_t N, int64_t reset,
                     const Params& p) {
  if (reset == HARD) return forward_impl<HARD, Tanh::NONE>(x, spikes, flags, T, N, p);
  if (reset == SOFT) return forward_impl<SOFT, Tanh::NONE>(x, spikes, flags, T, N, p);
  if (p.beta != 0.f) return forward_impl<ADAPTIVE, Tanh::FAST>(x, spikes, flags, T, N, p);
  return forward_impl<ADAPTIVE, Tanh::NONE>(x, spikes, flags, T, N, p);
}

// Backward over rows [T, N] (x unused, may be null, for the soft reset): grad_x and the
// sums dL/dα, dL/dβ (zero when not requested).
void backward_rows(const float* x, const uint8_t* flags, const float* grad_s, float* grad_x, int64_t T,
                   int64_t N, int64_t reset, const Params& p, bool grad_alpha, bool grad_beta, double& ga,
                   double& gb) {
  ga = 0.0;
  gb = 0.0;
#define ARLIF_BWD(R, TH, GA, GB) backward_impl<R, TH, GA, GB>(x, flags, grad_s, grad_x, T, N, p, ga, gb)
  if (reset == HARD) ARLIF_BWD(HARD, false, false, false);
  else if (reset == SOFT) ARLIF_BWD(SOFT, false, false, false);
  else if (p.beta != 0.f) {
    if (grad_alpha && grad_beta) ARLIF_BWD(ADAPTIVE, true, true, true);
    else if (grad_alpha) ARLIF_BWD(ADAPTIVE, true, true, false);
    else if (grad_beta) ARLIF_BWD(ADAPTIVE, true, false, true);
    else ARLIF_BWD(ADAPTIVE, true, false, false);
  } else {
    if (grad_alpha && grad_beta) ARLIF_BWD(ADAPTIVE, false, true, true);
    else if (grad_alpha) ARLIF_BWD(ADAPTIVE, false, true, false);
    else if (grad_beta) ARLIF_BWD(ADAPTIVE, false, false, true);
    else ARLIF_BWD(ADAPTIVE, false, false, false);
  }
#undef ARLIF_BWD
}

void check_input(const at::Tensor& x, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.is_contiguous() && x.scalar_type() == dtype,
              name, " must be a contiguous 2-D CPU tensor [T, N] of ", dtype);
}

}  // namespace

// Returns (spikes fp32 [T, N], flags uint8 [T, N], number of SIMD vectors whose spike or
// window decisions needed the exact tanh).
std::tuple<at::Tensor, at::Tensor, int64_t> forward(const at::Tensor& x, int64_t reset,
                                                     double decay, double v_threshold,
                                                     double width, double alpha, double beta) {
  check_input(x, "x", at::kFloat);
  auto spikes = empty_output(x.sizes(), x.strides(), x.options());
  auto flags = empty_output(x.sizes(), x.strides(), x.options().dtype(at::kByte));
  const int64_t reruns = forward_rows(x.data_ptr<float>(), spikes.data_ptr<float>(), flags.data_ptr<uint8_t>(),
                                      x.size(0), x.size(1), reset, make_params(decay, v_threshold, width, alpha, beta));
  return {spikes, flags, reruns};
}

// Returns (grad_x [T, N], dL/dα, dL/dβ), the scalars as fp32 0-d tensors (zero when not
// requested).  x is not needed (None) for the soft reset.
std::vector<at::Tensor> backward(const std::optional<at::Tensor>& x, const at::Tensor& flags,
                                 const at::Tensor& grad_s, int64_t reset, double decay,
                                 double v_threshold, double width, double alpha, double beta,
                                 bool grad_alpha, bool grad_beta) {
  check_input(flags, "flags", at::kByte);
  check_input(grad_s, "grad_s", at::kFloat);
  TORCH_CHECK(grad_s.sizes() == flags.sizes(), "grad_s and flags must have the same shape");
  const float* xp = nullptr;
  if (reset != SOFT) {
    TORCH_CHECK(x.has_value(), "x is needed for this reset");
    check_input(*x, "x", at::kFloat);
    TORCH_CHECK(x->sizes() == flags.sizes(), "x and flags must have the same shape");
    xp = x->data_ptr<float>();
  }
  auto grad_x = empty_output(grad_s.sizes(), grad_s.strides(), grad_s.options());
  double ga, gb;
  backward_rows(xp, flags.data_ptr<uint8_t>(), grad_s.data_ptr<float>(), grad_x.data_ptr<float>(), flags.size(0),
                flags.size(1), reset, make_params(decay, v_threshold, width, alpha, beta), grad_alpha, grad_beta, ga,
                gb);
  auto opts = grad_s.options().dtype(at::kFloat);
  return {grad_x, at::scalar_tensor(static_cast<float>(ga), opts), at::scalar_tensor(static_cast<float>(gb), opts)};
}

namespace {

// Whether x is dense with its steps outermost (contiguous, channels_last per step, ...): its
// memory is then rows [T, N] as it lies, since neurons are elementwise and their order in a row
// is free.  Other layouts are copied to contiguous ones.
bool steps_outermost(const at::Tensor& x) {
  return x.is_non_overlapping_and_dense() && (x.size(0) <= 1 || x.stride(0) * x.size(0) == x.numel());
}

// x in fp32 in the layout the kernels read it in: x's own when its steps are outermost (`to` keeps a
// dense tensor's strides), else a contiguous copy.
at::Tensor float_rows(const at::Tensor& x) {
  if (steps_outermost(x)) return x.to(at::kFloat);
  return at::empty(x.sizes(), x.options().dtype(at::kFloat)).copy_(x);
}

// The eager call's autograd node: its backward runs the kernels above on what the forward kept.
// A plain autograd Node, as PyTorch's own operators have, rather than a custom Function: the
// same graph, saved-tensor checks and hooks, with less fixed cost per call (docs/benchmarks.md).
struct NeuronBackward : public torch::autograd::Node {
  torch::autograd::SavedVariable x, flags;  // x: the call's input (undefined for the soft reset)
  int64_t reset = 0;
  Params params{};
  bool squash = false;
  std::vector<int64_t> sizes, strides;  // the layout the kernels read x in (and grad_x takes)

  std::string name() const override { return "ARLIFNeuronBackward"; }

  void release_variables() override {
    x.reset_data();
    flags.reset_data();
  }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const at::Tensor flag_rows = flags.unpack();
    at::Tensor rows;
    if (reset != SOFT) rows = float_rows(x.unpack());
    // The gradient in fp32 and in the layout the forward read x in (one copy when it differs).
    const at::Tensor grad_s = grad.strides() == at::IntArrayRef(strides)
                                  ? grad.to(at::kFloat)
                                  : at::empty_strided(sizes, strides, grad.options().dtype(at::kFloat)).copy_(grad);
    const int64_t T = sizes[0], N = T ? grad_s.numel() / T : 0;
    at::Tensor grad_x = empty_output(sizes, strides, grad_s.options());
    const bool want_alpha = should_compute_output(1), want_beta = should_compute_output(2);
    double ga, gb;
    backward_rows(rows.defined() ? rows.data_ptr<float>() : nullptr, flag_rows.data_ptr<uint8_t>(),
                  grad_s.data_ptr<float>(), grad_x.data_ptr<float>(), T, N, reset, params, want_alpha, want_beta,
                  ga, gb);
    const auto scalar = grad.options().dtype(at::kFloat);
    at::Tensor g_alpha, g_beta;
    if (want_alpha) g_alpha = at::scalar_tensor(static_cast<float>(ga), scalar);
    if (want_beta) {
      const float beta = params.beta;
      // With `squash`, dL/db: tanh's derivative as autograd's tanh backward forms it.
      g_beta = at::scalar_tensor(squash ? static_cast<float>(gb) * (1.f - beta * beta) : static_cast<float>(gb),
                                 scalar);
    }
    return {should_compute_output(0) ? grad_x.to(grad.scalar_type()) : at::Tensor(), g_alpha, g_beta};
  }
};

// A new node, held as the installed torch holds autograd nodes: by c10::intrusive_ptr in recent
// releases, by std::shared_ptr in older ones (torch 2.11's, as on the GPU machines).  Edge::function
// names the holder, so one source builds against either.
template <typename NodeT>
auto make_node() {
  if constexpr (std::is_same_v<decltype(torch::autograd::Edge::function), std::shared_ptr<torch::autograd::Node>>)
    return std::make_shared<NodeT>();
  else
    return c10::make_intrusive<NodeT>();
}

}  // namespace

// The eager call: spikes for x [T, ...] (any float dtype, math in fp32) with one autograd node whose
// backward runs the kernels, β = tanh(b) and its derivative computed here when `squash` (b is then
// AR-LIF's beta_raw).  Spikes and grad_x keep x's dtype and, when its steps are outermost, its layout;
// the kernels read and write the tensors' memory directly (no view, and no copy where x and the
// gradient are fp32 in that layout).
at::Tensor eager(const at::Tensor& x, const std::optional<at::Tensor>& alpha, const std::optional<at::Tensor>& b,
                 int64_t reset, double decay, double v_threshold, double width, bool squash) {
  TORCH_CHECK(x.dim() >= 1 && x.device().is_cpu(), "x must be a CPU tensor [T, ...]");
  TORCH_CHECK(reset != ADAPTIVE || (alpha.has_value() && b.has_value()), "the adaptive reset needs alpha and beta");
  TORCH_CHECK(!torch::autograd::isFwGradDefined(x) && !torch::autograd::isFwGradDefined(alpha) &&
                  !torch::autograd::isFwGradDefined(b),
              "the fused neuron has no forward-mode derivative; use backend='reference'");
  // A profiler range, when one records, with the sequence number the node gets: the profiler pairs
  // the node's backward with this forward by it (arlif.runner.profiling.attribute_time).
  RECORD_FUNCTION("arlif::neuron_eager", std::vector<c10::IValue>(), at::sequence_number::peek());
  decltype(make_node<NeuronBackward>()) node;
  if (torch::autograd::compute_requires_grad(x, alpha, b)) {
    node = make_node<NeuronBackward>();  // takes the sequence number peeked above
    node->set_next_edges(torch::autograd::collect_next_edges(x, alpha, b));
  }
  at::Tensor spikes;
  {
    at::AutoGradMode no_grad(false);
    const at::Tensor rows = float_rows(x);
    const int64_t T = x.size(0), N = T ? x.numel() / T : 0;
    double a = 1.0, beta = 0.0;
    if (reset == ADAPTIVE) {
      a = alpha->item<double>();
      beta = (squash ? at::tanh(b->to(at::kFloat)) : *b).item<double>();
    }
    const Params params = make_params(decay, v_threshold, width, a, beta);
    spikes = empty_output(rows.sizes(), rows.strides(), rows.options());
    at::Tensor flags = empty_output({T, N}, {N, 1}, rows.options().dtype(at::kByte));
    forward_rows(rows.data_ptr<float>(), spikes.data_ptr<float>(), flags.data_ptr<uint8_t>(), T, N, reset, params);
    spikes = spikes.to(x.scalar_type());  // keeps the layout
    if (node) {
      if (reset != SOFT) node->x = torch::autograd::SavedVariable(x, false);
      node->flags = torch::autograd::SavedVariable(flags, false);
      node->reset = reset;
      node->params = params;
      node->squash = squash;
      node->sizes = rows.sizes().vec();
      node->strides = rows.strides().vec();
    }
  }
  if (node) torch::autograd::set_history(spikes, node);
  return spikes;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused multi-step neuron forward");
  m.def("backward", &backward, "fused multi-step neuron backward through time");
  m.def("eager", &eager, "spikes with autograd, for eager calls (x [T, ...] any layout and float dtype)");
}
