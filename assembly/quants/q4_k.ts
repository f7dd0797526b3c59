// Q4_K: 256 weights in 144 bytes (ggml block_q4_K), dotted with Q8_K activations.
//   f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
// 8 sub-blocks of 32: w = d*sc[j]*q - dmin*m[j], q in [0, 15], sc and m 6-bit, packed in scales[12]
// (get_scale_min_k4). Chunk c of qs (32 bytes) holds sub-block 2c in its low nibbles and 2c+1 in
// its high nibbles. The min term uses the Q8_K block sums: sum(q8 * m) = m * bsum.
import { f16_to_f32, f16x2_rows_finite, pair_cells, pair_halves } from "./common";
import { QK_K, Q8K, scales03, scales47, mins03, mins47, byteOf, minsPairs, minTerm, hsum, combineMin, matmul_k_ref } from "./kquants";

@inline const BLOCK: usize = 144;
/** Rows done per pass over the tiles of tokens (see matmulGroup). */
@inline const ROWS_PER_PASS: i32 = 16;



/** Low / high nibbles of 16 bytes, as i8 weights. */
@inline function lowNibbles(v: v128): v128 { return v128.and(v, i8x16.splat(0x0f)); }
@inline function highNibbles(v: v128): v128 { return v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0f)); }

/** scale * dot(w, q8) over 32 weights (u8 nibbles), as four i32 partial sums. */
@inline function dot32(w0: v128, w1: v128, scale: v128, q: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) { // nibble pairs times q8: at most 2 * 15 * 127, no overflow
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





/** n weights from src to f32 at dst (dequantize_row_q4_K). */
export function dequantize_q4_k(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const wb = src + <usize>b * BLOCK;
    const y = dst + <usize>b * 1024;
    const d = f16_to_f32(load<u16>(wb));
    const dmin = f16_to_f32(load<u16>(wb, 2));
    const a0 = load<u32>(wb, 4), a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const s03 = scales03(a0), s47 = scales47(a0, a2), m03 = mins03(a1), m47 = mins47(a1, a2);
    for (let c = 0; c < 4; c++) {
      const d1 = d * <f32>byteOf(s03, s47, 2 * c), m1 = dmin * <f32>byteOf(m03, m47, 2 * c);
      const d2 = d * <f32>byteOf(s03, s47, 2 * c + 1), m2 = dmin * <f32>byteOf(m03, m47, 2 * c + 1);
      const q = wb + 16 + (<usize>c << 5);
      const yc = y + (<usize>c << 8);
      for (let l = 0; l < 32; l++) {
        const v = <u32>load<u8>(q + <usize>l);
        store<f32>(yc + (<usize>l << 2), d1 * <f32>(v & 0xf) - m1);
        store<f32>(yc + 128 + (<usize>l << 2), d2 * <f32>(v >> 4) - m2);
      }
    }
  }
}

/** Scalar reference (ggml's ggml_vec_dot_q4_K_q8_K_generic): exact integer sums per block, then
 * the block's d and dmin applied in f32. */
function dotRef(wr: usize, xr: usize, nb: i32): f32 {
  let sumf: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = xr + <usize>b * Q8K;
    const a0 = load<u32>(wb, 4), a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const s03 = scales03(a0), s47 = scales47(a0, a2), m03 = mins03(a1), m47 = mins47(a1, a2);
    let sumi = 0;
    for (let j = 0; j < 16; j++) sumi += <i32>load<i16>(xb + 260 + (<usize>j << 1)) * byteOf(m03, m47, j >> 1);
    let isum = 0;
    for (let j = 0; j < 8; j++) {
      const q = wb + 16 + (<usize>(j >> 1) << 5);
      const shift = <u32>(j & 1) << 2;
      let s = 0;
      for (let l = 0; l < 32; l++) {
        const w = <i32>((<u32>load<u8>(q + <usize>l) >> shift) & 0xf);
        s += w * <i32>load<i8>(xb + 4 + <usize>(32 * j + l));
      }
      isum += byteOf(s03, s47, j) * s;
    }
    const dx = load<f32>(xb);
    const d = f16_to_f32(load<u16>(wb)) * dx;
    const dmin = f16_to_f32(load<u16>(wb, 2)) * dx;
    sumf += d * <f32>isum;
    sumf -= dmin * <f32>sumi;
  }
  return sumf;
}

export function matmul_q4_k_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  matmul_k_ref<Q4K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** One row against one token. */
function rowDot1(wr: usize, x0: usize, nb: i32): f32 {
  let f0 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb0 = x0 + <usize>b * Q8K;
    const a0 = load<u32>(wb, 4), a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const m03 = mins03(a1), m47 = mins47(a1, a2);
    // the scales advance by shifts: TurboFan would recompute loop invariants at every iteration
    let sc = <u64>scales03(a0) | (<u64>scales47(a0, a2) << 32);
    let acc0 = i32x4.splat(0);
    for (let c = 0; c < 4; c++) {
      const q = wb + 16 + (<usize>c << 5);
      const v0 = v128.load(q), v1 = v128.load(q, 16);
      const scLo = i16x8.splat(<i16>(sc & 0xff));
      const scHi = i16x8.splat(<i16>((sc >> 8) & 0xff));
      sc >>= 16;
      const xo = (<usize>c << 6) + 4;
      acc0 = i32x4.add(acc0, dot32(lowNibbles(v0), lowNibbles(v1), scLo, xb0 + xo));
      acc0 = i32x4.add(acc0, dot32(highNibbles(v0), highNibbles(v1), scHi, xb0 + xo + 32));
    }
    const mLo = minsPairs(m03, m47, 0), mHi = minsPairs(m03, m47, 1);
    const d = f16_to_f32(load<u16>(wb)), dmin = f16_to_f32(load<u16>(wb, 2));
    f0 = combineMin(f0, acc0, minTerm(xb0, mLo, mHi), xb0, d, dmin);
  }
  return hsum(f0);
}

