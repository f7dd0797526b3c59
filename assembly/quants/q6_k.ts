// Q6_K: 256 weights in 210 bytes (ggml block_q6_K), dotted with Q8_K activations.
//   u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
// 16 sub-blocks of 16: w = d*sc[j]*(q - 32), q 6-bit. Each half (128 weights) takes 64 bytes of ql
// and 32 of qh: for l in [0, 32), weight l   = ql[l] low nibble    | qh[l] bits 0-1 << 4,
//                                   weight l+32 = ql[l+32] low nibble | qh[l] bits 2-3 << 4,
//                                   weight l+64 = ql[l] high nibble   | qh[l] bits 4-5 << 4,
//                                   weight l+96 = ql[l+32] high nibble | qh[l] bits 6-7 << 4.
import { f16_to_f32 } from "./common";

@inline const QK_K: i32 = 256;
@inline const BLOCK: usize = 210;
@inline const Q8K: usize = 292;

/** The 16 weights (i8, q - 32) of part 0..3 from ql bytes `a` (parts 0, 2) or `b` (parts 1, 3) and qh `h`. */
@inline function weights(a: v128, b: v128, h: v128, part: i32): v128 {
  const m4 = i8x16.splat(0x0f), m2 = i8x16.splat(0x30);
  let v: v128;
  if (part == 0) v = v128.or(v128.and(a, m4), v128.and(i16x8.shl(h, 4), m2));
  else if (part == 1) v = v128.or(v128.and(b, m4), v128.and(i16x8.shl(h, 2), m2));
  else if (part == 2) v = v128.or(v128.and(i16x8.shr_u(a, 4), m4), v128.and(h, m2));
  else v = v128.or(v128.and(i16x8.shr_u(b, 4), m4), v128.and(i16x8.shr_u(h, 2), m2));
  return i8x16.sub(v, i8x16.splat(32));
}

/** scale * dot(w, q8) over 16 weights, as four i32 partial sums. */
@inline function dot16(w: v128, scale: v128, q: usize): v128 {
  const qv = v128.load(q);
  return i32x4.dot_i16x8_s(i16x8.add(i16x8.extmul_low_i8x16_s(w, qv), i16x8.extmul_high_i8x16_s(w, qv)), scale);
}

/** 16 weights times their scale, widened to i16 (two halves) for the token loop. */
@inline function widenLo(w: v128, scale: v128): v128 { return i16x8.mul(i16x8.extend_low_i8x16_s(w), scale); }
@inline function widenHi(w: v128, scale: v128): v128 { return i16x8.mul(i16x8.extend_high_i8x16_s(w), scale); }

/** dot of 16 pre-scaled i16 weights with 16 q8 at q, as four i32 partial sums. */
@inline function dot16w(wa: v128, wb: v128, q: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(wa, v128.load8x8_s(q)), i32x4.dot_i16x8_s(wb, v128.load8x8_s(q, 8)));
}

@inline function scaleAt(wb: usize, j: i32): v128 {
  return i16x8.splat(<i16>load<i8>(wb + 192 + <usize>j));
}

/** fa + dx*d*isum, lane-wise in f32. */
@inline function combine(fa: v128, isum: v128, xb: usize, d: f32): v128 {
  return f32x4.add(fa, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(load<f32>(xb) * d)));
}

