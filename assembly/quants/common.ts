// Helpers shared by every weight type: half-precision conversions, exactly as ggml does them.
// No static data here or anywhere in assembly/ (see DEVELOPERS.md): tables are built from v128
// constants or computed.

/** IEEE half (as u16 bits) to f32, exact. */
@inline export function f16_to_f32(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp == 0x1f) return reinterpret<f32>(sign | 0x7f800000 | (mant << 13));
  if (exp != 0) return reinterpret<f32>(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return reinterpret<f32>(sign);
  // subnormal half: mant * 2^-24
  const v = <f32>mant * reinterpret<f32>(0x33800000);
  return sign ? -v : v;
}

/** f32 to IEEE half bits, round to nearest even (what F16C and ggml's fp32_to_fp16 do). */
@inline export function f32_to_f16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  const sign = (x >> 16) & 0x8000;
  const absx = x & 0x7fffffff;
  if (absx >= 0x7f800000) return sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0); // inf / nan
  if (absx >= 0x477ff000) return sign | 0x7c00; // rounds to >= 65520: overflow to inf
  if (absx < 0x38800000) {
    // result is subnormal (or zero): value / 2^-24, rounded to nearest even
    const v = reinterpret<f32>(absx) * reinterpret<f32>(0x4b800000); // * 2^24
    // nearest-even rounding of a value < 1024 via the 2^23 trick
    const r = <u32>((v + 8388608.0) - 8388608.0);
    return sign | r;
  }
  const mant = absx & 0x7fffff;
  let h = ((absx >> 23) - 112) << 10 | (mant >> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h += 1;
  return sign | h;
}

/** bf16 bits to f32, exact. */
@inline export function bf16_to_f32(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

/** f32 to bf16 bits, round to nearest even; NaN stays NaN (ggml_compute_fp32_to_bf16). */
@inline export function f32_to_bf16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  if ((x & 0x7fffffff) > 0x7f800000) return (x >> 16) | 64;
  return (x + (0x7fff + ((x >> 16) & 1))) >> 16;
}

/** Round half to even, as nearbyint() in the default FE mode. */
@inline export function round_even(x: f32): f32 {
  return nearest<f32>(x);
}

// ---- SIMD helpers shared by the weight types ----

/** 2^112: rebiases a half's exponent field (bias 15) placed in an f32's (bias 127). */
@inline const F16_REBIAS: f32 = reinterpret<f32>(0x77800000);

// The conversions below multiply the half's bits, placed in an f32, by 2^112: three instructions,
// but a subnormal half makes that f32 operand subnormal, and x86 takes a microcode assist (tens to
// hundreds of cycles) for a multiply with a subnormal operand; WebAssembly cannot turn that off.
// That is rare for the values they convert (f16 weights and KV entries one by one, the block
// scales of the 32-weight types, activation scales, Q2_K's and Q3_K's d, about 1e-3 for typical
// weights). The super-block scales of Q4_K, Q5_K and Q6_K are another matter: d is the largest
// sub-block scale / 63 or / 127, 1e-5 to 1e-4 for typical weights, around the smallest normal
// half (6.1e-5): every Q6_K d of a synthetic 1.5B file with weights of std 1/sqrt(fan-in), a sixth
// of its Q5_K d/dmin, half of its Q4_K ffn_down's. Those take f16x4_hi_to_f32x4_nosub.

/**
 * Four halves, each in the upper 16 bits of an i32 lane (lower bits ignored), to four f32, exact
 * for every half: subnormals come out right through the multiply, inf and NaN (exponent 31) are
 * patched to exponent 255 with their payload kept.
 */
@inline export function f16x4_hi_to_f32x4(v: v128): v128 {
  const bits = v128.and(i32x4.shr_s(v, 3), i32x4.splat(0x8fffe000)); // sign, exponent, mantissa
  const f = f32x4.mul(bits, f32x4.splat(F16_REBIAS));
  const expMask = i32x4.splat(0x0f800000);
  const infNan = i32x4.eq(v128.and(bits, expMask), expMask);
  return v128.or(f, v128.and(infNan, i32x4.splat(0x7f800000)));
}

/**
 * f16x4_hi_to_f32x4 for block scales and mins: exact for every finite half, but an inf or NaN comes
 * out finite (2^16 to 2^17). Quantizers never write one; an activation block gets one only when
 * max|x| > 8.3e6, where llama.cpp's result is inf or NaN anyway. Half the work of the exact one.
 */
@inline export function f16x4_hi_to_f32x4_finite(v: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shr_s(v, 3), i32x4.splat(0x8fffe000)), f32x4.splat(F16_REBIAS));
}

/**
 * f16x4_hi_to_f32x4_finite without a subnormal f32 on the way (the K-quants' super-block scales,
 * often subnormal halves, see above): f is the magnitude with the exponent rebiased by an integer
 * add, exact where the exponent E is 1 to 30. Where E is 0 (zero, subnormal) f = 2^-15 + M * 2^-25,
 * and the half is M * 2^-24 = f + (f - 2^-14), both steps exact (Sterbenz). The sign is put back
 * last (-0 stays -0). Six more instructions than the multiply: per 256 weights, a few percent
 * where no scale is subnormal, against a third of the speed where some are.
 */
@inline export function f16x4_hi_to_f32x4_nosub(v: v128): v128 {
  const mag = v128.and(i32x4.shr_u(v, 3), i32x4.splat(0x0fffe000)); // exponent and mantissa in f32 place
  const f = i32x4.add(mag, i32x4.splat(112 << 23));
  const sub = i32x4.lt_s(mag, i32x4.splat(0x00800000)); // E == 0
  const m = f32x4.add(f, v128.and(sub, f32x4.sub(f, f32x4.splat(reinterpret<f32>(0x38800000))))); // 2^-14
  return v128.or(m, v128.and(v, i32x4.splat(0x80000000)));
}

/** Halves 0..3 of eight f16 at p, as f32x4. */
@inline export function f16x8_lo_to_f32x4(p: usize): v128 {
  return f16x4_hi_to_f32x4(i16x8.shuffle(i16x8.splat(0), v128.load(p), 0, 8, 1, 9, 2, 10, 3, 11));
}

/** Halves 4..7 of eight f16 at p, as f32x4. */
@inline export function f16x8_hi_to_f32x4(p: usize): v128 {
  return f16x4_hi_to_f32x4(i16x8.shuffle(i16x8.splat(0), v128.load(p), 4, 12, 5, 13, 6, 14, 7, 15));
}

/** bf16 0..3 of eight at p, as f32x4 (exact: a bf16 is the upper half of an f32). */
@inline export function bf16x8_lo_to_f32x4(p: usize): v128 {
  return i16x8.shuffle(i16x8.splat(0), v128.load(p), 0, 8, 1, 9, 2, 10, 3, 11);
}

/** bf16 4..7 of eight at p, as f32x4. */
@inline export function bf16x8_hi_to_f32x4(p: usize): v128 {
  return i16x8.shuffle(i16x8.splat(0), v128.load(p), 4, 12, 5, 13, 6, 14, 7, 15);
}

/** The f16 at p, p + stride, p + 2*stride, p + 3*stride as f32x4 (block scales of 4 blocks). */
@inline export function f16_gather4(p: usize, stride: usize): v128 {
  let v = i32x4.splat(0);
  v = v128.load16_lane(p, v, 1);
  v = v128.load16_lane(p + stride, v, 3);
  v = v128.load16_lane(p + 2 * stride, v, 5);
  v = v128.load16_lane(p + 3 * stride, v, 7);
  return f16x4_hi_to_f32x4(v);
}

/** Sum of the four f32 lanes. */
@inline export function f32x4_hsum(v: v128): f32 {
  const s = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/** Sum of the four i32 lanes. */
@inline export function i32x4_hsum(v: v128): i32 {
  const s = i32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1);
}

/** (sum of a, sum of b, sum of c, sum of d): four horizontal sums in one vector. */
@inline export function i32x4_hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7)); // a0+a2 b0+b2 a1+a3 b1+b3
  const cd = i32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

/** i32x4 partial sums of the 32 products of i16x8 weights (wa..wd = weights 0-7, 8-15, 16-23,
 *  24-31) with the 32 i8 quants at q. */
