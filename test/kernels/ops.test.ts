// The op kernels (assembly/ops) against independent scalar TypeScript references in f64, on seeded
// random data. Each test prints its largest difference.
import { beforeAll, describe, expect, it } from "vitest";
import { ropeCosSin, ropeYarnCorrDims } from "../../compute/model/rope";
import { gaussian, KernelHarness, rng, type TestKernels } from "./harness";

// ------------------------------------------------------------------------------------------ helpers

let H: KernelHarness;
let K: TestKernels;

/** Fresh memory, 16-byte aligned plus `misalign` bytes (the kernels take any alignment). */
function alloc(bytes: number, misalign = 0): number {
  return H.alloc(bytes + misalign + 16, 16) + misalign;
}
const resetAlloc = () => H.reset();
const f32At = (offset: number, n: number) => H.f32(offset, n);
function putF32(values: ArrayLike<number>, misalign = 0): number {
  const p = alloc(values.length * 4, misalign);
  f32At(p, values.length).set(values);
  return p;
}

function normals(n: number, seed: number, sigma = 1): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => sigma * g());
}

const fr = Math.fround;

function roundEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** IEEE half bits of an f32 value, round to nearest even (independent of the kernels' version). */
function toF16(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (Number.isNaN(v)) return 0x7e00;
  if (a < 2 ** -14) return sign | roundEven(a * 2 ** 24); // subnormal (1024 rounds up into normal)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  let m = roundEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) { m = 0; e++; }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | m;
}
function fromF16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
const roundF16 = (v: number) => fromF16(toF16(v));

/** q8_0 of one row (length a multiple of 32) as ggml's x86 quantize_row_q8_0: f32 arithmetic, RNE. */
function quantizeQ8_0(x: ArrayLike<number>): { d: number[]; q: Int8Array } {
  const d: number[] = [];
  const q = new Int8Array(x.length);
  for (let b = 0; b < x.length; b += 32) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b + i]));
    const id = amax !== 0 ? fr(127 / amax) : 0;
    d.push(toF16(fr(amax / 127)));
    for (let i = 0; i < 32; i++) q[b + i] = roundEven(fr(x[b + i] * id));
  }
  return { d, q };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

beforeAll(async () => {
  H = await KernelHarness.createTest(256);
  K = H.k;
});

// ---------------------------------------------------------------------------------------------- exp

describe("exp", () => {
  /** Distance in units in the last place of the f32 nearest to `exact`. */
  function ulps(got: number, exact: number): number {
    if (got === exact) return 0;
    const a = Math.abs(exact);
    const ulp = a < 2 ** -126 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(fr(a) || a)) - 23);
    return Math.abs(got - exact) / ulp;
  }

  it("is within 2 ulp of exp over the range softmax and silu use, and saturates correctly", () => {
    resetAlloc();
    const N = 1 << 20;
    const x = alloc(N * 4);
    const y = alloc(N * 4);
    let worst = 0, worstAt = 0, worstSub = 0, count = 0;
    const check = (xs: Float32Array) => {
      f32At(x, xs.length).set(xs);
      K.exp_f32(x, y, xs.length);
      const ys = f32At(y, xs.length);
      for (let i = 0; i < xs.length; i++) {
        const exact = Math.exp(xs[i]);
        const e = ulps(ys[i], exact);
        if (exact < 2 ** -126) worstSub = Math.max(worstSub, e);
        else if (e > worst) { worst = e; worstAt = xs[i]; }
        count++;
      }
    };
    // a dense uniform sweep of [-104, 89], then one near 0 where the polynomial alone decides
    for (const [lo, hi] of [[-104, 89], [-1, 1], [-1e-3, 1e-3]] as const) {
      for (let chunk = 0; chunk < 4; chunk++) {
        const xs = new Float32Array(N);
        for (let i = 0; i < N; i++) xs[i] = lo + ((chunk * N + i) / (4 * N)) * (hi - lo);
        check(xs);
      }
    }
    // every f32 in two binades around the shifter's rounding boundaries
    const bits = new Uint32Array(N);
    const asF = new Float32Array(bits.buffer);
    for (let i = 0; i < N; i++) bits[i] = 0x3f000000 + i * 8; // [0.5, 2)
    check(asF.slice());
    for (let i = 0; i < N; i++) bits[i] = 0xc2800000 + i * 4; // [-64, -~90)
    check(asF.slice());
    console.log(`exp: max error ${worst.toFixed(3)} ulp at x = ${worstAt} over ${count} points; ` +
      `subnormal results: max ${worstSub.toFixed(3)} ulp`);
    expect(worst).toBeLessThanOrEqual(2);
    // below 2^-126 the result is rounded twice (2^n is applied in two factors): still under 1.5 ulp
    expect(worstSub).toBeLessThanOrEqual(1.5);

    const special = new Float32Array([-Infinity, -1e30, -200, -104, -103.98, 88.8, 89, 200, Infinity, NaN, 0, -0]);
    f32At(x, special.length).set(special);
    K.exp_f32(x, y, special.length);
    const got = Array.from(f32At(y, special.length));
    expect(got.slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
    expect(got.slice(5, 9)).toEqual([Infinity, Infinity, Infinity, Infinity]);
    expect(got[9]).toBeNaN();
    expect(got.slice(10)).toEqual([1, 1]);
  });

  it("gives the same bits in the SIMD body and the scalar tail", () => {
    resetAlloc();
    const xs = normals(1027, 7, 30);
    const x = putF32(xs);
    const y0 = alloc(1027 * 4);
    const y1 = alloc(1027 * 4);
    K.exp_f32(x, y0, 1027);
    for (let i = 0; i < 1027; i++) K.exp_f32(x + 4 * i, y1 + 4 * i, 1); // all through the tail
    expect(Array.from(f32At(y1, 1027))).toEqual(Array.from(f32At(y0, 1027)));
  });
});