// ---- Many tokens: tiles of two rows by four tokens (see "Many tokens" in common.ts) ----
// Each sub-block of 32 weights is decoded once for the four tokens: SIMD128 widens it to i16 and
// multiplies in its scale; the relaxed-SIMD build keeps the nibbles as u8 for
// i16x8.relaxed_dot_i8x16_i7x16_s (nibble pairs times q8: at most 2 * 15 * 127, no overflow) and
// applies the scale in the i32x4.dot_i16x8_s that widens the sums. The integer sums of a cell stay
// exact over the block; its d, dmin and the activations' d apply once per block, four cells at once.
// Measured (4864x1024, 16 tokens, Zen 4, Node 20): 3000 tokens/s with one row by four tokens,
// 4100 with these tiles, 6700 relaxed.

/** The eight 6-bit sub-block scales of block wb as i16 lanes. */
@inline function scaleLanes(wb: usize): v128 {
  const a0 = load<u32>(wb, 4), a2 = load<u32>(wb, 12);
  return i16x8.extend_low_i8x16_u(i32x4.replace_lane(i32x4.splat(scales03(a0)), 1, scales47(a0, a2)));
}

/** i16 lane 0 (odd: lane 1) of v in every lane. */
@inline function lane01(v: v128, odd: bool): v128 {
  return odd ? i8x16.shuffle(v, v, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3)
    : i8x16.shuffle(v, v, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
}

/** i32x4 partial sums of one cell and one sub-block: weights u0 (0-15), u1 (16-31) as u8 nibbles,
 *  their scale s (i16 lanes), the token's 32 q8 at q. */
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
@inline function tile2x4(wr: usize, rowBytes: usize, two: bool, x: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  o: usize, o1: usize, o2: usize, o3: usize): void {
  let acc01 = f32x4.splat(0), acc23 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK, wb1 = wb + rowBytes;
    const xb = x + <usize>b * Q8K;
    let sc0 = scaleLanes(wb), sc1 = scaleLanes(wb1);
    let i01 = i32x4.splat(0), i23 = i32x4.splat(0);
    for (let c = 0; c < 4; c++) {
      const q = xb + 4 + (<usize>c << 6);
      const p0 = wb + 16 + (<usize>c << 5), p1 = wb1 + 16 + (<usize>c << 5);
      const a0 = v128.load(p0), a1 = v128.load(p0, 16), b0 = v128.load(p1), b1 = v128.load(p1, 16);
      // sub-block 2c: the low nibbles
      const l0 = lowNibbles(a0), l1 = lowNibbles(a1), k0 = lowNibbles(b0), k1 = lowNibbles(b1);
      const lo0 = lane01(sc0, false), lo1 = lane01(sc1, false);
      i01 = i32x4.add(i01, cells(l0, l1, lo0, k0, k1, lo1, q, x1, o));
      i23 = i32x4.add(i23, cells(l0, l1, lo0, k0, k1, lo1, q + x2, x3 - x2, o));
      // sub-block 2c + 1: the high nibbles
      const h0 = highNibbles(a0), h1 = highNibbles(a1), g0 = highNibbles(b0), g1 = highNibbles(b1);
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
    const d = f16x2_rows_finite(wb, rowBytes), dmin = f16x2_rows_finite(wb + 2, rowBytes);
    const dx01 = i32x4.shuffle(dxv, dxv, 0, 0, 1, 1), dx23 = i32x4.shuffle(dxv, dxv, 2, 2, 3, 3);
    acc01 = f32x4.add(acc01, f32x4.sub(f32x4.mul(f32x4.convert_i32x4_s(i01), f32x4.mul(d, dx01)),
      f32x4.mul(f32x4.convert_i32x4_s(m01), f32x4.mul(dmin, dx01))));
    acc23 = f32x4.add(acc23, f32x4.sub(f32x4.mul(f32x4.convert_i32x4_s(i23), f32x4.mul(d, dx23)),
      f32x4.mul(f32x4.convert_i32x4_s(m23), f32x4.mul(dmin, dx23))));
  }
  if (two) {
    v128.store64_lane(o, acc01, 0);
    v128.store64_lane(o + o1, acc01, 1);
    v128.store64_lane(o + o2, acc23, 0);
    v128.store64_lane(o + o3, acc23, 1);
  } else {
    v128.store32_lane(o, acc01, 0);
    v128.store32_lane(o + o1, acc01, 2);
    v128.store32_lane(o + o2, acc23, 0);
    v128.store32_lane(o + o3, acc23, 2);
  }
}

/** out[t][r] = dot(row r of W, x_t) for r in [rowStart, rowEnd), t in [0, nTok); see DEVELOPERS.md.
 * Tokens go in groups whose activations stay in cache (~256 KiB) while every row passes over them;
 * within a group each row takes the tokens four at a time. */
export function matmul_q4_k(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
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
        tile2x4(w + <usize>r * rowBytes, two ? rowBytes : 0, two, xt, xs, min<usize>(2, last) * xs, last * xs, nb,
          ot + (<usize>r << 2), os, min<usize>(2, last) * os, last * os);
      }
    }
  }
  for (let t = tiled; t < nTok; t++) {
    for (let r = rowStart; r < rowEnd; r++) store<f32>(out + (<usize>r << 2) + <usize>t * os, rowDot1(w + <usize>r * rowBytes, x + <usize>t * xs, nb));
  }
}

/** Q4_K's row kernels, for the shared loops in kquants.ts. */
@final class Q4K {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRef(wr, xr, nb); }
}