@inline export function dot_i16x32_q8(wa: v128, wb: v128, wc: v128, wd: v128, q: usize): v128 {
  const s0 = i32x4.dot_i16x8_s(wa, v128.load8x8_s(q));
  const s1 = i32x4.dot_i16x8_s(wb, v128.load8x8_s(q, 8));
  const s2 = i32x4.dot_i16x8_s(wc, v128.load8x8_s(q, 16));
  const s3 = i32x4.dot_i16x8_s(wd, v128.load8x8_s(q, 24));
  return i32x4.add(i32x4.add(s0, s1), i32x4.add(s2, s3));
}

// ---- Weights in blocks of 32 against q8_0 / q8_1 activations ----
// (q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl share the loops below.)
//
// Each weight type is a codec: a @final class with no fields and these @inline methods
//   bytes(): usize       block size in bytes; the f16 scale d is always at offset 0
//   hasMin(): bool       an f16 min m at offset 2, w = d*q + m; activations are then q8_1, else q8_0
//   q(p, j): i32         weight j (0..31) of the block at p as an integer (scalar reference)
//   lo(p), hi(p): v128   weights 0..15 and 16..31 as i8x16
//   wide(): bool         whether w16 exists: the types whose quants widen straight from memory
//   w16(p, i): v128      weights 8i..8i+7 plus offset() as i16x8 (i a constant 0..3)
//   offset(): i32        what w16 adds (q4_0 stores q + 8); the loops subtract offset * sum(x)
//   relaxed(): bool      whether the relaxed-SIMD build's tiles take i16x8.relaxed_dot_i8x16_i7x16_s
//                        with these weights as its non-negative operand; then also:
//   ulo(p), uhi(p): v128 weights 0..15 and 16..31 plus roffset() as u8 in [0, 127]
//   roffset(): i32       what ulo and uhi add; the tiles subtract roffset * sum(x)
//   qsAt(): usize        offset of the quants (qs) in a block: lo, hi, ulo, uhi, w16 read only there
//   plane(): bool        whether the rows interleaved by four (b32x4.ts) keep the 5th bits as a plane
//   dotAdd(): bool       (Q8_0Codec<DotAdd> only) the relaxed build's tiles of eight tokens take
//                        i32x4.relaxed_dot_i8x16_i7x16_add_s on u = w + 128 (lo, hi xor 0x80) and
//                        subtract 128 * sum(x): exact only where that op is a u8 x i8 dot product
//                        (x86 AVX-VNNI vpdpbusd, Node 24), which the caller checks (dot_add_exact)
// q8_0 and iq4_nl have signed weights: the relaxed dot then needs |w| and x with w's sign (ggml's
// maddubs trick), which on x86 without AVX-VNNI costs as much as the SIMD128 loop (measured, q8_0
// 4864x896, 8 tokens: 4600 tokens/s relaxed, 5700 SIMD128), so they keep the SIMD128 tiles. Where
// the i32 dot-add is a full u8 x i8 product (dot_add_exact: Node 24 on AVX-VNNI), matmul_q8_0's
// tiles of eight take it on w + 128 instead (Q8_0Codec<DotAdd>): 9700 against 5900 tokens/s there.
// The loops call the methods on changetype<C>(0): AssemblyScript has no static members on type
// parameters, and as the codecs hold no state the calls resolve and inline at compile time.
//
// The loops keep one block per iteration: V8 hoists every load of a basic block to its top, so
// unrolling blocks only spills registers (x86 has 16 vector registers). They share work across
// rows (one token: the activation loads and scale conversions serve four rows) or across tokens (a
// tile of tokens, below: each weight block is decoded once for all of them).

export const QK: i32 = 32;
export const Q8_0_BYTES: usize = 34; // f16 d; i8 qs[32]
export const Q8_1_BYTES: usize = 36; // f16 d; f16 s; i8 qs[32]

/** Rows done per pass over a tile of tokens: their weights stay in L2 while the tile's
 *  activations stay in L1. */
export const ROWS_PER_PASS: i32 = 16;

/** i32x4 partial sums of block pw's weights times activations widened to i16x8 (xa..xd); `sx` is
 *  offset * sum(x) in the same form, for the wide codecs. */
@inline export function block_dot<C>(pw: usize, xa: v128, xb: v128, xc: v128, xd: v128, sx: v128): v128 {
  const c = changetype<C>(0);
  if (c.wide()) {
    const s = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(c.w16(pw, 0), xa), i32x4.dot_i16x8_s(c.w16(pw, 1), xb)),
      i32x4.add(i32x4.dot_i16x8_s(c.w16(pw, 2), xc), i32x4.dot_i16x8_s(c.w16(pw, 3), xd)));
    return c.offset() != 0 ? i32x4.sub(s, sx) : s;
  }
  const lo = c.lo(pw), hi = c.hi(pw);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), xa), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), xb)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), xc), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), xd)));
}

/** offset * sum of the 32 activations (widened to i16x8 in xa..xd) as i32x4 partial sums. */
@inline export function offset_sum<C>(xa: v128, xb: v128, xc: v128, xd: v128): v128 {
  const c = changetype<C>(0);
  if (!c.wide() || c.offset() == 0) return i32x4.splat(0);
  return i32x4.dot_i16x8_s(i16x8.add(i16x8.add(xa, xb), i16x8.add(xc, xd)), i16x8.splat(<i16>c.offset()));
}

/** dot(rows w, w + gap, w + 2*gap, w + 3*gap, one token at x) stored at out, out + 4*outGap, ...:
 *  the activation loads and the scale conversions serve four rows. A block's integer sums of the
 *  four rows become one i32x4 (lane r: row r), so that one convert, one multiply by the scales and
 *  one accumulator serve them all, which frees vector registers; the f32 sums are then those of
 *  matmul_b32_ref and of the tiles (isum * (d_w * d_x), then + m_w * s_x, block after block), so a
 *  token's logits do not depend on how many tokens share its matmul (the engine's batches). */
@inline function dot_b32_rows4<C, D>(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void {
  const c = changetype<C>(0);
  const wb = c.bytes();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  const r1 = gap, r2 = gap << 1, r3 = gap * 3;
  let acc = f32x4.splat(0); // lane r: row r
  let px = x;
  const pend = w + <usize>nb * wb;
  for (let pw = w; pw < pend; pw += wb, px += xb) {
    // the four rows' scales (lane r: row r), row 0's from the splat
    let h = v128.load16_splat(pw);
    h = v128.load16_lane(pw + r1, h, 3);
    h = v128.load16_lane(pw + r2, h, 5);
    h = v128.load16_lane(pw + r3, h, 7);
    const scale = f32x4.mul(f16x4_hi_to_f32x4_finite(h), f16x4_hi_to_f32x4_finite(v128.load16_splat(px)));
    const q = px + xq;
    if (relaxed<C>() && changetype<D>(0).on()) {
      // the i32 dot-add (see DotAdd): each row's chain starts at -roffset * x (partial sums)
      const x0 = v128.load(q), x1 = v128.load(q, 16), z = i32x4.splat(0);
      const o = i8x16.splat(<i8>c.roffset());
      const neg = c.roffset() != 0
        ? i32x4.neg(i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, o, i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, o, z))) : z;
      const s0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, c.uhi(pw), i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, c.ulo(pw), neg));
      const s1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, c.uhi(pw + r1), i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, c.ulo(pw + r1), neg));
      if (barrier<C>()) v128.store32_lane(out, s1, 0); // see below
      const s2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, c.uhi(pw + r2), i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, c.ulo(pw + r2), neg));
      const s3 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, c.uhi(pw + r3), i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, c.ulo(pw + r3), neg));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(i32x4_hsum4(s0, s1, s2, s3)), scale));
    } else if (relaxed<C>()) {
      const x0 = v128.load(q), x1 = v128.load(q, 16), xo = token_offset<C>(q);
      const ab = i16x8_pair(relaxed_dot16<C>(c.ulo(pw), c.uhi(pw), x0, x1, xo),
        relaxed_dot16<C>(c.ulo(pw + r1), c.uhi(pw + r1), x0, x1, xo));
      // a store orders rows 2 and 3's loads after rows 0 and 1's work (V8 hoists every load of a
      // basic block to its top: all four rows' weights live at once and spill); out is written last
      if (barrier<C>()) v128.store32_lane(out, ab, 0);
      const cd = i16x8_pair(relaxed_dot16<C>(c.ulo(pw + r2), c.uhi(pw + r2), x0, x1, xo),
        relaxed_dot16<C>(c.ulo(pw + r3), c.uhi(pw + r3), x0, x1, xo));
      const isum = i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), scale));
    } else {
      const xa = v128.load8x8_s(q), xbv = v128.load8x8_s(q, 8), xc = v128.load8x8_s(q, 16), xd = v128.load8x8_s(q, 24);
      const sx = offset_sum<C>(xa, xbv, xc, xd);
      const ab = pair_halves(block_dot<C>(pw, xa, xbv, xc, xd, sx), block_dot<C>(pw + r1, xa, xbv, xc, xd, sx));
      if (barrier<C>()) v128.store32_lane(out, ab, 0); // see the relaxed branch
      const cd = pair_halves(block_dot<C>(pw + r2, xa, xbv, xc, xd, sx), block_dot<C>(pw + r3, xa, xbv, xc, xd, sx));
      const isum = i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), scale));
    }
    if (c.hasMin()) {
      let m = v128.load16_splat(pw + 2);
      m = v128.load16_lane(pw + r1 + 2, m, 3);
      m = v128.load16_lane(pw + r2 + 2, m, 5);
      m = v128.load16_lane(pw + r3 + 2, m, 7);
      const mins = f32x4.mul(f16x4_hi_to_f32x4_finite(m), f16x4_hi_to_f32x4_finite(v128.load16_splat(px + 2)));
      acc = f32x4.add(acc, mins);
    }
  }
  store_rows4(out, outGap, acc);
}

