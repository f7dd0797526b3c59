// What the K-quant kernels (q2_k ... q6_k) share: the Q8_K activation block, the 6-bit scale/min
// packing of Q4_K and Q5_K, the f32 combination of a block's integer sums, and the loops that run a
// type's row kernels over rows and tokens. Not exported from index.ts.

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

/** fa + dx*d*isum - dx*dmin*msum, lane-wise in f32 (types with mins). */
@inline export function combineMin(fa: v128, isum: v128, msum: v128, xb: usize, d: f32, dmin: f32): v128 {
  const dx = load<f32>(xb);
  return f32x4.add(fa, f32x4.sub(
    f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(dx * d)),
    f32x4.mul(f32x4.convert_i32x4_s(msum), f32x4.splat(dx * dmin))));
}

/** fa + dx*d*isum, lane-wise in f32 (types without mins). */
@inline export function combine(fa: v128, isum: v128, xb: usize, d: f32): v128 {
  return f32x4.add(fa, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(load<f32>(xb) * d)));
}

@inline export function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

// The loops call methods on changetype<K>(0) (AssemblyScript has no static members on type
// parameters): K is a class with @inline bytes(), dotRef(wr, xr, nb), and for matmul_k_quads
// dot1(wr, x, nb) and dot4(wr, x0, x1, x2, x3, nb, o0, o1, o2, o3).

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
  for (let r = rowStart; r < rowEnd; r++) {
    const wr = w + <usize>r * rowBytes;
    const o = out + (<usize>r << 2);
    let t = 0;
    for (; t + 4 <= nTok; t += 4) {
      const xt = x + <usize>t * xs, ot = o + <usize>t * os;
      kq.dot4(wr, xt, xt + xs, xt + 2 * xs, xt + 3 * xs, nb, ot, ot + os, ot + 2 * os, ot + 3 * os);
    }
    if (nTok - t == 3) {
      // Three left: one four-token pass with the last token twice beats three one-token passes.
      const xt = x + <usize>t * xs, ot = o + <usize>t * os;
      kq.dot4(wr, xt, xt + xs, xt + 2 * xs, xt + 2 * xs, nb, ot, ot + os, ot + 2 * os, ot + 2 * os);
      t += 3;
    }
    for (; t < nTok; t++) store<f32>(o + <usize>t * os, kq.dot1(wr, x + <usize>t * xs, nb));
  }
}
