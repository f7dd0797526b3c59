// f32 activations to the formats the weight types take them in (DEVELOPERS.md, Kernel ABI), with
// llama.cpp's x86 SIMD semantics:
//   q8_0 (34 bytes per 32): amax = max|x|, d = amax/127 stored f16, id = 127/amax (0 when amax is 0),
//        q = round-half-even(x*id) (quantize_row_q8_0, AVX path);
//   q8_1 (36 bytes per 32): q8_0 plus s = f16(d * sum(q)), d the f32 value (quantize_row_q8_1);
//   f16, bf16: round to nearest even (F16C's vcvtps2ph; ggml_compute_fp32_to_bf16).
// Each SIMD body has its scalar reference beside it (the *_ref exports).
import { f32_to_f16, f32_to_bf16, i32x4_hsum, Q8_0_BYTES, Q8_1_BYTES } from "./common";

// ---- q8_0 / q8_1 ----

@inline function quantize_block_q8(src: usize, dst: usize, withSum: bool): void {
  const v0 = v128.load(src), v1 = v128.load(src, 16), v2 = v128.load(src, 32), v3 = v128.load(src, 48);
  const v4 = v128.load(src, 64), v5 = v128.load(src, 80), v6 = v128.load(src, 96), v7 = v128.load(src, 112);
  let m = f32x4.max(
    f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3))),
    f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))));
  m = f32x4.max(m, i32x4.shuffle(m, m, 2, 3, 0, 1));
  m = f32x4.max(m, i32x4.shuffle(m, m, 1, 0, 3, 2));
  const amax = f32x4.extract_lane(m, 0);
  const d = amax / 127;
  const id: f32 = amax != 0 ? <f32>127 / amax : 0;
  const s = f32x4.splat(id);
  const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v0, s)));
  const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v1, s)));
  const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v2, s)));
  const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v3, s)));
  const q4 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v4, s)));
  const q5 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v5, s)));
  const q6 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v6, s)));
  const q7 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v7, s)));
  const qs = dst + (withSum ? 4 : 2);
  // saturating narrows, like _mm256_packs_epi32 / _mm256_packs_epi16
  v128.store(qs, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  v128.store(qs, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q4, q5), i16x8.narrow_i32x4_s(q6, q7)), 16);
  store<u16>(dst, f32_to_f16(d));
  if (withSum) {
    const sum = i32x4_hsum(i32x4.add(i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3)),
      i32x4.add(i32x4.add(q4, q5), i32x4.add(q6, q7))));
    store<u16>(dst, f32_to_f16(d * <f32>sum), 2);
  }
}

@inline function quantize_block_q8_ref(src: usize, dst: usize, withSum: bool): void {
  let amax: f32 = 0;
  for (let j = 0; j < 32; j++) amax = max(amax, abs(load<f32>(src + (<usize>j << 2))));
  const d = amax / 127;
  const id: f32 = amax != 0 ? <f32>127 / amax : 0;
  const qs = dst + (withSum ? 4 : 2);
  let sum = 0;
  for (let j = 0; j < 32; j++) {
    const q = min(127, max(-128, <i32>nearest<f32>(load<f32>(src + (<usize>j << 2)) * id)));
    store<i8>(qs + <usize>j, <i8>q);
    sum += q;
  }
  store<u16>(dst, f32_to_f16(d));
  if (withSum) store<u16>(dst, f32_to_f16(d * <f32>sum), 2);
}

/** n f32 (a multiple of 32) at src to q8_0 blocks at dst. */
export function quantize_q8_0(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n >> 5; b++) quantize_block_q8(src + (<usize>b << 7), dst + <usize>b * Q8_0_BYTES, false);
}

export function quantize_q8_0_ref(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n >> 5; b++) quantize_block_q8_ref(src + (<usize>b << 7), dst + <usize>b * Q8_0_BYTES, false);
}

/** n f32 (a multiple of 32) at src to q8_1 blocks at dst. */
export function quantize_q8_1(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n >> 5; b++) quantize_block_q8(src + (<usize>b << 7), dst + <usize>b * Q8_1_BYTES, true);
}

export function quantize_q8_1_ref(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n >> 5; b++) quantize_block_q8_ref(src + (<usize>b << 7), dst + <usize>b * Q8_1_BYTES, true);
}

// ---- f16 ----

/** Four f32 to four halves (i32 lanes), round to nearest even: Maratyszcza's FP16 method, which
 *  ggml's generic fp32_to_fp16 also uses; the rounding happens in the f32 add. */
@inline function f32x4_to_f16x4(f: v128): v128 {
  const shl1 = i32x4.add(f, f);
  const sign = v128.and(f, i32x4.splat(0x80000000));
  const bias = i32x4.max_u(v128.and(shl1, i32x4.splat(0xff000000)), i32x4.splat(0x71000000));
  let base = f32x4.mul(f32x4.mul(f32x4.abs(f), f32x4.splat(reinterpret<f32>(0x77800000))), // 2^112
    f32x4.splat(reinterpret<f32>(0x08800000))); // 2^-110
  base = f32x4.add(i32x4.add(i32x4.shr_u(bias, 1), i32x4.splat(0x07800000)), base);
  const nonsign = i32x4.add(v128.and(i32x4.shr_u(base, 13), i32x4.splat(0x7c00)), v128.and(base, i32x4.splat(0xfff)));
  const nan = i32x4.gt_u(shl1, i32x4.splat(0xff000000));
  return v128.or(i32x4.shr_u(sign, 16), v128.bitselect(i32x4.splat(0x7e00), nonsign, nan));
}

/** n f32 at src to f16 at dst (any n). */
export function convert_f32_f16(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const p = src + (<usize>i << 2);
    const lo = f32x4_to_f16x4(v128.load(p)), hi = f32x4_to_f16x4(v128.load(p, 16));
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(lo, hi));
  }
  for (; i < n; i++) store<u16>(dst + (<usize>i << 1), f32_to_f16(load<f32>(src + (<usize>i << 2))));
}

export function convert_f32_f16_ref(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), f32_to_f16(load<f32>(src + (<usize>i << 2))));
}

// ---- bf16 ----

@inline function f32x4_to_bf16x4(f: v128): v128 {
  const lsb = v128.and(i32x4.shr_u(f, 16), i32x4.splat(1));
  const rounded = i32x4.shr_u(i32x4.add(f, i32x4.add(lsb, i32x4.splat(0x7fff))), 16);
  const nan = i32x4.gt_u(v128.and(f, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000));
  return v128.bitselect(v128.or(i32x4.shr_u(f, 16), i32x4.splat(64)), rounded, nan);
}

/** n f32 at src to bf16 at dst (any n). */
export function convert_f32_bf16(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const p = src + (<usize>i << 2);
    const lo = f32x4_to_bf16x4(v128.load(p)), hi = f32x4_to_bf16x4(v128.load(p, 16));
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(lo, hi));
  }
  for (; i < n; i++) store<u16>(dst + (<usize>i << 1), f32_to_bf16(load<f32>(src + (<usize>i << 2))));
}

export function convert_f32_bf16_ref(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), f32_to_bf16(load<f32>(src + (<usize>i << 2))));
}