/** dot(one row at w, one token at x): the rows left over by dot_b32_rows4, summed as there. */
@inline function dot_b32_row<C>(w: usize, x: usize, nb: i32): f32 {
  const c = changetype<C>(0);
  const wb = c.bytes();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  let sum: f32 = 0;
  let px = x;
  const pend = w + <usize>nb * wb;
  for (let pw = w; pw < pend; pw += wb, px += xb) {
    const f = f16x4_hi_to_f32x4_finite(v128.load16_lane(px, v128.load16_splat(pw), 3)); // d_w, d_x
    const q = px + xq;
    let s0: v128;
    if (relaxed<C>()) {
      s0 = relaxed_dot32<C>(c.ulo(pw), c.uhi(pw), v128.load(q), v128.load(q, 16), token_offset<C>(q));
    } else {
      const xa = v128.load8x8_s(q), xbv = v128.load8x8_s(q, 8), xc = v128.load8x8_s(q, 16), xd = v128.load8x8_s(q, 24);
      s0 = block_dot<C>(pw, xa, xbv, xc, xd, offset_sum<C>(xa, xbv, xc, xd));
    }
    sum += <f32>i32x4_hsum(s0) * (f32x4.extract_lane(f, 0) * f32x4.extract_lane(f, 1));
    if (c.hasMin()) {
      const m = f16x4_hi_to_f32x4_finite(v128.load16_lane(px + 2, v128.load16_splat(pw + 2), 3)); // m_w, s_x
      sum += f32x4.extract_lane(m, 0) * f32x4.extract_lane(m, 1);
    }
  }
  return sum;
}

/** Lanes 0-3 of v stored at out, out + 4*outGap, out + 8*outGap, out + 12*outGap: the outputs of four
 *  rows a quarter of a range apart (the one-token loops). */
@inline export function store_rows4(out: usize, outGap: usize, v: v128): void {
  store<f32>(out, f32x4.extract_lane(v, 0));
  store<f32>(out + (outGap << 2), f32x4.extract_lane(v, 1));
  store<f32>(out + (outGap << 3), f32x4.extract_lane(v, 2));
  store<f32>(out + 3 * (outGap << 2), f32x4.extract_lane(v, 3));
}

/** A tile's cells out (two rows by four tokens): acc01 = (r0 t0, r1 t0, r0 t1, r1 t1), acc23 likewise
 *  for t2 and t3, token t at out + ot (ot: 0, o1, o2, o3); `two` false: only row 0's. */
@inline export function store_tile2x4(out: usize, o1: usize, o2: usize, o3: usize, acc01: v128, acc23: v128, two: bool): void {
  if (two) {
    v128.store64_lane(out, acc01, 0);
    v128.store64_lane(out + o1, acc01, 1);
    v128.store64_lane(out + o2, acc23, 0);
    v128.store64_lane(out + o3, acc23, 1);
  } else {
    v128.store32_lane(out, acc01, 0);
    v128.store32_lane(out + o1, acc01, 2);
    v128.store32_lane(out + o2, acc23, 0);
    v128.store32_lane(out + o3, acc23, 2);
  }
}

/** (sum of a, sum of b, sum of c, sum of d): four horizontal f32 sums in one vector. */
@inline export function f32x4_hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return f32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

// ---- Many tokens: tiles of two rows by four or eight tokens ----
//
// A tile decodes each weight block of its two rows once for all its tokens and loads (widens) each
// token's activations once for both rows. The 32-weight dot of one (row, token) cell comes out as
// i32x4 partial sums; cells_2x2 folds the partial sums of two rows by two tokens into one i32x4
// (lanes: row 0 token 0, row 1 token 0, row 0 token 1, row 1 token 1), so that the scale
// conversion and the f32 multiply-add serve four cells at once.
//
// V8 hoists every load of a basic block to its top: the sixteen activation loads of four tokens
// would then all be live at once next to the eight weight vectors, and spill. A store after each
// token's dot products orders the next token's loads after it (a load may not move above a
// store); it writes the tile's first output cell, which the tile overwrites at the end. Measured
// (q4_0, 4864x896, 8 tokens, Zen 4, Node 20): 3800 tokens/s with one row by four tokens, 5000
// with two rows and the stores, 5600 with eight tokens a tile (Deno 2.9's V8 neither gains nor
// loses by the stores: 4700).
//
// The relaxed-SIMD build (ASC_FEATURE_RELAXED_SIMD) takes i16x8.relaxed_dot_i8x16_i7x16_s where a
// codec allows (see relaxed_dot32), in the tiles and in the one-token loops: q4_0 7000 tokens/s,
// and 11.5 GB/s for one token instead of 8 (Node 20 with --experimental-wasm-relaxed-simd; Deno
// 2.9 gains on q4_1, q5_1 and the K-quants but not on q4_0).

/** Lanes (a0 + a2, b0 + b2, a1 + a3, b1 + b3): half of the horizontal sums of a and b. */
@inline export function pair_halves(a: v128, b: v128): v128 {
  return i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
}

/** The cells (row 0, t), (row 1, t), (row 0, t'), (row 1, t') from the halves of pair_halves. */
@inline export function pair_cells(u: v128, v: v128): v128 {
  return i32x4.add(i32x4.shuffle(u, v, 0, 1, 4, 5), i32x4.shuffle(u, v, 2, 3, 6, 7));
}

/** Whether the i32 dot-add is taken: by the one-token loop of a relaxed codec (weights at most 31, so
 *  exact everywhere, but one instruction only where it is vpdpbusd: matmul_b32 picks DotAdd where
 *  dot_add_exact holds), and by Q8_0's tiles of eight (Q8_0Codec<DotAdd>, see dotAdd). The block's
 *  integer sums are the same either way, so are the bits. */
@final export class DotAdd { @inline on(): bool { return true; } }
@final export class NoDotAdd { @inline on(): bool { return false; } }

/** Whether this is the relaxed-SIMD build and codec C takes the i32 dot-add in its tiles of eight. */
@inline export function dotAdd<C>(): bool {
  return ASC_FEATURE_RELAXED_SIMD && changetype<C>(0).dotAdd();
}

/** Whether i32x4.relaxed_dot_i8x16_i7x16_add_s multiplies its second operand as u8 over the whole
 *  range (x86 AVX-VNNI's vpdpbusd: Node 24 on Zen 4 and recent Intel), not only in [0, 127]
 *  (pmaddubsw + pmaddwd saturates sums of pairs; arm64's sdot takes it as signed). `k` keeps the
 *  operands out of the compiler's reach (any k in [0, 2^24)): Binaryen would fold constant operands
 *  with semantics of its own. Evaluated in the caller's compiled code, as its tiles are. */
