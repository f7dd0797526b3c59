// exp for the ops (softmax, SiLU), without the std library's table-driven Math.exp (no static data
// may exist in the module; see DEVELOPERS.md).
//
// The algorithm is ggml's ggml_v_expf (ggml-cpu/vec.h, "adapted from arm limited optimized
// routine"): n = round(x / ln2) by the 1.5·2^23 shifter, b = x - n·ln2 in two parts (Cody-Waite),
// exp(b) - 1 by a degree-5 polynomial, then the scale 2^n is built in the exponent bits. Inputs whose
// n falls outside [-126, 126] take a slower path that splits 2^n into two factors, so that the
// result flushes to 0 below about -103.97 (and -inf gives 0) and to +inf above about 88.38.
// WebAssembly has no fused multiply-add in its base SIMD set, so every multiply-add here rounds
// twice, like ggml's SSE2 path without FMA. Measured error (test/kernels/ops.test.ts): at most 2 ulp
// against the correctly rounded exp.
//
// expf (scalar) performs the same operations in the same order as one lane of expf4, so a scalar
// tail gives bit-identical results to the SIMD body: a row's results never depend on how it was
// split into SIMD lanes and tails.

const SHIFTER: f32 = 12582912.0; // 0x1.8p23: adding it rounds to an integer in the low mantissa bits
const LOG2E: f32 = 1.4426950216293335; // 0x1.715476p+0
const LN2_HI: f32 = 0.693145751953125; // 0x1.62e4p-1, few bits: n·LN2_HI is exact
const LN2_LO: f32 = 0.0000014286067653301870; // 0x1.7f7d1cp-20
const P4: f32 = 0.0082473903894424438; // 0x1.0e4020p-7
const P3: f32 = 0.041899766772985458; // 0x1.573e2ep-5
const P2: f32 = 0.16668395698070526; // 0x1.555e66p-3
const P1: f32 = 0.49999126791954041; // 0x1.fffdb6p-2
const P0: f32 = 0.99999940395355225; // 0x1.ffffecp-1
const ONE_BITS: i32 = 0x3f800000;

/** exp(x) in f32, about 2 ulp; identical to one lane of expf4. */
@inline export function expf(x: f32): f32 {
  const z = x * LOG2E + SHIFTER;
  const n = z - SHIFTER;
  const b = (x - n * LN2_HI) - n * LN2_LO;
  const e = reinterpret<u32>(z) << 23; // n << 23: the integer sits in z's low mantissa bits
  const k = reinterpret<f32>(e + <u32>ONE_BITS); // 2^n while -126 <= n <= 127
  const u = b * b;
  const j = ((P4 * b + P3) * u + (P2 * b + P1)) * u + P0 * b; // exp(b) - 1
  const an = abs<f32>(n);
  if (!(an > 126)) return j * k + k; // written so that NaN takes this path, as in expf4
  // 2^n as s1·s2 so that neither factor overflows or underflows on its own
  const g: u32 = n <= 0 ? 0x82000000 : 0;
  const s1 = reinterpret<f32>(g + 0x7f000000);
  const s2 = reinterpret<f32>(e - g);
  if (an > 192) return s1 * s1; // far out of range: 0 or +inf
  return (s2 * j + s2) * s1;
}