describe("attention's exp (expNeg, math.ts)", () => {
  it("is exp's bits on [-69, 0], 0 below -69 and for -inf, NaN for NaN; the SIMD body and the scalar tail agree", () => {
    resetAlloc();
    const N = 1 << 18;
    const xs = new Float32Array(N);
    for (let i = 0; i < N; i++) xs[i] = -80 + (i / N) * 80.5; // [-80, 0.5)
    const x = putF32(xs);
    const want = alloc(N * 4), got = alloc(N * 4);
    K.exp_f32(x, want, N);
    K.exp_neg_f32(x, got, N);
    const w = f32At(want, N), g = f32At(got, N);
    let same = 0, flushed = 0;
    for (let i = 0; i < N; i++) {
      if (xs[i] >= -69) { expect(g[i]).toBe(w[i]); same++; } else { expect(g[i]).toBe(0); flushed++; }
    }
    expect(same).toBeGreaterThan(N / 2);
    expect(flushed).toBeGreaterThan(N / 10);
    const special = new Float32Array([-Infinity, -1e30, -69.00001, -69, -0, 0, NaN, -1e-30]);
    const sx = putF32(special);
    const sy = alloc(4 * special.length), sz = alloc(4 * special.length);
    K.exp_neg_f32(sx, sy, special.length);
    for (let i = 0; i < special.length; i++) K.exp_neg_f32(sx + 4 * i, sz + 4 * i, 1); // all through the tail
    const a = Array.from(f32At(sy, special.length)), b = Array.from(f32At(sz, special.length));
    expect(a.slice(0, 3)).toEqual([0, 0, 0]);
    const e = alloc(4 * special.length);
    K.exp_f32(sx, e, special.length);
    expect(a[3]).toBe(f32At(e, special.length)[3]); // -69 itself is not flushed
    expect(a[3]).toBeGreaterThan(0);
    expect(a.slice(4, 6)).toEqual([1, 1]);
    expect(a[6]).toBeNaN();
    expect(a[7]).toBe(1);
    expect(b.slice(0, 6)).toEqual(a.slice(0, 6));
    expect(b[6]).toBeNaN();
    expect(b[7]).toBe(a[7]);
  });
});

// ------------------------------------------------------------------------------------------ rmsnorm

describe("half to f32 (the SIMD conversions of quants/common.ts)", () => {
  it("every one of the 65536 halves: exact (inf/NaN patched) in f16x4_hi_to_f32x4; every finite half exact, -0 included, in _finite and _nosub", () => {
    const src = alloc(2 * 65536), dst = alloc(4 * 65536);
    new Uint16Array(H.memory.buffer, src, 65536).forEach((_, i, a) => { a[i] = i; });
    const names = ["f16x4_hi_to_f32x4", "f16x4_hi_to_f32x4_finite", "f16x4_hi_to_f32x4_nosub"];
    for (let which = 0; which < 3; which++) {
      new Uint32Array(H.memory.buffer, dst, 65536).fill(0xdeadbeef);
      K.f16_to_f32_simd(src, dst, 65536, which);
      const out = new Float32Array(H.memory.buffer, dst, 65536);
      const bits = new Uint32Array(H.memory.buffer, dst, 65536);
      let finite = 0, subnormal = 0;
      for (let h = 0; h < 65536; h++) {
        const e = (h >> 10) & 0x1f;
        if (e === 31) {
          if (which !== 0) continue; // the _finite conversions leave inf/NaN finite (documented)
          // inf keeps its sign; NaN keeps sign and payload in the top mantissa bits
          expect(bits[h], `${names[which]}(0x${h.toString(16)})`).toBe(((h & 0x8000) << 16 | 0x7f800000 | (h & 0x3ff) << 13) >>> 0);
          continue;
        }
        finite++;
        if (e === 0 && (h & 0x3ff) !== 0) subnormal++;
        expect(Object.is(out[h], fromF16(h)), `${names[which]}(0x${h.toString(16)}) = ${out[h]}, expected ${fromF16(h)}`).toBe(true);
      }
      expect([finite, subnormal]).toEqual([63488, 2046]);
    }
  });
});