@inline export function dot_add_exact(k: i32): bool {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const x = i8x16.splat(<i8>(127 | (k >> 24))), u = i8x16.splat(<i8>(-1 | (k >> 24)));
    const r = i32x4.relaxed_dot_i8x16_i7x16_add_s(x, u, i32x4.splat(0));
    return i32x4.all_true(i32x4.eq(r, i32x4.splat(4 * 127 * 255)));
  }
  return false;
}

/** Whether this is the relaxed-SIMD build and codec C has a relaxed form (see the codec notes). */
@inline export function relaxed<C>(): bool {
  return ASC_FEATURE_RELAXED_SIMD && changetype<C>(0).relaxed();
}

/** Vector i (0..3) of block pw as a tile keeps it. SIMD128: the weights as i16x8, offset removed.
 *  Relaxed: 0 and 1 are weights 0-15 and 16-31 as u8 (2 and 3 unused). */
@inline export function tile_weights<C, O>(pw: usize, i: i32): v128 {
  const c = changetype<C>(0);
  if (da<C, O>()) return v128.xor(i == 0 || i == 2 ? c.lo(pw) : c.hi(pw), i8x16.splat(-128));
  if (relaxed<C>()) return i == 0 || i == 2 ? c.ulo(pw) : c.uhi(pw);
  if (c.wide()) return c.offset() != 0 ? i16x8.sub(c.w16(pw, i), i16x8.splat(<i16>c.offset())) : c.w16(pw, i);
  if (i == 0) return i16x8.extend_low_i8x16_s(c.lo(pw));
  if (i == 1) return i16x8.extend_high_i8x16_s(c.lo(pw));
  if (i == 2) return i16x8.extend_low_i8x16_s(c.hi(pw));
  return i16x8.extend_high_i8x16_s(c.hi(pw));
}

/** What a token's activations at q contribute to every row's cell: roffset() * (pairwise sums of
 *  x) as i16x8, for the relaxed build's weights with an offset; else unused. */
@inline export function token_offset<C>(q: usize): v128 {
  const c = changetype<C>(0);
  if (!relaxed<C>() || c.roffset() == 0) return i16x8.splat(0);
  const o = i8x16.splat(<i8>c.roffset());
  return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(q), o), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(q, 16), o));
}

/** Relaxed build: i32x4 partial sums of dot(x, u) - roffset * sum(x) for one block, weights u0
 *  (0-15) and u1 (16-31) as u8, activations x0, x1 as i8, xo from token_offset. The i16 lanes hold
 *  at most 4 * 127 * 31 in magnitude: no overflow. */
@inline function relaxed_dot32<C>(u0: v128, u1: v128, x0: v128, x1: v128, xo: v128): v128 {
  return i32x4.dot_i16x8_s(relaxed_dot16<C>(u0, u1, x0, x1, xo), i16x8.splat(1));
}

/** relaxed_dot32 before the widening: eight i16 partial sums. Each is at most 4 * 127 * 31 in
 *  magnitude (u at most 31), or 4 * 127 * 16 where roffset() is 16 or less and removed: the sum
 *  of two of them fits in an i16 (see i16x8_hsum4). */
@inline export function relaxed_dot16<C>(u0: v128, u1: v128, x0: v128, x1: v128, xo: v128): v128 {
  const s = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, u0), i16x8.relaxed_dot_i8x16_i7x16_s(x1, u1));
  return changetype<C>(0).roffset() != 0 ? i16x8.sub(s, xo) : s;
}

/** Lanes (a0 + a2, b0 + b2, a1 + a3, b1 + b3) of the i32 sums of a and b, i16x8 whose lanes pairwise
 *  fit in an i16 (see i16x8_hsum4, which is two of these). */
@inline export function i16x8_pair(a: v128, b: v128): v128 {
  return i32x4.dot_i16x8_s(i16x8.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7)), i16x8.splat(1));
}

/** Whether the one-token loop orders its rows' loads in two halves (see dot_b32_rows4): in the
 *  relaxed build for the codecs whose weights take several instructions to decode (q5_0 +7-11%,
 *  q5_1 +7-13%; q4_0 loses 4% by it), in SIMD128 for all (q8_0, q4_0, q4_1 one token +6-7%). */
@inline export function barrier<C>(): bool {
  return !changetype<C>(0).wide() || !relaxed<C>();
}

/** (sum of a, sum of b, sum of c, sum of d) as i32x4 from four i16x8 whose lanes pairwise fit in an
 *  i16 (see relaxed_dot16): one add in i16 before the widening saves two widenings. */
@inline export function i16x8_hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const one = i16x8.splat(1);
  const ab = i32x4.dot_i16x8_s(i16x8.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7)), one);
  const cd = i32x4.dot_i16x8_s(i16x8.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7)), one);
  return i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

/** i32x4 partial sums of one cell: a row's weights (a..d from tile_weights) times the token's 32
 *  activations at q; xo from token_offset. */
@inline function cell_dot<C>(a: v128, b: v128, c: v128, d: v128, q: usize, xo: v128): v128 {
  if (relaxed<C>()) return relaxed_dot32<C>(a, b, v128.load(q), v128.load(q, 16), xo);
  return dot_i16x32_q8(a, b, c, d, q);
}

/** How a tile gets roffset() * sum(x) of its tokens (the relaxed build's codecs with an offset):
 *  computed for every row pair (InTile), or read from the matmul's scratch, where matmul_b32 put
 *  them once per pass of rows (Precomputed, see token_offsets). */
@final export class InTile { @inline pre(): bool { return false; } }
@final export class Precomputed { @inline pre(): bool { return true; } }

/** Whether codec C's tiles with offsets of kind O take the i32 dot-add (see dotAdd): only with the
 *  offsets from the scratch; the tiles of four keep the codec's SIMD128 form. */
@inline function da<C, O>(): bool {
  return dotAdd<C>() && changetype<O>(0).pre();
}

/** Whether tile offsets of kind O come from the scratch for codec C. */
@inline function pre<C, O>(): bool {
  return changetype<O>(0).pre() && relaxed<C>() && changetype<C>(0).roffset() != 0;
}

/** The four cells of rows (pw, pw + rowBytes) by tokens (q, q + dq), as i32 (see pair_cells). The
 *  relaxed build adds each cell's eight i16 partial sums pairwise in i16 before widening (see
 *  i16x8_hsum4); with precomputed offsets (O, see pre) it subtracts them at `off` (the two tokens'
 *  roffset * sum(x), each twice) from the four i32 cells at once instead of from each cell's i16
 *  sums. Integer sums either way: the same cells. */
@inline export function cells_2x2<C, O>(a0: v128, b0: v128, c0: v128, d0: v128, a1: v128, b1: v128, c1: v128, d1: v128,
  q: usize, dq: usize, seq: usize, off: usize): v128 {
  if (da<C, O>()) { // off holds 128 * sum(x), (t, t, t', t')
    const z = i32x4.splat(0);
    const x0 = v128.load(q), x1 = v128.load(q, 16);
    const s00 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, b0, i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, a0, z));
    const s10 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, b1, i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, a1, z));
    v128.store32_lane(seq, s00, 0); // orders the next token's loads after this token's (see above)
    const q1 = q + dq;
    const y0 = v128.load(q1), y1 = v128.load(q1, 16);
    const s01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(y1, b0, i32x4.relaxed_dot_i8x16_i7x16_add_s(y0, a0, z));
    const s11 = i32x4.relaxed_dot_i8x16_i7x16_add_s(y1, b1, i32x4.relaxed_dot_i8x16_i7x16_add_s(y0, a1, z));
    const cells = i32x4.sub(i32x4_hsum4(s00, s10, s01, s11), v128.load(off));
    v128.store32_lane(seq, cells, 0);
    return cells;
  }
  if (relaxed<C>()) {
    const x0 = v128.load(q), x1 = v128.load(q, 16);
    const xo = pre<C, O>() ? i16x8.splat(0) : token_offset<C>(q);
    const s00 = pre<C, O>() ? relaxed_raw16(a0, b0, x0, x1) : relaxed_dot16<C>(a0, b0, x0, x1, xo);
    const s10 = pre<C, O>() ? relaxed_raw16(a1, b1, x0, x1) : relaxed_dot16<C>(a1, b1, x0, x1, xo);
    v128.store32_lane(seq, s00, 0); // orders the next token's loads after this token's (see above)
    const q1 = q + dq;
    const y0 = v128.load(q1), y1 = v128.load(q1, 16);
    const yo = pre<C, O>() ? i16x8.splat(0) : token_offset<C>(q1);
    const s01 = pre<C, O>() ? relaxed_raw16(a0, b0, y0, y1) : relaxed_dot16<C>(a0, b0, y0, y1, yo);
    const s11 = pre<C, O>() ? relaxed_raw16(a1, b1, y0, y1) : relaxed_dot16<C>(a1, b1, y0, y1, yo);
    let cells = i16x8_hsum4(s00, s10, s01, s11);
    if (pre<C, O>()) cells = i32x4.sub(cells, v128.load(off));
    v128.store32_lane(seq, cells, 0);
    return cells;
  }
  const xo = token_offset<C>(q);
  const u = pair_halves(cell_dot<C>(a0, b0, c0, d0, q, xo), cell_dot<C>(a1, b1, c1, d1, q, xo));
  v128.store32_lane(seq, u, 0); // orders the next token's loads after this token's (see above)
  const q1 = q + dq;
  const xo1 = token_offset<C>(q1);
  const v = pair_halves(cell_dot<C>(a0, b0, c0, d0, q1, xo1), cell_dot<C>(a1, b1, c1, d1, q1, xo1));
  const cells = pair_cells(u, v);
  v128.store32_lane(seq, cells, 0);
  return cells;
}