/** exp of four f32 lanes; see expf. */
@inline export function expf4(x: v128): v128 {
  const shifter = f32x4.splat(SHIFTER);
  const z = f32x4.add(f32x4.mul(x, f32x4.splat(LOG2E)), shifter);
  const n = f32x4.sub(z, shifter);
  const b = f32x4.sub(
    f32x4.sub(x, f32x4.mul(n, f32x4.splat(LN2_HI))),
    f32x4.mul(n, f32x4.splat(LN2_LO)),
  );
  const e = i32x4.shl(z, 23);
  const k = i32x4.add(e, i32x4.splat(ONE_BITS));
  const u = f32x4.mul(b, b);
  const j = f32x4.add(
    f32x4.mul(
      f32x4.add(
        f32x4.mul(f32x4.add(f32x4.mul(f32x4.splat(P4), b), f32x4.splat(P3)), u),
        f32x4.add(f32x4.mul(f32x4.splat(P2), b), f32x4.splat(P1)),
      ),
      u,
    ),
    f32x4.mul(f32x4.splat(P0), b),
  );
  const inRange = f32x4.add(f32x4.mul(j, k), k);
  const an = f32x4.abs(n);
  const c = f32x4.gt(an, f32x4.splat(126));
  if (!v128.any_true(c)) return inRange;
  const g = v128.and(f32x4.le(n, f32x4.splat(0)), i32x4.splat(<i32>0x82000000));
  const s1 = i32x4.add(g, i32x4.splat(0x7f000000));
  const s2 = i32x4.sub(e, g);
  const d = f32x4.gt(an, f32x4.splat(192));
  const scaled = f32x4.mul(f32x4.add(f32x4.mul(s2, j), s2), s1);
  return v128.bitselect(f32x4.mul(s1, s1), v128.bitselect(scaled, inRange, c), d);
}

/**
 * Attention's exp: exp(x) for x <= 0 (a score minus its row's running maximum), flushed to 0 where x
 * < ATTN_EXP_FLUSH (exp(-69) = 9.8e-31, about 2^-99.7). The probabilities that small, which expf4
 * returns as tiny normals or subnormals (below -87.3), add nothing an f32 can hold to a sum of at
 * least 1 or to an output row (the row's largest key weighs 1), but as operands they cost x86 a
 * microcode assist per multiply with a subnormal operand or result (p, p · v, acc · exp(m - m'), the
 * f64 promotion), and WebAssembly cannot set flush-to-zero: with sharp attention (scores spread over
 * more than ~90, as trained models have in some heads; not the synthetic model) that made
 * attention up to twice as slow (bench-attention --q-sigma). In range, the same operations as expf4
 * (so the same bits where neither flushes); the input is clamped first so that no lane computes a
 * subnormal scale. NaN stays NaN. Scalar and SIMD forms agree bit for bit. Written out rather than
 * as expf4 of the clamped input: expf4's out-of-range test cost flash attention 2-3% (bench-attention
 * --against, bit-identical).
 */
const ATTN_EXP_FLUSH: f32 = -69.0;

@inline export function expNeg(x: f32): f32 {
  const xc = x < ATTN_EXP_FLUSH ? ATTN_EXP_FLUSH : x;
  const z = xc * LOG2E + SHIFTER;
  const n = z - SHIFTER;
  const b = (xc - n * LN2_HI) - n * LN2_LO;
  const k = reinterpret<f32>((reinterpret<u32>(z) << 23) + <u32>ONE_BITS);
  const u = b * b;
  const j = ((P4 * b + P3) * u + (P2 * b + P1)) * u + P0 * b;
  return x < ATTN_EXP_FLUSH ? 0 : j * k + k;
}

/** expNeg on four lanes. */
@inline export function expNeg4(x: v128): v128 {
  const vt = f32x4.splat(ATTN_EXP_FLUSH);
  const xc = f32x4.pmax(x, vt); // x < T ? T : x (NaN stays)
  const shifter = f32x4.splat(SHIFTER);
  const z = f32x4.add(f32x4.mul(xc, f32x4.splat(LOG2E)), shifter);
  const n = f32x4.sub(z, shifter);
  const b = f32x4.sub(
    f32x4.sub(xc, f32x4.mul(n, f32x4.splat(LN2_HI))),
    f32x4.mul(n, f32x4.splat(LN2_LO)),
  );
  const k = i32x4.add(i32x4.shl(z, 23), i32x4.splat(ONE_BITS));
  const u = f32x4.mul(b, b);
  const j = f32x4.add(
    f32x4.mul(
      f32x4.add(
        f32x4.mul(f32x4.add(f32x4.mul(f32x4.splat(P4), b), f32x4.splat(P3)), u),
        f32x4.add(f32x4.mul(f32x4.splat(P2), b), f32x4.splat(P1)),
      ),
      u,
    ),
    f32x4.mul(f32x4.splat(P0), b),
  );
  return v128.andnot(f32x4.add(f32x4.mul(j, k), k), f32x4.lt(x, vt));
}