describe("rmsnorm", () => {
  it("matches x / sqrt(mean(x²) + eps) · w, and ggml's f32 steps bit for bit", () => {
    for (const [n, nRows, misalign] of [[896, 3, 0], [1536, 2, 4], [7, 5, 8]] as const) {
      resetAlloc();
      const xs = normals(n * nRows, n, 2);
      const ws = normals(n, n + 1);
      const x = putF32(xs, misalign);
      const w = putF32(ws);
      const out = alloc(n * nRows * 4);
      const eps = 1e-6;
      K.rmsnorm(x, w, out, n, nRows, eps);
      const got = f32At(out, n * nRows);
      let maxRel = 0, bitDiffs = 0;
      for (let r = 0; r < nRows; r++) {
        let ss = 0, ssGgml = 0;
        for (let i = 0; i < n; i++) {
          ss += xs[r * n + i] ** 2;
          ssGgml += fr(xs[r * n + i] * xs[r * n + i]);
        }
        const inv = 1 / Math.sqrt(ss / n + eps);
        const scaleGgml = fr(1 / fr(Math.sqrt(fr(fr(ssGgml / n) + fr(eps)))));
        for (let i = 0; i < n; i++) {
          const ref = xs[r * n + i] * inv * ws[i];
          maxRel = Math.max(maxRel, Math.abs(got[r * n + i] - ref) / (Math.abs(ref) + 1e-30));
          if (got[r * n + i] !== fr(fr(xs[r * n + i] * scaleGgml) * ws[i])) bitDiffs++;
        }
      }
      console.log(`rmsnorm n=${n} rows=${nRows}: max relative difference ${maxRel.toExponential(2)}, ${bitDiffs} differ from ggml's steps`);
      expect(maxRel).toBeLessThan(4e-7);
      expect(bitDiffs).toBe(0);

      K.rmsnorm(x, w, x, n, nRows, eps); // in place
      expect(Array.from(f32At(x, n * nRows))).toEqual(Array.from(got));
    }
  });

  it("rmsnorm_range: rows written in ranges (any cut, aligned or not) equal rmsnorm's rows bit for bit", () => {
    for (const [n, cuts] of [[896, [0, 32, 448, 896]], [896, [0, 7, 13, 500, 895, 896]], [1536, [0, 768, 1536]], [7, [0, 3, 7]]] as const) {
      resetAlloc();
      const x = putF32(normals(n, 3 * n, 2));
      const w = putF32(normals(n, 5 * n));
      const whole = alloc(n * 4);
      const ranged = alloc(n * 4);
      const eps = 1e-6;
      K.rmsnorm(x, w, whole, n, 1, eps);
      for (let c = 0; c + 1 < cuts.length; c++) K.rmsnorm_range(x, w, ranged, n, cuts[c], cuts[c + 1], eps);
      const a = new Uint32Array(f32At(whole, n).slice().buffer), b = new Uint32Array(f32At(ranged, n).slice().buffer);
      expect(a.length).toBe(n);
      expect(Array.from(b)).toEqual(Array.from(a));
    }
  });
});

// --------------------------------------------------------------------------------------------- rope