/** Relaxed build: the eight i16 partial sums of dot(x, u) for one block, the offset not removed:
 *  each at most 4 * 127 * 31 = 15748 in magnitude (u at most 31), so that two of them still add in
 *  an i16 (i16x8_hsum4). */
@inline function relaxed_raw16(u0: v128, u1: v128, x0: v128, x1: v128): v128 {
  return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, u0), i16x8.relaxed_dot_i8x16_i7x16_s(x1, u1));
}

/** Bytes of matmul scratch a calling thread needs for k (see matmul_b32): four i32x4 per block. */
export const MATMUL_SCRATCH_PER_BLOCK: usize = 64;

/** For eight tokens at x (xStride bytes apart): roffset() * sum(x) of every block, as i32x4 (token 2i,
 *  token 2i, token 2i + 1, token 2i + 1) at dst + blockBytes*b + 16*i, what cells_2x2 subtracts. Exact
 *  in i16 before the widening: each of token_offset's lanes is at most 4 * 127 * roffset (<= 16). */
@inline export function token_offsets<C>(x: usize, xStride: usize, nb: i32, dst: usize,
  blockBytes: usize = MATMUL_SCRATCH_PER_BLOCK): void {
  const c = changetype<C>(0);
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  for (let b = 0; b < nb; b++) {
    const q = x + <usize>b * xb + xq;
    const o = dst + <usize>b * blockBytes;
    for (let i = 0; i < 4; i++) {
      if (dotAdd<C>()) { // 128 * sum(x) by the same dot-add as the cells (see dotAdd in the codec notes)
        const h = i8x16.splat(-128), z = i32x4.splat(0);
        const p0 = q + <usize>(2 * i) * xStride, p1 = q + <usize>(2 * i + 1) * xStride;
        const t0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(p0, 16), h, i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(p0), h, z));
        const t1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(p1, 16), h, i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(p1), h, z));
        v128.store(o + (<usize>i << 4), i32x4_hsum4(t0, t0, t1, t1));
        continue;
      }
      const t0 = token_offset<C>(q + <usize>(2 * i) * xStride), t1 = token_offset<C>(q + <usize>(2 * i + 1) * xStride);
      v128.store(o + (<usize>i << 4), i16x8_hsum4(t0, t0, t1, t1));
    }
  }
}

/** The f16 at p, p + o1, p + o2, p + o3 as f32x4 (finite halves: four tokens' scales or sums). */
@inline export function f16x4_tokens_finite(p: usize, o1: usize, o2: usize, o3: usize): v128 {
  let h = v128.load16_splat(p);
  h = v128.load16_lane(p + o1, h, 3);
  h = v128.load16_lane(p + o2, h, 5);
  h = v128.load16_lane(p + o3, h, 7);
  return f16x4_hi_to_f32x4_finite(h);
}

/** The f16 at p, p + stride, p + 2*stride, p + 3*stride as f32x4 (finite halves: scales). */
@inline export function f16x4_gather_finite(p: usize, stride: usize): v128 {
  let h = v128.load16_splat(p);
  h = v128.load16_lane(p + stride, h, 3);
  h = v128.load16_lane(p + 2 * stride, h, 5);
  h = v128.load16_lane(p + 3 * stride, h, 7);
  return f16x4_hi_to_f32x4_finite(h);
}

/** The f16 at p and p + gap as f32x4 (at p, at p + gap, at p, at p + gap): two rows' scales. */
@inline export function f16x2_rows_finite(p: usize, gap: usize): v128 {
  return f16x4_hi_to_f32x4_finite(f16x2_rows(p, gap));
}

/** f16x2_rows_finite for K-quant super-block scales (f16x4_hi_to_f32x4_nosub). */
@inline export function f16x2_rows_nosub(p: usize, gap: usize): v128 {
  return f16x4_hi_to_f32x4_nosub(f16x2_rows(p, gap));
}

@inline function f16x2_rows(p: usize, gap: usize): v128 {
  let h = v128.load16_splat(p);
  h = v128.load16_lane(p + gap, h, 3);
  return v128.load16_lane(p + gap, h, 7);
}

/** acc + cells (see pair_cells) times their scales: rows' dw (r0, r1, r0, r1) times the tokens'
 *  dx lanes lo, lo, hi, hi. */
@inline export function scale_cells(acc: v128, cells: v128, dw: v128, dx: v128, hi: bool): v128 {
  const d = hi ? i32x4.shuffle(dx, dx, 2, 2, 3, 3) : i32x4.shuffle(dx, dx, 0, 0, 1, 1);
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(cells), f32x4.mul(dw, d)));
}

/** acc + the min terms of four cells: the rows' m (r0, r1, r0, r1) times the tokens' s. */
@inline export function min_cells(acc: v128, mw: v128, sx: v128, hi: bool): v128 {
  return f32x4.add(acc, f32x4.mul(mw, hi ? i32x4.shuffle(sx, sx, 2, 2, 3, 3) : i32x4.shuffle(sx, sx, 0, 0, 1, 1)));
}

/** Stores cells (see pair_cells) of tokens at out and out + os (bytes); row 1's only when `two`. */
@inline export function store_cells(out: usize, os: usize, cells: v128, two: bool): void {
  if (two) {
    v128.store64_lane(out, cells, 0);
    v128.store64_lane(out + os, cells, 1);
  } else {
    v128.store32_lane(out, cells, 0);
    v128.store32_lane(out + os, cells, 2);
  }
}

/** Rows w and w + rowBytes (rowBytes 0: one row, `two` false) by eight tokens at x + t*xStride:
 *  cell (r, t) lands at out + 4*(t*outStride + r). */
@inline function tile_b32_2x8<C, O>(w: usize, rowBytes: usize, two: bool, x: usize, xStride: usize, nb: i32,
  out: usize, outStride: usize, offsets: usize): void {
  const c = changetype<C>(0);
  const wb = c.bytes();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  const x2 = xStride << 1, x4 = xStride << 2;
  let acc01 = f32x4.splat(0), acc23 = f32x4.splat(0), acc45 = f32x4.splat(0), acc67 = f32x4.splat(0);
  let px = x;
  let po = offsets;
  const pend = w + <usize>nb * wb;
  for (let pw = w; pw < pend; pw += wb, px += xb, po += MATMUL_SCRATCH_PER_BLOCK) {
    const p1 = pw + rowBytes;
    const a0 = tile_weights<C, O>(pw, 0), b0 = tile_weights<C, O>(pw, 1), c0 = tile_weights<C, O>(pw, 2), d0 = tile_weights<C, O>(pw, 3);
    const a1 = tile_weights<C, O>(p1, 0), b1 = tile_weights<C, O>(p1, 1), c1 = tile_weights<C, O>(p1, 2), d1 = tile_weights<C, O>(p1, 3);
    const q = px + xq;
    const v01 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q, xStride, out, po);
    const v23 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q + x2, xStride, out, po + 16);
    const v45 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q + x4, xStride, out, po + 32);
    const v67 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q + x4 + x2, xStride, out, po + 48);
    const dw = f16x2_rows_finite(pw, rowBytes);
    const dx = f16x4_gather_finite(px, xStride), dy = f16x4_gather_finite(px + x4, xStride);
    acc01 = scale_cells(acc01, v01, dw, dx, false);
    acc23 = scale_cells(acc23, v23, dw, dx, true);
    acc45 = scale_cells(acc45, v45, dw, dy, false);
    acc67 = scale_cells(acc67, v67, dw, dy, true);
    if (c.hasMin()) {
      const mw = f16x2_rows_finite(pw + 2, rowBytes);
      const sx = f16x4_gather_finite(px + 2, xStride), sy = f16x4_gather_finite(px + x4 + 2, xStride);
      acc01 = min_cells(acc01, mw, sx, false);
      acc23 = min_cells(acc23, mw, sx, true);
      acc45 = min_cells(acc45, mw, sy, false);
      acc67 = min_cells(acc67, mw, sy, true);
    }
  }
  const os = outStride << 2;
  store_cells(out, os, acc01, two);
  store_cells(out + 2 * os, os, acc23, two);
  store_cells(out + 4 * os, os, acc45, two);
  store_cells(out + 6 * os, os, acc67, two);
}

