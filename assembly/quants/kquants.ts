// What the K-quant kernels (q2_k ... q6_k) share: the Q8_K activation block, the 6-bit scale/min
// packing of Q4_K and Q5_K, the f32 combination of a block's integer sums, the loops that run a
// type's row kernels over rows and tokens, and the two-row tiles of Q4_K and Q5_K. Not exported
// from index.ts.
import { f16x2_rows_nosub, f16x4_hi_to_f32x4_nosub, i32x4_hsum, i32x4_hsum4, pair_cells, pair_halves, store_rows4, store_tile2x4 } from "./common";

@inline export const QK_K: i32 = 256;
/** Bytes of a Q8_K activation block: f32 d; i8 qs[256]; i16 bsums[16]. */
@inline export const Q8K: usize = 292;

// Q4_K and Q5_K: the 6-bit scales and mins, four to a u32 (ggml's utmp[] dance), from the words
// a0 a1 a2 of scales[12] (get_scale_min_k4).
@inline export function scales03(a0: u32): u32 { return a0 & 0x3f3f3f3f; }
@inline export function scales47(a0: u32, a2: u32): u32 { return (a2 & 0x0f0f0f0f) | (((a0 >> 6) & 0x03030303) << 4); }
@inline export function mins03(a1: u32): u32 { return a1 & 0x3f3f3f3f; }
@inline export function mins47(a1: u32, a2: u32): u32 { return ((a2 >> 4) & 0x0f0f0f0f) | (((a1 >> 6) & 0x03030303) << 4); }

/** Byte i of the eight 6-bit values held in (lo, hi). */
@inline export function byteOf(lo: u32, hi: u32, i: i32): i32 {
  return <i32>(((i < 4 ? lo : hi) >> (<u32>(i & 3) << 3)) & 0xff);
}

/** The i16 lanes [m0 m0 m1 m1 m2 m2 m3 m3] (half 0) or [m4 m4 ... m7 m7] (half 1): each min
 * weighs the two 16-sums of its sub-block. */
@inline export function minsPairs(m03: u32, m47: u32, half: i32): v128 {
  const v = i32x4.replace_lane(i32x4.splat(m03), 1, m47);
  const z = i32x4.splat(0);
  return half == 0
    ? i8x16.shuffle(v, z, 0, 16, 0, 16, 1, 16, 1, 16, 2, 16, 2, 16, 3, 16, 3, 16)
    : i8x16.shuffle(v, z, 4, 16, 4, 16, 5, 16, 5, 16, 6, 16, 6, 16, 7, 16, 7, 16);
}

/** sum_j bsums[j] * m[j] of one Q8_K block (m as two i16x8), as four i32 partial sums. */
@inline export function minTerm(xb: usize, mLo: v128, mHi: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(v128.load(xb, 260), mLo), i32x4.dot_i16x8_s(v128.load(xb, 276), mHi));
}

/** The Q8_K scales d of the blocks at x0..x3 as f32x4 (lane t: token t). */
@inline export function dx4(x0: usize, x1: usize, x2: usize, x3: usize): v128 {
  let v = v128.load32_splat(x0);
  v = v128.load32_lane(x1, v, 1);
  v = v128.load32_lane(x2, v, 2);
  return v128.load32_lane(x3, v, 3);
}

/** Lane t of f stored at o_t (the four-token tiles' outputs). */
@inline export function store_lanes4(f: v128, o0: usize, o1: usize, o2: usize, o3: usize): void {
  v128.store32_lane(o0, f, 0);
  v128.store32_lane(o1, f, 1);
  v128.store32_lane(o2, f, 2);
  v128.store32_lane(o3, f, 3);
}

/** Four tokens' block terms (lane t: token t) added as Q2_K's dotRef adds one token's:
 *  fa + ((dx*d) * isum - (dx*dmin) * msum), isum and msum the tokens' whole i32 sums. */
@inline export function combineMin4(fa: v128, isum: v128, msum: v128, dx: v128, d: f32, dmin: f32): v128 {
  return f32x4.add(fa, f32x4.sub(
    f32x4.mul(f32x4.mul(dx, f32x4.splat(d)), f32x4.convert_i32x4_s(isum)),
    f32x4.mul(f32x4.mul(dx, f32x4.splat(dmin)), f32x4.convert_i32x4_s(msum))));
}

/** The same for Q3_K (no mins): fa + (d*dx) * isum. */
@inline export function combine4(fa: v128, isum: v128, dx: v128, d: f32): v128 {
  return f32x4.add(fa, f32x4.mul(f32x4.mul(f32x4.splat(d), dx), f32x4.convert_i32x4_s(isum)));
}

/** Q4_K and Q5_K, one token: scale * dot(w, q8) over 32 weights (u8, at most 31; w0 weights 0-15,
 *  w1 16-31), as four i32 partial sums. Relaxed build: two relaxed dots summed in i16 (at most
 *  4 * 31 * 127, no overflow), widened by the scale. */