describe("rope", () => {
  it("ropeCosSin forms ggml's f32 angles: within their accumulated rounding of the f64 angles", () => {
    const positions = [0, 1, 2, 5, 17, 100, 1000, 4095, 32767];
    for (const headDim of [64, 128]) {
      const half = headDim / 2;
      const cs = ropeCosSin(positions, headDim, 1e6, new Float32Array(positions.length * headDim));
      let maxDiff = 0, maxExcess = 0;
      positions.forEach((pos, t) => {
        for (let i = 0; i < half; i++) {
          const angle = pos * 1e6 ** (-2 * i / headDim);
          // theta is rounded once per pair (f32 products), plus powf's rounding: i+2 roundings
          const bound = Math.abs(angle) * (i + 2) * 2 ** -23 + 2 ** -23;
          const dc = Math.abs(cs[t * headDim + i] - Math.cos(angle));
          const ds = Math.abs(cs[t * headDim + half + i] - Math.sin(angle));
          maxDiff = Math.max(maxDiff, dc, ds);
          maxExcess = Math.max(maxExcess, dc / bound, ds / bound);
        }
      });
      console.log(`ropeCosSin headDim=${headDim}: max |difference| from f64 angles ${maxDiff.toExponential(2)} ` +
        `(at most ${maxExcess.toFixed(2)} of the rounding bound)`);
      expect(maxExcess).toBeLessThanOrEqual(1);
    }
    // position 1, pair 1: theta = powf(1e6, -2/64) exactly as ggml: one rounding of pow
    const cs = ropeCosSin([1], 64, 1e6, new Float32Array(64));
    expect(cs[1]).toBe(fr(Math.cos(fr(Math.pow(1e6, fr(-2 / 64))))));
  });

  it("ropeCosSin honours YaRN parameters as ggml's rope_yarn", () => {
    // llama 2 at 4096 context, base 1e4: ggml gives corr dims [20, 46]
    expect(ropeYarnCorrDims(128, 4096, 10000, 32, 1)).toEqual([20, 46]);
    const headDim = 128, half = 64, base = 1e6, pos = 3000;
    const corr = ropeYarnCorrDims(headDim, 32768, base);
    const freqScale = 0.25, extFactor = 1, attnFactor = 1;
    const cs = ropeCosSin([pos], headDim, base, new Float32Array(headDim), { freqScale, extFactor, attnFactor, corrDims: corr });
    const mscale = attnFactor * (1 + 0.1 * Math.log(1 / freqScale));
    let maxDiff = 0;
    for (let i = 0; i < half; i++) {
      const extrap = pos * base ** (-2 * i / headDim);
      const y = (i - corr[0]) / Math.max(0.001, corr[1] - corr[0]);
      const ramp = (1 - Math.min(1, Math.max(0, y))) * extFactor;
      const angle = freqScale * extrap * (1 - ramp) + extrap * ramp;
      maxDiff = Math.max(maxDiff, Math.abs(cs[i] - Math.cos(angle) * mscale), Math.abs(cs[half + i] - Math.sin(angle) * mscale));
    }
    console.log(`ropeCosSin YaRN (corr dims ${corr}): max |difference| from f64 ${maxDiff.toExponential(2)}`);
    expect(maxDiff).toBeLessThan(pos * half * 2 ** -22);
    // without extrapolation, freq_scale alone scales every angle
    const plain = ropeCosSin([8], 64, base, new Float32Array(64), { freqScale: 0.5 });
    const halfPos = ropeCosSin([4], 64, base, new Float32Array(64));
    expect(plain[0]).toBeCloseTo(halfPos[0], 6);
  });

  it("rope_neox rotates (x_j, x_{j+d/2}) of every head by the token's angles", () => {
    for (const [headDim, nHeads, extra] of [[64, 14, 256], [128, 12, 0], [12, 3, 5]] as const) {
      resetAlloc();
      const nTok = 3;
      const rowStride = nHeads * headDim + extra;
      const half = headDim / 2;
      const xs = normals(nTok * rowStride, headDim * nHeads, 3);
      const positions = [0, 7, 1234];
      const csArr = ropeCosSin(positions, headDim, 1e6, new Float32Array(nTok * headDim));
      const x = putF32(xs);
      const cs = putF32(csArr);
      K.rope_neox(x, nTok, nHeads, headDim, rowStride, cs);
      const got = f32At(x, nTok * rowStride);
      let maxDiff = 0;
      for (let t = 0; t < nTok; t++) {
        for (let h = 0; h < nHeads; h++) {
          for (let j = 0; j < half; j++) {
            const b = t * rowStride + h * headDim;
            const c = csArr[t * headDim + j], s = csArr[t * headDim + half + j];
            const x0 = xs[b + j], x1 = xs[b + half + j];
            maxDiff = Math.max(maxDiff,
              Math.abs(got[b + j] - (x0 * c - x1 * s)) / (Math.abs(x0) + Math.abs(x1)),
              Math.abs(got[b + half + j] - (x0 * s + x1 * c)) / (Math.abs(x0) + Math.abs(x1)));
          }
        }
        for (let i = nHeads * headDim; i < rowStride; i++) expect(got[t * rowStride + i]).toBe(xs[t * rowStride + i]);
      }
      console.log(`rope_neox headDim=${headDim} heads=${nHeads}: max relative difference ${maxDiff.toExponential(2)}`);
      expect(maxDiff).toBeLessThan(2e-7);
      // position 0 is the identity
      for (let i = 0; i < nHeads * headDim; i++) expect(got[i]).toBe(xs[i]);
    }
  });
});