/** tile_b32_2x8 for four tokens at x, x + x1, x + x2, x + x3 (offsets may repeat: a token computed
 *  twice is stored twice, the same value), stored at out, out + o1, out + o2, out + o3 (bytes). */
@inline function tile_b32_2x4<C>(w: usize, rowBytes: usize, two: bool, x: usize, x1: usize, x2: usize, x3: usize,
  nb: i32, out: usize, o1: usize, o2: usize, o3: usize): void {
  const c = changetype<C>(0);
  const wb = c.bytes();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  let acc01 = f32x4.splat(0), acc23 = f32x4.splat(0);
  let px = x;
  const pend = w + <usize>nb * wb;
  for (let pw = w; pw < pend; pw += wb, px += xb) {
    const p1 = pw + rowBytes;
    const a0 = tile_weights<C, InTile>(pw, 0), b0 = tile_weights<C, InTile>(pw, 1), c0 = tile_weights<C, InTile>(pw, 2), d0 = tile_weights<C, InTile>(pw, 3);
    const a1 = tile_weights<C, InTile>(p1, 0), b1 = tile_weights<C, InTile>(p1, 1), c1 = tile_weights<C, InTile>(p1, 2), d1 = tile_weights<C, InTile>(p1, 3);
    const q = px + xq;
    const v01 = cells_2x2<C, InTile>(a0, b0, c0, d0, a1, b1, c1, d1, q, x1, out, 0);
    const v23 = cells_2x2<C, InTile>(a0, b0, c0, d0, a1, b1, c1, d1, q + x2, x3 - x2, out, 0);
    const dw = f16x2_rows_finite(pw, rowBytes), dx = f16x4_tokens_finite(px, x1, x2, x3);
    acc01 = scale_cells(acc01, v01, dw, dx, false);
    acc23 = scale_cells(acc23, v23, dw, dx, true);
    if (c.hasMin()) {
      const mw = f16x2_rows_finite(pw + 2, rowBytes), sx = f16x4_tokens_finite(px + 2, x1, x2, x3);
      acc01 = min_cells(acc01, mw, sx, false);
      acc23 = min_cells(acc23, mw, sx, true);
    }
  }
  store_tile2x4(out, o1, o2, o3, acc01, acc23, two);
}

/** matmul (see DEVELOPERS.md, Kernel ABI) for a block-32 weight type, SIMD. */
@inline export function matmul_b32<C>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  const c = changetype<C>(0);
  const nb = k / QK;
  const rowBytes = <usize>nb * c.bytes();
  const xs = <usize>xStride;
  const os = <usize>outStride;
  // Tiles of eight tokens, then of four, then three as a tile of four with the last token repeated;
  // one or two tokens left over take the one-token path (cheaper there than a tile of four). In the
  // relaxed build, the tiles of eight of a codec with an offset read every block's roffset * sum(x)
  // from `scratch` (MATMUL_SCRATCH_PER_BLOCK bytes per block, the calling thread's own; 0: none),
  // computed once per pass of rows instead of for every row pair: q4_0 +22%, 64 tokens.
  const offsets = ((relaxed<C>() && c.roffset() != 0) || dotAdd<C>()) && scratch != 0;
  const tiled8 = nTok & ~7;
  const tiled = (nTok & ~3) + ((nTok & 3) == 3 ? 3 : 0);
  for (let r0 = rowStart; r0 < rowEnd; r0 += ROWS_PER_PASS) {
    const r1 = min(r0 + ROWS_PER_PASS, rowEnd);
    for (let t = 0; t < tiled8; t += 8) {
      const xt = x + <usize>t * xs;
      const ot = out + (<usize>t * os << 2);
      if (offsets) {
        token_offsets<C>(xt, xs, nb, scratch);
        for (let r = r0; r < r1; r += 2) {
          const two = r + 1 < r1;
          tile_b32_2x8<C, Precomputed>(w + <usize>r * rowBytes, two ? rowBytes : 0, two, xt, xs, nb, ot + (<usize>r << 2), os, scratch);
        }
      } else {
        for (let r = r0; r < r1; r += 2) {
          const two = r + 1 < r1;
          tile_b32_2x8<C, InTile>(w + <usize>r * rowBytes, two ? rowBytes : 0, two, xt, xs, nb, ot + (<usize>r << 2), os, 0);
        }
      }
    }
    for (let t = tiled8; t < tiled; t += 4) {
      const last = <usize>min(3, tiled - t - 1); // 2 or 3
      const xt = x + <usize>t * xs;
      const ot = out + (<usize>t * os << 2);
      const x2 = min<usize>(2, last) * xs, o2 = (min<usize>(2, last) * os) << 2;
      for (let r = r0; r < r1; r += 2) {
        const two = r + 1 < r1;
        tile_b32_2x4<C>(w + <usize>r * rowBytes, two ? rowBytes : 0, two, xt, xs, x2, last * xs, nb,
          ot + (<usize>r << 2), os << 2, o2, (last * os) << 2);
      }
    }
  }
  // The tokens left (all of them when decoding), four rows at a time. The four rows of a pass come
  // from the four quarters of the row range, so the weights are read as four long sequential
  // streams: four adjacent rows (four short interleaved runs) defeat the hardware prefetcher and
  // streamed weights from DRAM at 4-5 GB/s instead of 12-13 (measured, Q8_0 4864x896 x 64 copies).
  const quarter = (rowEnd - rowStart) >> 2;
  const gap = <usize>quarter * rowBytes;
  const vnni = relaxed<C>() && tiled < nTok && dot_add_exact(k);
  for (let t = tiled; t < nTok; t++) {
    const xt = x + <usize>t * xs;
    const ot = out + (<usize>t * os << 2);
    if (vnni) {
      for (let r = rowStart; r < rowStart + quarter; r++) {
        dot_b32_rows4<C, DotAdd>(w + <usize>r * rowBytes, gap, xt, nb, ot + (<usize>r << 2), <usize>quarter);
      }
    } else {
      for (let r = rowStart; r < rowStart + quarter; r++) {
        dot_b32_rows4<C, NoDotAdd>(w + <usize>r * rowBytes, gap, xt, nb, ot + (<usize>r << 2), <usize>quarter);
      }
    }
    for (let r = rowStart + 4 * quarter; r < rowEnd; r++) store<f32>(ot + (<usize>r << 2), dot_b32_row<C>(w + <usize>r * rowBytes, xt, nb));
  }
}

/** matmul for a block-32 weight type, scalar: ggml's generic vec_dot, one block at a time. */
@inline export function matmul_b32_ref<C>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const c = changetype<C>(0);
  const nb = k / QK;
  const wb = c.bytes();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  for (let r = rowStart; r < rowEnd; r++) {
    for (let t = 0; t < nTok; t++) {
      let sum: f32 = 0;
      for (let b = 0; b < nb; b++) {
        const pw = w + (<usize>r * <usize>nb + <usize>b) * wb;
        const px = x + <usize>t * <usize>xStride + <usize>b * xb;
        let isum = 0;
        for (let j = 0; j < QK; j++) isum += c.q(pw, j) * <i32>load<i8>(px + xq + <usize>j);
        sum += <f32>isum * (f16_to_f32(load<u16>(pw)) * f16_to_f32(load<u16>(px)));
        if (c.hasMin()) sum += f16_to_f32(load<u16>(pw, 2)) * f16_to_f32(load<u16>(px, 2));
      }
      store<f32>(out + ((<usize>t * <usize>outStride + <usize>r) << 2), sum);
    }
  }
}