@inline export function dot32(w0: v128, w1: v128, scale: v128, q: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(q), w0),
      i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(q, 16), w1)), scale);
  }
  const q0 = v128.load(q);
  const q1 = v128.load(q, 16);
  const s = i16x8.add(
    i16x8.add(i16x8.extmul_low_i8x16_s(w0, q0), i16x8.extmul_high_i8x16_s(w0, q0)),
    i16x8.add(i16x8.extmul_low_i8x16_s(w1, q1), i16x8.extmul_high_i8x16_s(w1, q1)));
  return i32x4.dot_i16x8_s(s, scale);
}

/** Q2_K and Q3_K: scale * dot(u, q8) over 16 weights u and the 16 q8 at q, as four i32 partial
 *  sums. Relaxed build: u must be u8 at most 7 (one relaxed dot, pairs at most 2 * 7 * 127, widened
 *  by the scale); SIMD128: any i8 in [-8, 7]. The integer sums are exact in both builds. */
@inline export function dot16u(u: v128, scale: v128, q: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(q), u), scale);
  const qv = v128.load(q);
  return i32x4.dot_i16x8_s(i16x8.add(i16x8.extmul_low_i8x16_s(u, qv), i16x8.extmul_high_i8x16_s(u, qv)), scale);
}

// The loops call methods on changetype<K>(0) (AssemblyScript has no static members on type
// parameters): K is a class with @inline bytes(), dotRef(wr, xr, nb), for matmul_k_quads
// dot4(wr, x0, x1, x2, x3, nb, o0, o1, o2, o3) (one row, four tokens), rows4(w, gap, x, nb, out,
// outGap) (four rows, one token) and dot1(wr, x, nb, seq) (one row, one token; rows4 and dot1 sum as
// dotRef, bit for bit), for matmul_k_tiles qs(), lo() and hi() (see the tiles and the one-token
// rows below).

/** The scalar matmul of a K-quant type: ggml's generic vec_dot, one row and one token at a time. */
@inline export function matmul_k_ref<K>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const kq = changetype<K>(0);
  const nb = k / QK_K;
  const rowBytes = <usize>nb * kq.bytes();
  for (let r = rowStart; r < rowEnd; r++) {
    for (let t = 0; t < nTok; t++) {
      store<f32>(out + (<usize>(t * outStride + r) << 2), kq.dotRef(w + <usize>r * rowBytes, x + <usize>(t * xStride), nb));
    }
  }
}

/** out[t][r] = dot(row r of W, x_t) for r in [rowStart, rowEnd), t in [0, nTok); see DEVELOPERS.md.
 * Tokens go in groups whose activations stay in cache (~256 KiB) while every row passes over them;
 * within a group each row takes the tokens four at a time. */
@inline export function matmul_k_quads<K>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const nb = k / QK_K;
  const group = max(4, (262144 / (nb * <i32>Q8K)) & ~3);
  for (let t0 = 0; t0 < nTok; t0 += group) {
    const n = min(group, nTok - t0);
    matmul_k_group<K>(w, x + <usize>(t0 * xStride), out + (<usize>(t0 * outStride) << 2), nb, rowStart, rowEnd, n, xStride, outStride);
  }
}

@inline function matmul_k_group<K>(w: usize, x: usize, out: usize, nb: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const kq = changetype<K>(0);
  const rowBytes = <usize>nb * kq.bytes();
  const xs = <usize>xStride, os = <usize>outStride << 2;
  // Four tokens at a time, and three as four with the last token twice (cheaper than three
  // one-token passes); one or two tokens left take the one-token path below.
  const tiled = (nTok & ~3) + ((nTok & 3) == 3 ? 3 : 0);
  for (let r = rowStart; r < rowEnd; r++) {
    const wr = w + <usize>r * rowBytes;
    const o = out + (<usize>r << 2);
    for (let t = 0; t < tiled; t += 4) {
      const last = <usize>min(3, tiled - t - 1);
      const xt = x + <usize>t * xs, ot = o + <usize>t * os;
      kq.dot4(wr, xt, xt + xs, xt + min<usize>(2, last) * xs, xt + last * xs, nb, ot, ot + os, ot + min<usize>(2, last) * os, ot + last * os);
    }
  }
  // The tokens left (all of them when decoding): four rows at a time from the four quarters of the
  // range (four long sequential streams, see matmul_b32), then the rows left; both sum as dotRef.
  const quarter = (rowEnd - rowStart) >> 2;
  for (let t = tiled; t < nTok; t++) {
    const xt = x + <usize>t * xs, ot = out + <usize>t * os;
    for (let r = rowStart; r < rowStart + quarter; r++) {
      kq.rows4(w + <usize>r * rowBytes, <usize>quarter * rowBytes, xt, nb, ot + (<usize>r << 2), <usize>quarter);
    }
    for (let r = rowStart + 4 * quarter; r < rowEnd; r++) {
      const o = ot + (<usize>r << 2);
      store<f32>(o, kq.dot1(w + <usize>r * rowBytes, xt, nb, o));
    }
  }
}