/** x / (1 + exp(-x)), as ggml_v_silu (0 - x, not a sign flip, to match its NaN and -0 handling). */
@inline export function siluf(x: f32): f32 {
  return x / (<f32>1 + expf(<f32>0 - x));
}

/** siluf on four lanes. */
@inline export function siluf4(x: v128): v128 {
  const e = expf4(f32x4.sub(f32x4.splat(0), x));
  return f32x4.div(x, f32x4.add(f32x4.splat(1), e));
}

/** Horizontal sum of four f32 lanes as (l0 + l2) + (l1 + l3); every dot product reduces this way. */
@inline export function hsum4(v: v128): f32 {
  const h = f32x4.add(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(h, 0) + f32x4.extract_lane(h, 1);
}

/** [hsum4(a), hsum4(b), hsum4(c), hsum4(d)] with the same additions in the same order. */
@inline export function hsum4x4(a: v128, b: v128, c: v128, d: v128): v128 {
  // lanes: ab = [a0+a2, b0+b2, a1+a3, b1+b3], cd likewise
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 4, 1, 5), v128.shuffle<f32>(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 4, 1, 5), v128.shuffle<f32>(c, d, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 1, 4, 5), v128.shuffle<f32>(ab, cd, 2, 3, 6, 7));
}

/**
 * The maximum of the n f32 at x (-inf for n = 0), for scores that hold no NaN (the attention scores:
 * finite products of finite values). f32x4.pmax, where V8 emits one maxps, in place of f32x4.max, whose
 * NaN and signed-zero rules cost V8 eight instructions on x86 (in a chain: 16% of flash attention's
 * time at 4096 positions, perf). Without NaN the two give the same maximum, up to the sign of a zero
 * maximum, which no use of it can see (s - m and exp(m - m') are the same for either sign).
 */
@inline export function maxOf(x: usize, n: i32): f32 {
  let i = 0;
  let v = f32x4.splat(-Infinity);
  for (; i + 4 <= n; i += 4) v = f32x4.pmax(v, v128.load(x + (<usize>i << 2)));
  v = f32x4.pmax(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  v = f32x4.pmax(v, v128.shuffle<f32>(v, v, 1, 0, 3, 2));
  let m = f32x4.extract_lane(v, 0);
  for (; i < n; i++) {
    const y = load<f32>(x + (<usize>i << 2));
    m = y > m ? y : m;
  }
  return m;
}

/**
 * Softmax of n f32 at x into y (y may be x), as ggml_compute_forward_soft_max_f32: subtract the
 * maximum, exp, sum in f64 (ggml_vec_soft_max_f32 returns a ggml_float), then scale by the f32 of
 * 1/sum. -inf entries become 0, and so do those below the maximum by more than 69 (expNeg). Returns
 * the maximum.
 */
@inline export function softmaxRow(x: usize, y: usize, n: i32): f32 {
  const m = maxOf(x, n);
  const vm = f32x4.splat(m);
  let sum2 = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = expNeg4(f32x4.sub(v128.load(x + (<usize>i << 2)), vm));
    v128.store(y + (<usize>i << 2), p);
    sum2 = f64x2.add(sum2, f64x2.promote_low_f32x4(p));
    sum2 = f64x2.add(sum2, f64x2.promote_low_f32x4(v128.shuffle<f32>(p, p, 2, 3, 0, 1)));
  }
  let sum: f64 = f64x2.extract_lane(sum2, 0) + f64x2.extract_lane(sum2, 1);
  for (; i < n; i++) {
    const p = expNeg(load<f32>(x + (<usize>i << 2)) - m);
    store<f32>(y + (<usize>i << 2), p);
    sum += <f64>p;
  }

  const inv = <f32>(1.0 / sum);
  const vinv = f32x4.splat(inv);
  i = 0;
  for (; i + 4 <= n; i += 4) v128.store(y + (<usize>i << 2), f32x4.mul(v128.load(y + (<usize>i << 2)), vinv));
  for (; i < n; i++) store<f32>(y + (<usize>i << 2), load<f32>(y + (<usize>i << 2)) * inv);
  return m;
}