// -------------------------------------------------------------------------------------- elementwise

describe("elementwise", () => {
  it("swiglu = silu(gate) · up", () => {
    resetAlloc();
    const n = 4867;
    const g = normals(n, 11, 8);
    g.set([-100, -88, -87, 0, -0, 50, 100, 1e-30], 0);
    const u = normals(n, 12, 2);
    const gate = putF32(g, 4), up = putF32(u), out = alloc(n * 4), out1 = alloc(n * 4);
    K.swiglu(gate, up, out, n);
    const got = f32At(out, n);
    let maxRel = 0;
    for (let i = 0; i < n; i++) {
      const ref = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
      // below -88.7, exp(-x) overflows and silu flushes to -0, as ggml_v_silu does (|silu| < 3e-37)
      if (g[i] < -88.7) { expect(Math.abs(got[i])).toBeLessThan(2 ** -126); continue; }
      // relative to the result, or to the smallest normal f32 where the result is subnormal
      maxRel = Math.max(maxRel, Math.abs(got[i] - ref) / Math.max(Math.abs(ref), 2 ** -126));
    }
    console.log(`swiglu: max relative difference ${maxRel.toExponential(2)}`);
    expect(maxRel).toBeLessThan(1e-6);
    for (let i = 0; i < n; i++) K.swiglu(gate + 4 * i, up + 4 * i, out1 + 4 * i, 1);
    expect(Array.from(f32At(out1, n))).toEqual(Array.from(got));
  });

  it("add, add_bias, scale, copy_f32", () => {
    resetAlloc();
    const n = 903, nRows = 3;
    const as = normals(n * nRows, 21), bs = normals(n * nRows, 22), bias = normals(n, 23);
    const a = putF32(as), b = putF32(bs, 8), out = alloc(n * nRows * 4), bp = putF32(bias);
    K.add(a, b, out, n * nRows);
    expect(Array.from(f32At(out, n * nRows))).toEqual(Array.from(as, (v, i) => fr(v + bs[i])));
    K.add_bias(a, bp, nRows, n);
    expect(Array.from(f32At(a, n * nRows))).toEqual(Array.from(as, (v, i) => fr(v + bias[i % n])));
    K.scale(b, 0.125, n * nRows);
    expect(Array.from(f32At(b, n * nRows))).toEqual(Array.from(bs, (v) => fr(v * 0.125)));
    K.copy_f32(b, out, n * nRows);
    expect(Array.from(f32At(out, n * nRows))).toEqual(Array.from(f32At(b, n * nRows)));
  });

  it("softmax_f32 rows", () => {
    resetAlloc();
    const n = 151, nRows = 4;
    const xs = normals(n * nRows, 31, 5);
    xs[3] = -Infinity;
    const x = putF32(xs);
    K.softmax_f32(x, x, nRows, n);
    const got = f32At(x, n * nRows);
    let maxDiff = 0;
    for (let r = 0; r < nRows; r++) {
      const row = Array.from(xs.subarray(r * n, (r + 1) * n));
      const m = Math.max(...row);
      const e = row.map((v) => Math.exp(v - m));
      const s = e.reduce((p, c) => p + c, 0);
      e.forEach((v, i) => { maxDiff = Math.max(maxDiff, Math.abs(got[r * n + i] - v / s)); });
    }
    console.log(`softmax_f32: max |difference| ${maxDiff.toExponential(2)}`);
    expect(got[3]).toBe(0);
    expect(maxDiff).toBeLessThan(1e-7);
  });
});

// ---------------------------------------------------------------------------------------- attention

type CacheType = "f32" | "f16" | "q8_0";

interface Case {
  nTok: number; pos0: number; nHeads: number; nKVHeads: number; headDim: number;
}

/** A random case: q rows with padding, a KV cache (positions 0 .. pos0+nTok-1) with padding. */
function makeCase(c: Case, seed: number) {
  const nPos = c.pos0 + c.nTok;
  const qStride = c.nHeads * c.headDim + 8;
  const kvFloats = c.nKVHeads * c.headDim;
  return {
    qStride,
    kvFloats,
    q: normals(c.nTok * qStride, seed, 2.5),
    k: normals(nPos * kvFloats, seed + 1, 1),
    v: normals(nPos * kvFloats, seed + 2, 1),
  };
}