@inline function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** n weights from src to f32 at dst (dequantize_row_q6_K). */
export function dequantize_q6_k(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const wb = src + <usize>b * BLOCK;
    const d = f16_to_f32(load<u16>(wb, 208));
    for (let half = 0; half < 2; half++) {
      const ql = wb + (<usize>half << 6);
      const qh = wb + 128 + (<usize>half << 5);
      const sc = wb + 192 + (<usize>half << 3);
      const y = dst + <usize>b * 1024 + (<usize>half << 9);
      for (let l = 0; l < 32; l++) {
        const is = <usize>(l >> 4);
        const a = <i32>load<u8>(ql + <usize>l), c = <i32>load<u8>(ql + 32 + <usize>l), h = <i32>load<u8>(qh + <usize>l);
        const q1 = ((a & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((c & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((a >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((c >> 4) | (((h >> 6) & 3) << 4)) - 32;
        const yl = y + (<usize>l << 2);
        store<f32>(yl, d * <f32>load<i8>(sc + is) * <f32>q1);
        store<f32>(yl + 128, d * <f32>load<i8>(sc + is + 2) * <f32>q2);
        store<f32>(yl + 256, d * <f32>load<i8>(sc + is + 4) * <f32>q3);
        store<f32>(yl + 384, d * <f32>load<i8>(sc + is + 6) * <f32>q4);
      }
    }
  }
}

/** Scalar reference (ggml's ggml_vec_dot_q6_K_q8_K_generic): the exact integer sum of a block,
 * then its d applied in f32. */
function dotRef(wr: usize, xr: usize, nb: i32): f32 {
  let sumf: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = xr + <usize>b * Q8K;
    let isum = 0;
    for (let half = 0; half < 2; half++) {
      const ql = wb + (<usize>half << 6);
      const qh = wb + 128 + (<usize>half << 5);
      const q8 = xb + 4 + (<usize>half << 7);
      const sc = wb + 192 + (<usize>half << 3);
      for (let l = 0; l < 32; l++) {
        const is = <usize>(l >> 4);
        const a = <i32>load<u8>(ql + <usize>l), c = <i32>load<u8>(ql + 32 + <usize>l), h = <i32>load<u8>(qh + <usize>l);
        isum += <i32>load<i8>(sc + is) * (((a & 0xf) | ((h & 3) << 4)) - 32) * <i32>load<i8>(q8 + <usize>l);
        isum += <i32>load<i8>(sc + is + 2) * (((c & 0xf) | (((h >> 2) & 3) << 4)) - 32) * <i32>load<i8>(q8 + 32 + <usize>l);
        isum += <i32>load<i8>(sc + is + 4) * (((a >> 4) | (((h >> 4) & 3) << 4)) - 32) * <i32>load<i8>(q8 + 64 + <usize>l);
        isum += <i32>load<i8>(sc + is + 6) * (((c >> 4) | (((h >> 6) & 3) << 4)) - 32) * <i32>load<i8>(q8 + 96 + <usize>l);
      }
    }
    const d = f16_to_f32(load<u16>(wb, 208)) * load<f32>(xb);
    sumf += d * <f32>isum;
  }
  return sumf;
}

export function matmul_q6_k_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const nb = k / QK_K;
  const rowBytes = <usize>nb * BLOCK;
  for (let r = rowStart; r < rowEnd; r++) {
    for (let t = 0; t < nTok; t++) {
      store<f32>(out + (<usize>(t * outStride + r) << 2), dotRef(w + <usize>r * rowBytes, x + <usize>(t * xStride), nb));
    }
  }
}

/** One row against one token. */
function rowDot1(wr: usize, x0: usize, nb: i32): f32 {
  let f0 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb0 = x0 + <usize>b * Q8K;
    let acc0 = i32x4.splat(0);
    for (let p = 0; p < 4; p++) {
      // p: half p >> 1, l-range (p & 1)*16 of it
      const half = p >> 1, i = p & 1;
      const ql = wb + (<usize>half << 6) + (<usize>i << 4);
      const a = v128.load(ql), c = v128.load(ql, 32), h = v128.load(wb + 128 + (<usize>half << 5) + (<usize>i << 4));
      const j = (half << 3) + i;
      const q = xb0 + 4 + (<usize>half << 7) + (<usize>i << 4);
      acc0 = i32x4.add(acc0, dot16(weights(a, c, h, 0), scaleAt(wb, j), q));
      acc0 = i32x4.add(acc0, dot16(weights(a, c, h, 1), scaleAt(wb, j + 2), q + 32));
      acc0 = i32x4.add(acc0, dot16(weights(a, c, h, 2), scaleAt(wb, j + 4), q + 64));
      acc0 = i32x4.add(acc0, dot16(weights(a, c, h, 3), scaleAt(wb, j + 6), q + 96));
    }
    f0 = combine(f0, acc0, xb0, f16_to_f32(load<u16>(wb, 208)));
  }
  return hsum(f0);
}

/** One row against four tokens: each weight block is decoded (widened to i16 and scaled) once for
 * the four, so a token costs two sign-extending loads and two i16 dot products per 16 weights. */
function rowDot4(wr: usize, x0: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  o0: usize, o1: usize, o2: usize, o3: usize): void {
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xo = <usize>b * Q8K;
    const xb0 = x0 + xo, xb1 = x1 + xo, xb2 = x2 + xo, xb3 = x3 + xo;
    let acc0 = i32x4.splat(0), acc1 = i32x4.splat(0), acc2 = i32x4.splat(0), acc3 = i32x4.splat(0);
    let qo: usize = 4;
    for (let p = 0; p < 16; p++) {
      // piece p: weights 16p .. 16p+16 = half p >> 3, part (p >> 1) & 3, l-range (p & 1)*16;
      // sub-block j = 8*half + 2*part + (p & 1) = p
      const half = p >> 3, part = (p >> 1) & 3, i = <usize>(p & 1) << 4;
      const ql = v128.load(wb + (<usize>half << 6) + (<usize>(part & 1) << 5) + i);
      const qh = v128.load(wb + 128 + (<usize>half << 5) + i);
      const low = v128.and(i16x8.shr_u(ql, (part >> 1) << 2), i8x16.splat(0x0f));
      const high = v128.and(i16x8.shl(i16x8.shr_u(qh, part << 1), 4), i8x16.splat(0x30));
      const w = i8x16.sub(v128.or(low, high), i8x16.splat(32));
      const scv = scaleAt(wb, p);
      const wa = widenLo(w, scv), wh = widenHi(w, scv);
      acc0 = i32x4.add(acc0, dot16w(wa, wh, xb0 + qo));
      acc1 = i32x4.add(acc1, dot16w(wa, wh, xb1 + qo));
      acc2 = i32x4.add(acc2, dot16w(wa, wh, xb2 + qo));
      acc3 = i32x4.add(acc3, dot16w(wa, wh, xb3 + qo));
      qo += 16;
    }
    const d = f16_to_f32(load<u16>(wb, 208));
    f0 = combine(f0, acc0, xb0, d);
    f1 = combine(f1, acc1, xb1, d);
    f2 = combine(f2, acc2, xb2, d);
    f3 = combine(f3, acc3, xb3, d);
  }
  store<f32>(o0, hsum(f0));
  store<f32>(o1, hsum(f1));
  store<f32>(o2, hsum(f2));
  store<f32>(o3, hsum(f3));
}

/** out[t][r] = dot(row r of W, x_t) for r in [rowStart, rowEnd), t in [0, nTok); see DEVELOPERS.md.
 * Tokens go in groups whose activations stay in cache (~256 KiB) while every row passes over them;
 * within a group each row takes the tokens four at a time. */
export function matmul_q6_k(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const nb = k / QK_K;
  const group = max(4, (262144 / (nb * <i32>Q8K)) & ~3);
  for (let t0 = 0; t0 < nTok; t0 += group) {
    const n = min(group, nTok - t0);
    matmulGroup(w, x + <usize>(t0 * xStride), out + (<usize>(t0 * outStride) << 2), nb, rowStart, rowEnd, n, xStride, outStride);
  }
}

function matmulGroup(w: usize, x: usize, out: usize, nb: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const rowBytes = <usize>nb * BLOCK;
  const xs = <usize>xStride, os = <usize>outStride << 2;
  for (let r = rowStart; r < rowEnd; r++) {
    const wr = w + <usize>r * rowBytes;
    const o = out + (<usize>r << 2);
    let t = 0;
    for (; t + 4 <= nTok; t += 4) {
      const xt = x + <usize>t * xs, ot = o + <usize>t * os;
      rowDot4(wr, xt, xt + xs, xt + 2 * xs, xt + 3 * xs, nb, ot, ot + os, ot + 2 * os, ot + 3 * os);
    }
    if (nTok - t == 3) {
      // Three left: one four-token pass with the last token twice beats three one-token passes.
      const xt = x + <usize>t * xs, ot = o + <usize>t * os;
      rowDot4(wr, xt, xt + xs, xt + 2 * xs, xt + 2 * xs, nb, ot, ot + os, ot + 2 * os, ot + 2 * os);
      t += 3;
    }
    for (; t < nTok; t++) store<f32>(o + <usize>t * os, rowDot1(wr, x + <usize>t * xs, nb));
  }
}