// ---- Q4_K and Q5_K, many tokens: tiles of two rows by four tokens (see "Many tokens" in common.ts) ----
// Each sub-block of 32 weights is decoded once for the four tokens: SIMD128 widens it to i16 and
// multiplies in its scale; the relaxed-SIMD build keeps the weights as u8 for
// i16x8.relaxed_dot_i8x16_i7x16_s and applies the scale in the i32x4.dot_i16x8_s that widens the
// sums (weights at most 31: two relaxed dots summed in an i16 lane reach 4 * 31 * 127, no overflow).
// The integer sums of a cell stay exact over the block; its d, dmin and the activations' d apply
// once per block, four cells at once.
// Measured (4864x1024, 16 tokens, Zen 4, Node 20): Q4_K 3000 tokens/s with one row by four tokens,
// 4100 with these tiles, 6700 relaxed.
//
// The codec K (Q4K, Q5K) decodes: qs() the offset of qs[128] in the block; lo(v, wb, half, c) and
// hi(v, wb, half, c) the weights (u8 lanes) of the 16 bytes v = qs[32c + 16 half ..] of block wb:
// sub-block 2c (low nibbles) and 2c + 1 (high nibbles), with Q5_K's 5th bits from qh; lo1() and
// hi1() the same for a constant c (the one-token loops), which Q5_K decodes with fewer shifts.

/** The eight 6-bit sub-block scales of block wb (Q4_K/Q5_K packing) as i16 lanes. */
@inline function scaleLanes(wb: usize): v128 {
  const a0 = load<u32>(wb, 4), a2 = load<u32>(wb, 12);
  return i16x8.extend_low_i8x16_u(i32x4.replace_lane(i32x4.splat(scales03(a0)), 1, scales47(a0, a2)));
}

/** i16 lane 0 (odd: lane 1) of v in every lane. */
@inline function lane01(v: v128, odd: bool): v128 {
  return odd ? i8x16.shuffle(v, v, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3)
    : i8x16.shuffle(v, v, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
}

/** i32x4 partial sums of one cell and one sub-block: weights u0 (0-15), u1 (16-31) as u8 (at most
 *  31), their scale s (i16 lanes), the token's 32 q8 at q. */
@inline function cell(u0: v128, u1: v128, s: v128, q: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return dot32(u0, u1, s, q);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.mul(i16x8.extend_low_i8x16_u(u0), s), v128.load8x8_s(q)),
      i32x4.dot_i16x8_s(i16x8.mul(i16x8.extend_high_i8x16_u(u0), s), v128.load8x8_s(q, 8))),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.mul(i16x8.extend_low_i8x16_u(u1), s), v128.load8x8_s(q, 16)),
      i32x4.dot_i16x8_s(i16x8.mul(i16x8.extend_high_i8x16_u(u1), s), v128.load8x8_s(q, 24))));
}

/** The cells (r0 t) (r1 t) (r0 t') (r1 t') of one sub-block (see pair_cells in common.ts). The
 *  stores order each token's loads after the previous token's dot products (see common.ts). */
@inline function cells(u0: v128, u1: v128, s0: v128, v0: v128, v1: v128, s1: v128, q: usize, dq: usize, seq: usize): v128 {
  const a = pair_halves(cell(u0, u1, s0, q), cell(v0, v1, s1, q));
  v128.store32_lane(seq, a, 0);
  const b = pair_halves(cell(u0, u1, s0, q + dq), cell(v0, v1, s1, q + dq));
  const c = pair_cells(a, b);
  v128.store32_lane(seq, c, 0);
  return c;
}

/** The min sums of the cells of rows (mins mLo0/mHi0, mLo1/mHi1) by tokens at xb, xb + dx. */
@inline function minCells(mLo0: v128, mHi0: v128, mLo1: v128, mHi1: v128, xb: usize, dx: usize): v128 {
  return pair_cells(pair_halves(minTerm(xb, mLo0, mHi0), minTerm(xb, mLo1, mHi1)),
    pair_halves(minTerm(xb + dx, mLo0, mHi0), minTerm(xb + dx, mLo1, mHi1)));
}

/** Rows wr and wr + rowBytes (rowBytes 0 and `two` false: one row) by four tokens at x, x + x1,
 *  x + x2, x + x3 (offsets may repeat), stored at o, o + o1, o + o2, o + o3 (bytes). */