/** Dequantizes n weights (a multiple of 32) of a block-32 type to f32. */
@inline export function dequantize_b32<C>(src: usize, dst: usize, n: i32): void {
  const c = changetype<C>(0);
  const wb = c.bytes();
  const nb = n / QK;
  for (let b = 0; b < nb; b++) {
    const p = src + <usize>b * wb;
    const o = dst + (<usize>b << 7);
    const d = f32x4.splat(f16_to_f32(load<u16>(p)));
    const m = f32x4.splat(c.hasMin() ? f16_to_f32(load<u16>(p, 2)) : 0);
    store_i8x16_scaled(o, c.lo(p), d, m, c.hasMin());
    store_i8x16_scaled(o + 64, c.hi(p), d, m, c.hasMin());
  }
}

/** 16 i8 quants to f32 as q*d (+ m), stored at o. */
@inline function store_i8x16_scaled(o: usize, q: v128, d: v128, m: v128, hasMin: bool): void {
  const a = i16x8.extend_low_i8x16_s(q), b = i16x8.extend_high_i8x16_s(q);
  let v0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(a)), d);
  let v1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(a)), d);
  let v2 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(b)), d);
  let v3 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(b)), d);
  if (hasMin) {
    v0 = f32x4.add(v0, m); v1 = f32x4.add(v1, m); v2 = f32x4.add(v2, m); v3 = f32x4.add(v3, m);
  }
  v128.store(o, v0); v128.store(o, v1, 16); v128.store(o, v2, 32); v128.store(o, v3, 48);
}

/** i8x16.swizzle by indices that are all in [0, 16) (constant or not): the relaxed build takes
 *  relaxed_swizzle (one pshufb), which for such indices is the same. */
@inline export function swizzle_const(v: v128, indices: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i8x16.relaxed_swizzle(v, indices);
  return i8x16.swizzle(v, indices);
}

/** The 5th bits of a q5 block (u32 qh at p, bit j for weight j) as bytes: 0xff in lane j where the
 *  bit of weight j (hi = false) or of weight 16 + j (hi = true) is set, else 0. */
@inline export function high_bits_set(p: usize, hi: bool): v128 {
  const qh = v128.load32_splat(p);
  // a swizzle by a constant, not a shuffle: V8 rebuilds a shuffle's mask at every use in a loop
  // (mov, movq, pinsrq), while the constant operand of a swizzle is hoisted like any other.
  const bytes = swizzle_const(qh, hi
    ? i8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
    : i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
  const bit = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  return i8x16.eq(v128.and(bytes, bit), bit);
}

/** Nibbles of the 16 bytes at p widened to i16x8: i = 0, 1: low nibbles of bytes 0-7, 8-15
 *  (weights 0-15); i = 2, 3: high nibbles (weights 16-31). */
@inline export function nibbles16(p: usize, i: i32): v128 {
  const bytes = v128.load8x8_u(p + (<usize>(i & 1) << 3));
  return i < 2 ? v128.and(bytes, i16x8.splat(15)) : i16x8.shr_u(bytes, 4);
}

// ---- Dense weights (f32, f16, bf16): activations in the same format, products summed in f32 ----
//
// A dense codec is a @final class with no fields and these @inline methods:
//   size(): usize          bytes per element
//   lo8(p), hi8(p): v128   elements 0-3 and 4-7 of the eight at p, as f32x4, exact
//   elem(p): f32           the element at p (scalar reference and tails)
//   special(): bool        whether elements can be inf or NaN that the fast conversion gets wrong
//                          (f16); then also:
//   lo8f(p), hi8f(p): v128 lo8, hi8 for finite elements only: half the work for f16
//   exp8(p): v128          the eight elements' exponent fields (i16x8): 0x7c00 marks inf or NaN
// f16 runs the fast conversion and keeps the largest exponent field seen; a row or an activation
// that holds an inf or a NaN is redone with the exact one.

/** Which conversion a loop uses, as a type argument so that the choice is made at compile time. */
@final class Exact { @inline exact(): bool { return true; } }
@final class Fast { @inline exact(): bool { return false; } }

@inline function dense_lo<C, E>(p: usize): v128 {
  const c = changetype<C>(0);
  return changetype<E>(0).exact() || !c.special() ? c.lo8(p) : c.lo8f(p);
}

@inline function dense_hi<C, E>(p: usize): v128 {
  const c = changetype<C>(0);
  return changetype<E>(0).exact() || !c.special() ? c.hi8(p) : c.hi8f(p);
}

/** dot(row w, one token at x) stored at out: one accumulator, summed as dot_dense_tile sums a
 *  token (so a token's result does not depend on the tokens beside it). Returns true when the fast
 *  conversion met an inf or NaN weight (the output is then wrong). */
@inline function dot_dense_row<C, E>(w: usize, x: usize, k: i32, out: usize): bool {
  const c = changetype<C>(0);
  const exact = changetype<E>(0).exact();
  const es = c.size();
  let a = f32x4.splat(0);
  let exps = i16x8.splat(0);
  const k8 = k & ~7;
  let px = x;
  const pend = w + <usize>k8 * es;
  for (let pw = w; pw < pend; pw += 8 * es, px += 8 * es) {
    a = f32x4.add(f32x4.add(a, f32x4.mul(dense_lo<C, E>(pw), dense_lo<C, E>(px))), f32x4.mul(dense_hi<C, E>(pw), dense_hi<C, E>(px)));
    if (!exact && c.special()) exps = i16x8.max_u(exps, c.exp8(pw));
  }
  let sum = f32x4_hsum(a);
  for (let i = k8; i < k; i++) sum += c.elem(w + <usize>i * es) * c.elem(x + <usize>i * es);
  store<f32>(out, sum);
  return !exact && c.special() && !i16x8.all_true(i16x8.ne(exps, i16x8.splat(0x7c00)));
}

/** dot(rows w, w + gap, w + 2*gap, w + 3*gap, one token at x) stored at out, out + 4*outGap, ...:
 *  x converted once for the four rows, each row summed as dot_dense_row (four chains of adds in
 *  flight; two per row were 17% faster in cache for bf16, the same from memory). Returns true as
 *  dot_dense_row does. */
@inline function dot_dense_rows4<C, E>(w: usize, gap: usize, x: usize, k: i32, out: usize, outGap: usize): bool {
  const c = changetype<C>(0);
  const exact = changetype<E>(0).exact();
  const es = c.size();
  const g2 = gap << 1, g3 = gap * 3;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let exps = i16x8.splat(0);
  const k8 = k & ~7;
  let px = x;
  const pend = w + <usize>k8 * es;
  for (let pw = w; pw < pend; pw += 8 * es, px += 8 * es) {
    const xl = dense_lo<C, E>(px), xh = dense_hi<C, E>(px);
    a0 = f32x4.add(f32x4.add(a0, f32x4.mul(dense_lo<C, E>(pw), xl)), f32x4.mul(dense_hi<C, E>(pw), xh));
    a1 = f32x4.add(f32x4.add(a1, f32x4.mul(dense_lo<C, E>(pw + gap), xl)), f32x4.mul(dense_hi<C, E>(pw + gap), xh));
    a2 = f32x4.add(f32x4.add(a2, f32x4.mul(dense_lo<C, E>(pw + g2), xl)), f32x4.mul(dense_hi<C, E>(pw + g2), xh));
    a3 = f32x4.add(f32x4.add(a3, f32x4.mul(dense_lo<C, E>(pw + g3), xl)), f32x4.mul(dense_hi<C, E>(pw + g3), xh));
    if (!exact && c.special()) {
      exps = i16x8.max_u(exps, i16x8.max_u(i16x8.max_u(c.exp8(pw), c.exp8(pw + gap)), i16x8.max_u(c.exp8(pw + g2), c.exp8(pw + g3))));
    }
  }
  const sums = f32x4_hsum4(a0, a1, a2, a3);
  let s0 = f32x4.extract_lane(sums, 0), s1 = f32x4.extract_lane(sums, 1);
  let s2 = f32x4.extract_lane(sums, 2), s3 = f32x4.extract_lane(sums, 3);
  for (let i = k8; i < k; i++) {
    const xv = c.elem(x + <usize>i * es), pi = w + <usize>i * es;
    s0 += c.elem(pi) * xv;
    s1 += c.elem(pi + gap) * xv;
    s2 += c.elem(pi + g2) * xv;
    s3 += c.elem(pi + g3) * xv;
  }
  store<f32>(out, s0);
  store<f32>(out + (outGap << 2), s1);
  store<f32>(out + (outGap << 3), s2);
  store<f32>(out + 3 * (outGap << 2), s3);
  return !exact && c.special() && !i16x8.all_true(i16x8.ne(exps, i16x8.splat(0x7c00)));
}

/** dot(row at w, tokens 0..3 at x, x + xStride, ...) stored at out, out + 4*outStride, ...: the
 *  row is converted once for the four tokens. Returns true as dot_dense_row does. */
@inline function dot_dense_tile<C, E>(w: usize, x: usize, xStride: usize, k: i32, out: usize, outStride: usize): bool {
  const c = changetype<C>(0);
  const exact = changetype<E>(0).exact();
  const es = c.size();
  const x1 = xStride, x2 = xStride << 1, x3 = xStride * 3;
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0), acc2 = f32x4.splat(0), acc3 = f32x4.splat(0);
  let exps = i16x8.splat(0);
  const k8 = k & ~7;
  let px = x;
  const pend = w + <usize>k8 * es;
  for (let pw = w; pw < pend; pw += 8 * es, px += 8 * es) {
    const wl = dense_lo<C, E>(pw), wh = dense_hi<C, E>(pw);
    if (!exact && c.special()) exps = i16x8.max_u(exps, c.exp8(pw));
    acc0 = f32x4.add(f32x4.add(acc0, f32x4.mul(wl, dense_lo<C, E>(px))), f32x4.mul(wh, dense_hi<C, E>(px)));
    acc1 = f32x4.add(f32x4.add(acc1, f32x4.mul(wl, dense_lo<C, E>(px + x1))), f32x4.mul(wh, dense_hi<C, E>(px + x1)));
    acc2 = f32x4.add(f32x4.add(acc2, f32x4.mul(wl, dense_lo<C, E>(px + x2))), f32x4.mul(wh, dense_hi<C, E>(px + x2)));
    acc3 = f32x4.add(f32x4.add(acc3, f32x4.mul(wl, dense_lo<C, E>(px + x3))), f32x4.mul(wh, dense_hi<C, E>(px + x3)));
  }
  const sums = f32x4_hsum4(acc0, acc1, acc2, acc3);
  let s0 = f32x4.extract_lane(sums, 0), s1 = f32x4.extract_lane(sums, 1);
  let s2 = f32x4.extract_lane(sums, 2), s3 = f32x4.extract_lane(sums, 3);
  for (let i = k8; i < k; i++) {
    const wv = c.elem(w + <usize>i * es);
    const pi = x + <usize>i * es;
    s0 += wv * c.elem(pi);
    s1 += wv * c.elem(pi + x1);
    s2 += wv * c.elem(pi + x2);
    s3 += wv * c.elem(pi + x3);
  }
  store<f32>(out, s0);
  store<f32>(out + (outStride << 2), s1);
  store<f32>(out + (outStride << 3), s2);
  store<f32>(out + 3 * (outStride << 2), s3);
  return !exact && c.special() && !i16x8.all_true(i16x8.ne(exps, i16x8.splat(0x7c00)));
}

