// Loops for scripts/bench-ceiling.mjs: how fast the batched matmul could go on this machine, not
// kernels. Built twice, SIMD128 and relaxed SIMD (ASC_FEATURE_RELAXED_SIMD picks the body).
//
// The "ideal" loops do only the arithmetic of a many-token matmul: the weights are already 8-bit
// integers (as i16 for SIMD128, u8 for relaxed) laid out so that i32 lane j of every dot product
// belongs to block j of a group of four 32-weight blocks, the activations likewise, so that no
// weight decoding, widening of activations or horizontal sum is left; one f32 multiply-add per
// group applies the scales. A real kernel cannot be faster than its ideal loop.

// ---- peak: independent dot products and adds, nothing else ----

/** Relaxed build: n rounds of four independent (2 x i16x8.relaxed_dot_i8x16_i7x16_s, i16x8.add,
 *  i32x4.dot_i16x8_s by ones, i32x4.add): the relaxed tiles' pattern, 128 multiply-adds a round.
 *  SIMD128 build: returns -1 (the kernels' dot_peak is the SIMD128 peak). */
export function relaxed_peak(n: i32): i32 {
  if (!ASC_FEATURE_RELAXED_SIMD) return -1;
  let a0 = i32x4.splat(1), a1 = i32x4.splat(2), a2 = i32x4.splat(3), a3 = i32x4.splat(4);
  let x = i8x16.splat(3);
  const u = i8x16.splat(5), one = i16x8.splat(1);
  for (let i = 0; i < n; i++) {
    a0 = i32x4.add(a0, i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x, u), i16x8.relaxed_dot_i8x16_i7x16_s(u, u)), one));
    a1 = i32x4.add(a1, i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(u, u), i16x8.relaxed_dot_i8x16_i7x16_s(x, u)), one));
    a2 = i32x4.add(a2, i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x, u), i16x8.relaxed_dot_i8x16_i7x16_s(x, u)), one));
    a3 = i32x4.add(a3, i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(u, u), i16x8.relaxed_dot_i8x16_i7x16_s(u, u)), one));
    x = i8x16.add(x, u);
  }
  return i32x4.extract_lane(i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3)), 0);
}

// ---- ideal many-token loops: one row by four tokens ----

/** Bytes of one group of 128 weights (or activations) and its four f32 scales. */
export function group_bytes(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 128 + 16 : 256 + 16;
}

/** out[t][r] for rows [0, rows) and tokens [0, nTok) (a multiple of 4), k a multiple of 128:
 *  w has rows of k/128 groups, x has tokens of k/128 groups at stride xs bytes. */
export function ideal(w: usize, x: usize, out: usize, k: i32, rows: i32, nTok: i32, xs: usize): void {
  const ng = k >> 7;
  const gb = <usize>group_bytes();
  for (let t = 0; t + 3 < nTok; t += 4) {
    for (let r = 0; r < rows; r++) {
      tile(w + <usize>r * <usize>ng * gb, x + <usize>t * xs, xs, ng, out + ((<usize>t * <usize>rows + <usize>r) << 2), <usize>rows << 2);
    }
  }
}

@inline function tile(w: usize, x: usize, xs: usize, ng: i32, out: usize, os: usize): void {
  const gb = <usize>group_bytes();
  const data = gb - 16; // the scales follow the data
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  let pw = w, px = x;
  for (let g = 0; g < ng; g++, pw += gb, px += gb) {
    let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
    for (let v: usize = 0; v < data; v += 32) {
      const w0 = v128.load(pw + v), w1 = v128.load(pw + v + 16);
      a0 = i32x4.add(a0, pair(w0, w1, px + v));
      a1 = i32x4.add(a1, pair(w0, w1, px + xs + v));
      a2 = i32x4.add(a2, pair(w0, w1, px + 2 * xs + v));
      a3 = i32x4.add(a3, pair(w0, w1, px + 3 * xs + v));
    }
    const dw = v128.load(pw + data);
    f0 = f32x4.add(f0, f32x4.mul(f32x4.convert_i32x4_s(a0), f32x4.mul(dw, v128.load(px + data))));
    f1 = f32x4.add(f1, f32x4.mul(f32x4.convert_i32x4_s(a1), f32x4.mul(dw, v128.load(px + xs + data))));
    f2 = f32x4.add(f2, f32x4.mul(f32x4.convert_i32x4_s(a2), f32x4.mul(dw, v128.load(px + 2 * xs + data))));
    f3 = f32x4.add(f3, f32x4.mul(f32x4.convert_i32x4_s(a3), f32x4.mul(dw, v128.load(px + 3 * xs + data))));
  }
  store<f32>(out, hsum(f0));
  store<f32>(out + os, hsum(f1));
  store<f32>(out + 2 * os, hsum(f2));
  store<f32>(out + 3 * os, hsum(f3));
}

/** Partial sums (lane j: block j) of two vectors of weights w0, w1 times the activations at p. */
@inline function pair(w0: v128, w1: v128, p: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(p), w0),
      i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(p, 16), w1)), i16x8.splat(1));
  }
  return i32x4.add(i32x4.dot_i16x8_s(w0, v128.load(p)), i32x4.dot_i16x8_s(w1, v128.load(p, 16)));
}

@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}