@inline function tile2x4<K>(wr: usize, rowBytes: usize, two: bool, x: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  o: usize, o1: usize, o2: usize, o3: usize): void {
  const kq = changetype<K>(0);
  const bytes = kq.bytes(), qs = kq.qs();
  let acc01 = f32x4.splat(0), acc23 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * bytes, wb1 = wb + rowBytes;
    const xb = x + <usize>b * Q8K;
    let sc0 = scaleLanes(wb), sc1 = scaleLanes(wb1);
    let i01 = i32x4.splat(0), i23 = i32x4.splat(0);
    for (let c = 0; c < 4; c++) {
      const q = xb + 4 + (<usize>c << 6);
      const p0 = wb + qs + (<usize>c << 5), p1 = wb1 + qs + (<usize>c << 5);
      const a0 = v128.load(p0), a1 = v128.load(p0, 16), b0 = v128.load(p1), b1 = v128.load(p1, 16);
      // sub-block 2c: the low nibbles
      const l0 = kq.lo(a0, wb, 0, c), l1 = kq.lo(a1, wb, 1, c), k0 = kq.lo(b0, wb1, 0, c), k1 = kq.lo(b1, wb1, 1, c);
      const lo0 = lane01(sc0, false), lo1 = lane01(sc1, false);
      i01 = i32x4.add(i01, cells(l0, l1, lo0, k0, k1, lo1, q, x1, o));
      i23 = i32x4.add(i23, cells(l0, l1, lo0, k0, k1, lo1, q + x2, x3 - x2, o));
      // sub-block 2c + 1: the high nibbles
      const h0 = kq.hi(a0, wb, 0, c), h1 = kq.hi(a1, wb, 1, c), g0 = kq.hi(b0, wb1, 0, c), g1 = kq.hi(b1, wb1, 1, c);
      const hi0 = lane01(sc0, true), hi1 = lane01(sc1, true);
      i01 = i32x4.add(i01, cells(h0, h1, hi0, g0, g1, hi1, q + 32, x1, o));
      i23 = i32x4.add(i23, cells(h0, h1, hi0, g0, g1, hi1, q + 32 + x2, x3 - x2, o));
      sc0 = i8x16.shuffle(sc0, sc0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3);
      sc1 = i8x16.shuffle(sc1, sc1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3);
    }
    const a10 = load<u32>(wb, 8), a12 = load<u32>(wb, 12), b10 = load<u32>(wb1, 8), b12 = load<u32>(wb1, 12);
    const m03 = mins03(a10), m47 = mins47(a10, a12), n03 = mins03(b10), n47 = mins47(b10, b12);
    const mLo0 = minsPairs(m03, m47, 0), mHi0 = minsPairs(m03, m47, 1);
    const mLo1 = minsPairs(n03, n47, 0), mHi1 = minsPairs(n03, n47, 1);
    const m01 = minCells(mLo0, mHi0, mLo1, mHi1, xb, x1);
    const m23 = minCells(mLo0, mHi0, mLo1, mHi1, xb + x2, x3 - x2);
    let dxv = v128.load32_splat(xb);
    dxv = v128.load32_lane(xb + x1, dxv, 1);
    dxv = v128.load32_lane(xb + x2, dxv, 2);
    dxv = v128.load32_lane(xb + x3, dxv, 3);
    const d = f16x2_rows_nosub(wb, rowBytes), dmin = f16x2_rows_nosub(wb + 2, rowBytes);
    const dx01 = i32x4.shuffle(dxv, dxv, 0, 0, 1, 1), dx23 = i32x4.shuffle(dxv, dxv, 2, 2, 3, 3);
    // as dotRef: (acc + d dx isum) - dmin dx msum, so that a cell is the one-token result bit for bit
    acc01 = f32x4.sub(f32x4.add(acc01, f32x4.mul(f32x4.convert_i32x4_s(i01), f32x4.mul(d, dx01))),
      f32x4.mul(f32x4.convert_i32x4_s(m01), f32x4.mul(dmin, dx01)));
    acc23 = f32x4.sub(f32x4.add(acc23, f32x4.mul(f32x4.convert_i32x4_s(i23), f32x4.mul(d, dx23))),
      f32x4.mul(f32x4.convert_i32x4_s(m23), f32x4.mul(dmin, dx23)));
  }
  store_tile2x4(o, o1, o2, o3, acc01, acc23, two);
}

/** The i16x8 pairwise sums of products u * x (u: u8 weights at most 127, x: i8 activations): the
 *  relaxed build's i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw), and in SIMD128 the same sums by
 *  two i16 multiplies of the even and the odd bytes. Exact (each sum at most 2 * 127 * 127), so
 *  both builds compute the same integers. */
@inline export function dot_u8_i8(u: v128, x: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(x, u);
  const even = i16x8.mul(v128.and(u, i16x8.splat(0xff)), i16x8.shr_s(i16x8.shl(x, 8), 8));
  return i16x8.add(even, i16x8.mul(i16x8.shr_u(u, 8), i16x8.shr_s(x, 8)));
}

/** The activations x (i8x16) prepared for dot_u8_xp: in the relaxed build x itself; in SIMD128 its
 *  even bytes (xEven) and odd bytes (xOdd) sign-extended to i16, done once where several rows
 *  share x. */
@inline export function xEven(x: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? x : i16x8.shr_s(i16x8.shl(x, 8), 8);
}
@inline export function xOdd(x: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? x : i16x8.shr_s(x, 8);
}

/** dot_u8_i8(u, x) with x prepared (xe = xEven(x), xo = xOdd(x)). */
@inline export function dot_u8_xp(u: v128, xe: v128, xo: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(xe, u);
  return i16x8.add(i16x8.mul(v128.and(u, i16x8.splat(0xff)), xe), i16x8.mul(i16x8.shr_u(u, 8), xo));
}