/**
 * The reference in f64 on the values the cache holds: kDeq/vDeq (dequantized), q as given (or
 * q8_0-quantized, whose dot is Σ d_k·d_q·Σ q_k·q_q), p exact.
 */
function referenceAttention(c: Case, qStride: number, kvFloats: number, q: Float32Array, kDeq: Float64Array | Float32Array,
  vDeq: Float64Array | Float32Array, qTransform?: (row: Float32Array) => Float64Array,
  pTransform: (p: number) => number = (p) => p): Float64Array {
  const out = new Float64Array(c.nTok * qStride);
  const group = c.nHeads / c.nKVHeads;
  const scale = 1 / Math.sqrt(c.headDim);
  for (let t = 0; t < c.nTok; t++) {
    const n = c.pos0 + t + 1;
    for (let h = 0; h < c.nHeads; h++) {
      const g = Math.floor(h / group);
      const qRowF = q.subarray(t * qStride + h * c.headDim, t * qStride + (h + 1) * c.headDim);
      const qRow = qTransform ? qTransform(qRowF) : Float64Array.from(qRowF);
      const s = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let d = 0; d < c.headDim; d++) dot += qRow[d] * kDeq[j * kvFloats + g * c.headDim + d];
        s[j] = dot * scale;
      }
      const m = Math.max(...s);
      let sum = 0;
      for (let j = 0; j < n; j++) { s[j] = Math.exp(s[j] - m); sum += s[j]; }
      for (let d = 0; d < c.headDim; d++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += pTransform(s[j] / sum) * vDeq[j * kvFloats + g * c.headDim + d];
        out[t * qStride + h * c.headDim + d] = acc;
      }
    }
  }
  return out;
}

/** Writes the cache in `type` with a padded position stride; returns pointers and the dequantized values. */
function storeCache(type: CacheType, c: Case, kvFloats: number, values: Float32Array) {
  const nPos = c.pos0 + c.nTok;
  const deq = new Float64Array(values.length);
  if (type === "f32") {
    const stride = kvFloats * 4 + 48;
    const p = alloc(nPos * stride);
    for (let j = 0; j < nPos; j++) f32At(p + j * stride, kvFloats).set(values.subarray(j * kvFloats, (j + 1) * kvFloats));
    deq.set(values);
    return { ptr: p, stride, deq };
  }
  if (type === "f16") {
    const stride = kvFloats * 2 + 34;
    const p = alloc(nPos * stride);
    const view = new DataView(H.memory.buffer);
    for (let j = 0; j < nPos; j++) {
      for (let i = 0; i < kvFloats; i++) {
        const h = toF16(values[j * kvFloats + i]);
        view.setUint16(p + j * stride + 2 * i, h, true);
        deq[j * kvFloats + i] = fromF16(h);
      }
    }
    return { ptr: p, stride, deq };
  }
  const rowBytes = (kvFloats / 32) * 34;
  const stride = rowBytes + 6;
  const p = alloc(nPos * stride);
  const view = new DataView(H.memory.buffer);
  for (let j = 0; j < nPos; j++) {
    // each head row is quantized on its own, as the cache stores it
    for (let g = 0; g < c.nKVHeads; g++) {
      const row = values.subarray(j * kvFloats + g * c.headDim, j * kvFloats + (g + 1) * c.headDim);
      const { d, q } = quantizeQ8_0(row);
      for (let b = 0; b < d.length; b++) {
        const at = p + j * stride + (g * c.headDim / 32 + b) * 34;
        view.setUint16(at, d[b], true);
        for (let i = 0; i < 32; i++) {
          view.setInt8(at + 2 + i, q[b * 32 + i]);
          deq[j * kvFloats + g * c.headDim + b * 32 + i] = q[b * 32 + i] * fromF16(d[b]);
        }
      }
    }
  }
  return { ptr: p, stride, deq };
}