/** Rows [r0, r1) times tokens [t0, t1), the conversions exact or fast (see the codec notes). */
@inline function matmul_dense_block<C, E>(w: usize, x: usize, out: usize, k: i32, r0: i32, r1: i32, t0: i32, t1: i32,
  xs: usize, os: usize): void {
  const c = changetype<C>(0);
  const rowBytes = <usize>k * c.size();
  let t = t0;
  for (; t + 3 < t1; t += 4) { // tiles of four tokens
    const xt = x + <usize>t * xs;
    for (let r = r0; r < r1; r++) {
      const o = out + ((<usize>t * os + <usize>r) << 2);
      if (dot_dense_tile<C, E>(w + <usize>r * rowBytes, xt, xs, k, o, os)) {
        dot_dense_tile<C, Exact>(w + <usize>r * rowBytes, xt, xs, k, o, os);
      }
    }
  }
  // The tokens left, four rows at a time: rows r, r + quarter, ..., so that the weights stream as
  // four long sequential runs (adjacent rows interleave short runs that the prefetcher does not
  // follow); the rows left one at a time.
  const quarter = (r1 - r0) >> 2;
  const gap = <usize>quarter * rowBytes;
  for (; t < t1; t++) {
    const xt = x + <usize>t * xs;
    const ot = out + (<usize>t * os << 2);
    for (let r = r0; r < r0 + quarter; r++) {
      const wr = w + <usize>r * rowBytes, o = ot + (<usize>r << 2);
      if (dot_dense_rows4<C, E>(wr, gap, xt, k, o, <usize>quarter)) dot_dense_rows4<C, Exact>(wr, gap, xt, k, o, <usize>quarter);
    }
    for (let r = r0 + 4 * quarter; r < r1; r++) {
      const o = ot + (<usize>r << 2);
      const wr = w + <usize>r * rowBytes;
      if (dot_dense_row<C, E>(wr, xt, k, o)) dot_dense_row<C, Exact>(wr, xt, k, o);
    }
  }
}

/** matmul (see DEVELOPERS.md, Kernel ABI) for a dense weight type, SIMD; any k. */
@inline export function matmul_dense<C>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const c = changetype<C>(0);
  const xs = <usize>xStride;
  const os = <usize>outStride;
  // activations with an inf or NaN take the exact conversion throughout
  let exact = false;
  if (c.special()) {
    let exps = i16x8.splat(0);
    for (let t = 0; t < nTok; t++) {
      const xt = x + <usize>t * xs;
      for (let i = 0; i + 8 <= k; i += 8) exps = i16x8.max_u(exps, c.exp8(xt + <usize>i * c.size()));
    }
    exact = !i16x8.all_true(i16x8.ne(exps, i16x8.splat(0x7c00)));
  }
  // Tiles of four tokens over chunks of rows that stay in L2; then the tokens left over all rows.
  const tiled = nTok & ~3;
  for (let r0 = rowStart; r0 < rowEnd && tiled > 0; r0 += ROWS_PER_PASS) {
    const r1 = min(r0 + ROWS_PER_PASS, rowEnd);
    if (exact) matmul_dense_block<C, Exact>(w, x, out, k, r0, r1, 0, tiled, xs, os);
    else matmul_dense_block<C, Fast>(w, x, out, k, r0, r1, 0, tiled, xs, os);
  }
  if (tiled < nTok) {
    if (exact) matmul_dense_block<C, Exact>(w, x, out, k, rowStart, rowEnd, tiled, nTok, xs, os);
    else matmul_dense_block<C, Fast>(w, x, out, k, rowStart, rowEnd, tiled, nTok, xs, os);
  }
}

/** matmul for a dense weight type, scalar: products summed in f32, in order. */
@inline export function matmul_dense_ref<C>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const c = changetype<C>(0);
  const es = c.size();
  for (let r = rowStart; r < rowEnd; r++) {
    const wr = w + <usize>r * <usize>k * es;
    for (let t = 0; t < nTok; t++) {
      const xt = x + <usize>t * <usize>xStride;
      let sum: f32 = 0;
      for (let i = 0; i < k; i++) sum += c.elem(wr + <usize>i * es) * c.elem(xt + <usize>i * es);
      store<f32>(out + ((<usize>t * <usize>outStride + <usize>r) << 2), sum);
    }
  }
}

/** Converts n elements of a dense type to f32. */
@inline export function dequantize_dense<C>(src: usize, dst: usize, n: i32): void {
  const c = changetype<C>(0);
  const es = c.size();
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const p = src + <usize>i * es;
    v128.store(dst + (<usize>i << 2), c.lo8(p));
    v128.store(dst + (<usize>i << 2), c.hi8(p), 16);
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), c.elem(src + <usize>i * es));
}