/** The i16 lanes (l0 + l4, h0 + h4, l1 + l5, h1 + h5, ...): the sums of two sub-blocks (l and h, eight
 *  i16 partial sums each) interleaved and added pairwise, so that one i32x4.dot_i16x8_s by a pair
 *  of scales (sub-block of l, sub-block of h) in every i32 lane widens and scales both. Each lane
 *  must fit in an i16: the callers bound them. */
@inline export function interleavePairs(l: v128, h: v128): v128 {
  return i16x8.add(i16x8.shuffle(l, h, 0, 8, 1, 9, 2, 10, 3, 11), i16x8.shuffle(l, h, 4, 12, 5, 13, 6, 14, 7, 15));
}

/** Q2_K and Q3_K, one token: acc + the eight passes of block wb against the Q8_K block xb (pass p:
 *  sub-blocks 2p and 2p + 1, see their pass(acc, qa, qb, ha, hb, xb, p, sp)), each with the pair of
 *  scales (2p, 2p + 1) from lo (scales 0-7 as i16 lanes) or hi (8-15). A half's 32 qs bytes (qa, qb,
 *  at kq.qs()) serve its four passes and Q3_K's 32 hmask bytes (ha, hb, kq.hmask()) all eight, each
 *  loaded once (a load in every pass cost 5% of the Q3_K loop). A store to seq (a word the caller
 *  overwrites later) after each pass keeps V8 from hoisting every load of the block to its top. */
@inline export function eightPasses<K>(acc: v128, wb: usize, xb: usize, lo: v128, hi: v128, seq: usize): v128 {
  const kq = changetype<K>(0);
  const ha = kq.hmask(wb, 0), hb = kq.hmask(wb, 1);
  {
    const qa = v128.load(wb + kq.qs()), qb = v128.load(wb + kq.qs(), 16);
    acc = kq.pass(acc, qa, qb, ha, hb, xb, 0, i32x4.shuffle(lo, lo, 0, 0, 0, 0)); v128.store32_lane(seq, acc, 0);
    acc = kq.pass(acc, qa, qb, ha, hb, xb, 1, i32x4.shuffle(lo, lo, 1, 1, 1, 1)); v128.store32_lane(seq, acc, 0);
    acc = kq.pass(acc, qa, qb, ha, hb, xb, 2, i32x4.shuffle(lo, lo, 2, 2, 2, 2)); v128.store32_lane(seq, acc, 0);
    acc = kq.pass(acc, qa, qb, ha, hb, xb, 3, i32x4.shuffle(lo, lo, 3, 3, 3, 3)); v128.store32_lane(seq, acc, 0);
  }
  const qa = v128.load(wb + kq.qs(), 32), qb = v128.load(wb + kq.qs(), 48);
  acc = kq.pass(acc, qa, qb, ha, hb, xb, 4, i32x4.shuffle(hi, hi, 0, 0, 0, 0)); v128.store32_lane(seq, acc, 0);
  acc = kq.pass(acc, qa, qb, ha, hb, xb, 5, i32x4.shuffle(hi, hi, 1, 1, 1, 1)); v128.store32_lane(seq, acc, 0);
  acc = kq.pass(acc, qa, qb, ha, hb, xb, 6, i32x4.shuffle(hi, hi, 2, 2, 2, 2)); v128.store32_lane(seq, acc, 0);
  acc = kq.pass(acc, qa, qb, ha, hb, xb, 7, i32x4.shuffle(hi, hi, 3, 3, 3, 3)); v128.store32_lane(seq, acc, 0);
  return acc;
}

// ---- Q4_K and Q5_K, one token ----
// A chunk of 64 weights is sub-block 2c (low nibbles) and 2c + 1 (high nibbles). Each gives two
// dot_u8_i8 summed in i16 (at most 4 * 31 * 127); the two sub-blocks' sums are interleaved and
// added pairwise (at most 31496, still an i16) so that lanes alternate 2c, 2c + 1, and one
// i32x4.dot_i16x8_s by the pair of scales (i32 lane c of scaleLanes, one pshufd) widens and scales
// both. The min term is bsums times the mins, each min twice (an unpack of the mins' i16 lanes).
// A store after each chunk keeps V8 from hoisting all the loads of a block to its top (spills).
// The integer sums are exact and the f32 sum is the scalar reference's: (d * dx) * isum, then
// - (dmin * dx) * msum, block after block.

/** acc + the i32x4 partial sums of chunk c (0..3) of block wb against the Q8_K block xb; sp: the scales of sub-blocks 2c and 2c + 1 as an i16 pair in every i32 lane. */
@inline function chunkDot<K>(acc: v128, wb: usize, xb: usize, c: i32, sp: v128): v128 {
  const kq = changetype<K>(0);
  const p = wb + kq.qs() + (<usize>c << 5);
  const q = xb + 4 + (<usize>c << 6);
  const v0 = v128.load(p), v1 = v128.load(p, 16);
  const l = i16x8.add(dot_u8_i8(kq.lo1(v0, wb, 0, c), v128.load(q)), dot_u8_i8(kq.lo1(v1, wb, 1, c), v128.load(q, 16)));
  const h = i16x8.add(dot_u8_i8(kq.hi1(v0, wb, 0, c), v128.load(q, 32)), dot_u8_i8(kq.hi1(v1, wb, 1, c), v128.load(q, 48)));
  return i32x4.add(acc, i32x4.dot_i16x8_s(interleavePairs(l, h), sp));
}