function runAttention(type: CacheType, c: Case, data: ReturnType<typeof makeCase>, ranges: [number, number][]) {
  const nPos = c.pos0 + c.nTok;
  const k = storeCache(type, c, data.kvFloats, data.k);
  const v = storeCache(type, c, data.kvFloats, data.v);
  const q = putF32(data.q);
  const out = alloc(c.nTok * data.qStride * 4);
  f32At(out, c.nTok * data.qStride).fill(12345);
  const scratch = alloc((c.headDim + nPos) * 4, 4);
  for (const [h0, h1] of ranges) {
    K[`attention_${type}`](q, k.ptr, v.ptr, out, scratch, c.nTok, c.pos0, c.nHeads, c.nKVHeads, c.headDim,
      data.qStride, k.stride, fr(1 / Math.sqrt(c.headDim)), h0, h1);
  }
  return { out: f32At(out, c.nTok * data.qStride).slice(), kDeq: k.deq, vDeq: v.deq };
}

/** max |got - ref| over the computed heads / max |ref|; the padding must be untouched. */
function compare(c: Case, qStride: number, got: Float32Array, ref: ArrayLike<number>): number {
  let maxDiff = 0, maxRef = 0;
  for (let t = 0; t < c.nTok; t++) {
    for (let i = 0; i < qStride; i++) {
      const at = t * qStride + i;
      if (i >= c.nHeads * c.headDim) { expect(got[at]).toBe(12345); continue; }
      maxDiff = Math.max(maxDiff, Math.abs(got[at] - ref[at]));
      maxRef = Math.max(maxRef, Math.abs(ref[at]));
    }
  }
  return maxDiff / maxRef;
}

const CASES: Case[] = [];
for (const [nHeads, nKVHeads] of [[4, 2], [14, 2]]) {
  for (const headDim of [64, 128]) {
    for (const nTok of [1, 3, 7]) {
      for (const pos0 of [0, 5]) CASES.push({ nTok, pos0, nHeads, nKVHeads, headDim });
    }
  }
}
CASES.push({ nTok: 1, pos0: 300, nHeads: 14, nKVHeads: 2, headDim: 64 }); // a long decode
CASES.push({ nTok: 2, pos0: 37, nHeads: 12, nKVHeads: 2, headDim: 128 });