/** Q4_K and Q5_K: one row against one token, summed as the scalar reference; seq:
 *  a word that may be written (the row's output). */
@inline export function rowDot1Packed<K>(wr: usize, x0: usize, nb: i32, seq: usize): f32 {
  const kq = changetype<K>(0);
  const bytes = kq.bytes();
  let sum: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * bytes;
    const xb = x0 + <usize>b * Q8K;
    const sc = scaleLanes(wb);
    let isum = chunkDot<K>(i32x4.splat(0), wb, xb, 0, i32x4.shuffle(sc, sc, 0, 0, 0, 0));
    v128.store32_lane(seq, isum, 0);
    isum = chunkDot<K>(isum, wb, xb, 1, i32x4.shuffle(sc, sc, 1, 1, 1, 1));
    v128.store32_lane(seq, isum, 0);
    isum = chunkDot<K>(isum, wb, xb, 2, i32x4.shuffle(sc, sc, 2, 2, 2, 2));
    v128.store32_lane(seq, isum, 0);
    isum = chunkDot<K>(isum, wb, xb, 3, i32x4.shuffle(sc, sc, 3, 3, 3, 3));
    v128.store32_lane(seq, isum, 0);
    const a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const m = i16x8.extend_low_i8x16_u(i32x4.replace_lane(i32x4.splat(mins03(a1)), 1, mins47(a1, a2)));
    const msum = i32x4.add(i32x4.dot_i16x8_s(v128.load(xb, 260), i16x8.shuffle(m, m, 0, 0, 1, 1, 2, 2, 3, 3)),
      i32x4.dot_i16x8_s(v128.load(xb, 276), i16x8.shuffle(m, m, 4, 4, 5, 5, 6, 6, 7, 7)));
    const h = v128.load32_splat(wb); // d, dmin
    const f = f16x4_hi_to_f32x4_nosub(i16x8.shuffle(h, h, 0, 0, 1, 1, 0, 0, 1, 1)); // lanes d, dmin, d, dmin
    const dx = load<f32>(xb);
    sum += (f32x4.extract_lane(f, 0) * dx) * <f32>i32x4_hsum(isum);
    sum -= (f32x4.extract_lane(f, 1) * dx) * <f32>i32x4_hsum(msum);
  }
  return sum;
}

/** The Q8_K block xb's sums of its eight sub-blocks of 32 (bsums added in pairs, at most 32 * 127)
 *  as i16 lanes: done once per block for every row of rowDot4Packed. */
@inline function bsums32(xb: usize): v128 {
  const one = i16x8.splat(1);
  return i16x8.narrow_i32x4_s(i32x4.dot_i16x8_s(v128.load(xb, 260), one), i32x4.dot_i16x8_s(v128.load(xb, 276), one));
}

/** The i32x4 partial sums of chunk c (0..3) of block wb times the 64 activations x0..x3 (i8x16),
 *  see chunkDot. */
@inline function chunkDotX<K>(wb: usize, c: i32, sp: v128, e0: v128, o0: v128, e1: v128, o1: v128, e2: v128, o2: v128,
  e3: v128, o3: v128): v128 {
  const kq = changetype<K>(0);
  const p = wb + kq.qs() + (<usize>c << 5);
  const v0 = v128.load(p), v1 = v128.load(p, 16);
  const l = i16x8.add(dot_u8_xp(kq.lo1(v0, wb, 0, c), e0, o0), dot_u8_xp(kq.lo1(v1, wb, 1, c), e1, o1));
  const h = i16x8.add(dot_u8_xp(kq.hi1(v0, wb, 0, c), e2, o2), dot_u8_xp(kq.hi1(v1, wb, 1, c), e3, o3));
  return i32x4.dot_i16x8_s(interleavePairs(l, h), sp);
}

/** Q4_K and Q5_K: rows w, w + gap, w + 2*gap, w + 3*gap against one token at x, stored at out,
 *  out + 4*outGap, ... (four long sequential streams, see matmul_b32): each chunk's activations
 *  are loaded once for the four rows; the block's d, dmin and f32 work serve the four rows in
 *  lanes. Summed as the scalar reference (and as rowDot1Packed). */