describe("attention", () => {
  it("f32 cache matches the f64 reference (decode and causal prefill, GQA 2 and 7, split heads)", () => {
    let worst = 0;
    CASES.forEach((c, i) => {
      resetAlloc();
      const data = makeCase(c, 100 + i);
      const split = Math.min(3, c.nHeads - 1);
      const { out, kDeq, vDeq } = runAttention("f32", c, data, [[0, split], [split, c.nHeads]]);
      const ref = referenceAttention(c, data.qStride, data.kvFloats, data.q, kDeq, vDeq);
      const rel = compare(c, data.qStride, out, ref);
      worst = Math.max(worst, rel);
      expect(rel, `nTok=${c.nTok} pos0=${c.pos0} heads=${c.nHeads}/${c.nKVHeads} headDim=${c.headDim}`).toBeLessThan(1e-5);
    });
    console.log(`attention_f32: max difference / max |out| = ${worst.toExponential(2)} over ${CASES.length} cases`);
  });

  it("f32 cache: a head range computes only those heads; odd head dims take the scalar tails", () => {
    for (const c of [
      { nTok: 3, pos0: 5, nHeads: 14, nKVHeads: 2, headDim: 64 },
      { nTok: 3, pos0: 2, nHeads: 6, nKVHeads: 3, headDim: 36 },
      { nTok: 2, pos0: 4, nHeads: 2, nKVHeads: 1, headDim: 6 },
    ]) {
      resetAlloc();
      const data = makeCase(c, 7);
      const { out, kDeq, vDeq } = runAttention("f32", c, data, [[5 % c.nHeads, Math.min(9, c.nHeads)]]);
      const ref = referenceAttention(c, data.qStride, data.kvFloats, data.q, kDeq, vDeq);
      let maxDiff = 0;
      for (let t = 0; t < c.nTok; t++) {
        for (let h = 0; h < c.nHeads; h++) {
          for (let d = 0; d < c.headDim; d++) {
            const at = t * data.qStride + h * c.headDim + d;
            if (h >= 5 % c.nHeads && h < Math.min(9, c.nHeads)) maxDiff = Math.max(maxDiff, Math.abs(out[at] - ref[at]));
            else expect(out[at]).toBe(12345);
          }
        }
      }
      expect(maxDiff).toBeLessThan(1e-5);
    }
  });

  it("out may alias q", () => {
    const c = { nTok: 3, pos0: 5, nHeads: 14, nKVHeads: 2, headDim: 64 };
    for (const type of ["f32", "f16", "q8_0"] as const) {
      resetAlloc();
      const data = makeCase(c, 3);
      const separate = runAttention(type, c, data, [[0, c.nHeads]]);
      const k = storeCache(type, c, data.kvFloats, data.k);
      const v = storeCache(type, c, data.kvFloats, data.v);
      const q = putF32(data.q);
      const scratch = alloc((c.headDim + c.pos0 + c.nTok) * 4);
      K[`attention_${type}`](q, k.ptr, v.ptr, q, scratch, c.nTok, c.pos0, c.nHeads, c.nKVHeads, c.headDim,
        data.qStride, k.stride, fr(1 / Math.sqrt(c.headDim)), 0, c.nHeads);
      const inPlace = f32At(q, c.nTok * data.qStride);
      for (let t = 0; t < c.nTok; t++) {
        const row = t * data.qStride;
        expect(Array.from(inPlace.subarray(row, row + c.nHeads * c.headDim)))
          .toEqual(Array.from(separate.out.subarray(row, row + c.nHeads * c.headDim)));
      }
    }
  });

  it("f16 cache: within f16 rounding of the f32 cache, and close to the reference on the f16 values", () => {
    let worstOwn = 0, worstVsF32 = 0;
    CASES.forEach((c, i) => {
      resetAlloc();
      const data = makeCase(c, 100 + i);
      const f32 = runAttention("f32", c, data, [[0, c.nHeads]]);
      const f16 = runAttention("f16", c, data, [[0, c.nHeads]]);
      // the reference rounds q and p to f16 as the kernel does (from f64 rather than f32 values,
      // which can move a p across an f16 rounding boundary: one f16 ulp of one p at worst)
      const ref = referenceAttention(c, data.qStride, data.kvFloats, data.q, f16.kDeq, f16.vDeq,
        (row) => Float64Array.from(row, roundF16), (p) => roundF16(Math.fround(p)));
      const own = compare(c, data.qStride, f16.out, ref);
      const vsF32 = compare(c, data.qStride, f16.out, f32.out);
      worstOwn = Math.max(worstOwn, own);
      worstVsF32 = Math.max(worstVsF32, vsF32);
      expect(own).toBeLessThan(1e-5);
      expect(vsF32).toBeLessThan(1e-2);
    });
    console.log(`attention_f16: max difference / max |out| = ${worstOwn.toExponential(2)} vs the reference on f16 values, ` +
      `${worstVsF32.toExponential(2)} vs the f32 cache`);
  });

  it("q8_0 cache: matches the reference on the q8_0 values, within q8_0 rounding of the f32 cache", () => {
    let worstOwn = 0, worstVsF32 = 0;
    CASES.forEach((c, i) => {
      resetAlloc();
      const data = makeCase(c, 100 + i);
      const f32 = runAttention("f32", c, data, [[0, 1], [1, c.nHeads]]);
      const q8 = runAttention("q8_0", c, data, [[0, 1], [1, c.nHeads]]);
      const ref = referenceAttention(c, data.qStride, data.kvFloats, data.q, q8.kDeq, q8.vDeq, (row) => {
        const { d, q } = quantizeQ8_0(row);
        return Float64Array.from(q, (v, j) => v * fromF16(d[j >> 5]));
      });
      const own = compare(c, data.qStride, q8.out, ref);
      const vsF32 = compare(c, data.qStride, q8.out, f32.out);
      worstOwn = Math.max(worstOwn, own);
      worstVsF32 = Math.max(worstVsF32, vsF32);
      expect(own).toBeLessThan(1e-5);
      expect(vsF32).toBeLessThan(5e-2);
    });
    console.log(`attention_q8_0: max difference / max |out| = ${worstOwn.toExponential(2)} vs the reference on q8_0 values, ` +
      `${worstVsF32.toExponential(2)} vs the f32 cache`);
  });
});

describe("dot_peak (the measuring stick of bench --batch)", () => {
  it("computes its eight accumulators exactly as an independent emulation does", () => {
    // i16 lanes all equal: dot(a, b) = 2ab per i32 lane; w steps by 5 with i16 wraparound.
    for (const n of [0, 1, 7, 1000, 20000]) {
      let w = 3;
      const acc = [1, 2, 3, 4, 5, 6, 7, 8];
      for (let i = 0; i < n; i++) {
        const vw = 2 * 5 * w, vv = 2 * 5 * 5, ww = 2 * w * w;
        const adds = [vw, vw, vv, ww, vw, vw, vv, ww];
        for (let j = 0; j < 8; j++) acc[j] = (acc[j] + adds[j]) | 0;
        w = ((w + 5) << 16) >> 16;
      }
      const expected = acc.reduce((s, a) => (s + a) | 0, 0);
      expect(K.dot_peak(n), `n = ${n}`).toBe(expected);
    }
  });
});