@inline function rowDot4Packed<K>(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void {
  const kq = changetype<K>(0);
  const bytes = kq.bytes();
  const g2 = gap << 1, g3 = gap * 3;
  let acc = f32x4.splat(0); // lane r: row r
  for (let b = 0; b < nb; b++) {
    const w0 = w + <usize>b * bytes, w1 = w0 + gap, w2 = w0 + g2, w3 = w0 + g3;
    const xb = x + <usize>b * Q8K;
    // The four rows' headers (d and dmin, the 12 bytes of scales and mins) transposed, so that the
    // scales and mins of the four rows decode in one set of vector ops (lane r: row r); the scales
    // and mins are then taken apart by row (a row's eight as i16 lanes).
    const g0 = v128.load(w0), g1 = v128.load(w1), g2 = v128.load(w2), g3 = v128.load(w3);
    const t0 = i32x4.shuffle(g0, g1, 0, 4, 1, 5), t1 = i32x4.shuffle(g2, g3, 0, 4, 1, 5);
    const t2 = i32x4.shuffle(g0, g1, 2, 6, 3, 7), t3 = i32x4.shuffle(g2, g3, 2, 6, 3, 7);
    const h = i32x4.shuffle(t0, t1, 0, 1, 4, 5); // lane r: row r's d (low half) and dmin (high half)
    const a0 = i32x4.shuffle(t0, t1, 2, 3, 6, 7), a1 = i32x4.shuffle(t2, t3, 0, 1, 4, 5), a2 = i32x4.shuffle(t2, t3, 2, 3, 6, 7);
    const low6 = i8x16.splat(0x3f), low4 = i8x16.splat(0x0f), top2 = i8x16.splat(0x03);
    const s03 = v128.and(a0, low6), s47 = v128.or(v128.and(a2, low4), i32x4.shl(v128.and(i32x4.shr_u(a0, 6), top2), 4));
    const m03 = v128.and(a1, low6), m47 = v128.or(v128.and(i32x4.shr_u(a2, 4), low4), i32x4.shl(v128.and(i32x4.shr_u(a1, 6), top2), 4));
    const sA = i32x4.shuffle(s03, s47, 0, 4, 1, 5), sB = i32x4.shuffle(s03, s47, 2, 6, 3, 7);
    const mA = i32x4.shuffle(m03, m47, 0, 4, 1, 5), mB = i32x4.shuffle(m03, m47, 2, 6, 3, 7);
    const sc0 = i16x8.extend_low_i8x16_u(sA), sc1 = i16x8.extend_high_i8x16_u(sA);
    const sc2 = i16x8.extend_low_i8x16_u(sB), sc3 = i16x8.extend_high_i8x16_u(sB);
    let i0 = i32x4.splat(0), i1 = i32x4.splat(0), i2 = i32x4.splat(0), i3 = i32x4.splat(0);
    // The four chunks written out: a loop over them (even with a constant trip count) stays a loop
    // in V8, which then decodes the four rows' scales again in every chunk. The stores order each
    // row's loads after the previous row's work (V8 hoists loads: spills).
    {
      const q = xb + 4;
      const x0 = v128.load(q), x1 = v128.load(q, 16), x2 = v128.load(q, 32), x3 = v128.load(q, 48);
      const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1), e2 = xEven(x2), o2 = xOdd(x2), e3 = xEven(x3), o3 = xOdd(x3);
      i0 = i32x4.add(i0, chunkDotX<K>(w0, 0, i32x4.shuffle(sc0, sc0, 0, 0, 0, 0), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i0, 0);
      i1 = i32x4.add(i1, chunkDotX<K>(w1, 0, i32x4.shuffle(sc1, sc1, 0, 0, 0, 0), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i1, 0);
      i2 = i32x4.add(i2, chunkDotX<K>(w2, 0, i32x4.shuffle(sc2, sc2, 0, 0, 0, 0), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i2, 0);
      i3 = i32x4.add(i3, chunkDotX<K>(w3, 0, i32x4.shuffle(sc3, sc3, 0, 0, 0, 0), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i3, 0);
    }
    {
      const q = xb + 68;
      const x0 = v128.load(q), x1 = v128.load(q, 16), x2 = v128.load(q, 32), x3 = v128.load(q, 48);
      const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1), e2 = xEven(x2), o2 = xOdd(x2), e3 = xEven(x3), o3 = xOdd(x3);
      i0 = i32x4.add(i0, chunkDotX<K>(w0, 1, i32x4.shuffle(sc0, sc0, 1, 1, 1, 1), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i0, 0);
      i1 = i32x4.add(i1, chunkDotX<K>(w1, 1, i32x4.shuffle(sc1, sc1, 1, 1, 1, 1), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i1, 0);
      i2 = i32x4.add(i2, chunkDotX<K>(w2, 1, i32x4.shuffle(sc2, sc2, 1, 1, 1, 1), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i2, 0);
      i3 = i32x4.add(i3, chunkDotX<K>(w3, 1, i32x4.shuffle(sc3, sc3, 1, 1, 1, 1), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i3, 0);
    }
    {
      const q = xb + 132;
      const x0 = v128.load(q), x1 = v128.load(q, 16), x2 = v128.load(q, 32), x3 = v128.load(q, 48);
      const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1), e2 = xEven(x2), o2 = xOdd(x2), e3 = xEven(x3), o3 = xOdd(x3);
      i0 = i32x4.add(i0, chunkDotX<K>(w0, 2, i32x4.shuffle(sc0, sc0, 2, 2, 2, 2), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i0, 0);
      i1 = i32x4.add(i1, chunkDotX<K>(w1, 2, i32x4.shuffle(sc1, sc1, 2, 2, 2, 2), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i1, 0);
      i2 = i32x4.add(i2, chunkDotX<K>(w2, 2, i32x4.shuffle(sc2, sc2, 2, 2, 2, 2), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i2, 0);
      i3 = i32x4.add(i3, chunkDotX<K>(w3, 2, i32x4.shuffle(sc3, sc3, 2, 2, 2, 2), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i3, 0);
    }
    {
      const q = xb + 196;
      const x0 = v128.load(q), x1 = v128.load(q, 16), x2 = v128.load(q, 32), x3 = v128.load(q, 48);
      const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1), e2 = xEven(x2), o2 = xOdd(x2), e3 = xEven(x3), o3 = xOdd(x3);
      i0 = i32x4.add(i0, chunkDotX<K>(w0, 3, i32x4.shuffle(sc0, sc0, 3, 3, 3, 3), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i0, 0);
      i1 = i32x4.add(i1, chunkDotX<K>(w1, 3, i32x4.shuffle(sc1, sc1, 3, 3, 3, 3), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i1, 0);
      i2 = i32x4.add(i2, chunkDotX<K>(w2, 3, i32x4.shuffle(sc2, sc2, 3, 3, 3, 3), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i2, 0);
      i3 = i32x4.add(i3, chunkDotX<K>(w3, 3, i32x4.shuffle(sc3, sc3, 3, 3, 3, 3), e0, o0, e1, o1, e2, o2, e3, o3)); v128.store32_lane(out, i3, 0);
    }
    const isum = i32x4_hsum4(i0, i1, i2, i3);
    const bs = bsums32(xb);
    const msum = i32x4_hsum4(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(mA), bs), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(mA), bs),
      i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(mB), bs), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(mB), bs));
    const dx = f32x4.splat(load<f32>(xb));
    const d = f32x4.mul(f16x4_hi_to_f32x4_nosub(i32x4.shl(h, 16)), dx), dmin = f32x4.mul(f16x4_hi_to_f32x4_nosub(h), dx);
    acc = f32x4.add(acc, f32x4.mul(d, f32x4.convert_i32x4_s(isum)));
    acc = f32x4.sub(acc, f32x4.mul(dmin, f32x4.convert_i32x4_s(msum)));
  }
  store_rows4(out, outGap, acc);
}

/** Rows done per pass over the tiles of tokens (see matmul_k_tiles_group). */
@inline const ROWS_PER_PASS: i32 = 16;

/** matmul for Q4_K and Q5_K (see DEVELOPERS.md): tokens in groups whose activations stay in cache
 *  (~256 KiB) while every row passes over them; within a group, tiles of two rows by four tokens. */
@inline export function matmul_k_tiles<K>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const nb = k / QK_K;
  const group = max(4, (262144 / (nb * <i32>Q8K)) & ~3);
  for (let t0 = 0; t0 < nTok; t0 += group) {
    const n = min(group, nTok - t0);
    matmul_k_tiles_group<K>(w, x + <usize>(t0 * xStride), out + (<usize>(t0 * outStride) << 2), nb, rowStart, rowEnd, n, xStride, outStride);
  }
}

@inline function matmul_k_tiles_group<K>(w: usize, x: usize, out: usize, nb: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const kq = changetype<K>(0);
  const rowBytes = <usize>nb * kq.bytes();
  const xs = <usize>xStride, os = <usize>outStride << 2;
  // Tiles of four tokens, and three as a tile of four with the last repeated; one or two tokens
  // left take the one-token path.
  const tiled = (nTok & ~3) + ((nTok & 3) == 3 ? 3 : 0);
  for (let r0 = rowStart; r0 < rowEnd; r0 += ROWS_PER_PASS) { // rows stay in L2, a tile's tokens in L1
    const r1 = min(r0 + ROWS_PER_PASS, rowEnd);
    for (let t = 0; t < tiled; t += 4) {
      const last = <usize>min(3, tiled - t - 1);
      const xt = x + <usize>t * xs, ot = out + <usize>t * os;
      for (let r = r0; r < r1; r += 2) {
        const two = r + 1 < r1;
        tile2x4<K>(w + <usize>r * rowBytes, two ? rowBytes : 0, two, xt, xs, min<usize>(2, last) * xs, last * xs, nb,
          ot + (<usize>r << 2), os, min<usize>(2, last) * os, last * os);
      }
    }
  }
  // The tokens left (all of them when decoding): four rows at a time from the four quarters of the
  // range (see matmul_b32), then the rows left.
  const quarter = (rowEnd - rowStart) >> 2;
  for (let t = tiled; t < nTok; t++) {
    const xt = x + <usize>t * xs, ot = out + <usize>t * os;
    for (let r = rowStart; r < rowStart + quarter; r++) {
      rowDot4Packed<K>(w + <usize>r * rowBytes, <usize>quarter * rowBytes, xt, nb, ot + (<usize>r << 2), <usize>quarter);
    }
    for (let r = rowStart + 4 * quarter; r < rowEnd; r++) {
      const o = ot + (<usize>r << 2);
      store<f32>(o, rowDot1Packed<K>(w + <usize>r * rowBytes, xt, nb, o));
    }
  }
}
