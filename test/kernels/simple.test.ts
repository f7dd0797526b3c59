// Kernels of the "simple" weight types (f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 iq4_nl) and the
// activation converters: SIMD bodies against their scalar references (printing the largest
// difference), and both against independent TypeScript decoders (simple-types.ts).
import { beforeAll, describe, expect, it } from "vitest";
import { gaussian, KernelHarness, rng } from "./harness";
import {
  ACT_BYTES, dequantize, exactDot, f32Bits, f32FromBits, f32ToBf16, f32ToHalf, quantizeActivations, randomWeights, rowBytes,
  SIMPLE_TYPES, type ActFormat, type SimpleType,
} from "./simple-types";

let h: KernelHarness;
beforeAll(async () => {
  h = await KernelHarness.create(256);
});

const CONVERTER: Record<ActFormat, string | null> = {
  f32: null, f16: "convert_f32_f16", bf16: "convert_f32_bf16", q8_0: "quantize_q8_0", q8_1: "quantize_q8_1",
};

/** Activations with a spread of magnitudes: per-32 scales from 1e-3 to 1e3, an all-zero run, outliers. */
function randomActivations(n: number, rand: () => number, normal: () => number): Float32Array {
  const x = new Float32Array(n);
  for (let b = 0; b < n; b += 32) {
    const scale = b === 64 ? 0 : 10 ** (rand() * 6 - 3);
    for (let j = b; j < Math.min(n, b + 32); j++) x[j] = normal() * scale * (rand() < 0.02 ? 30 : 1);
  }
  return x;
}

// ---- activations ----

describe("activation converters", () => {
  const rand = rng(7), normal = gaussian(rand);

  function specialBlock(kind: number): number[] {
    const v = Array.from({ length: 32 }, () => normal());
    switch (kind) {
      case 0: return v.map(() => 0); // amax 0: d 0, q 0
      case 1: return v.map((_, j) => (j === 5 ? -3.5 : 0)); // one value
      case 2: return v.map((_, j) => (j === 0 ? 127 : (j % 7) - 3 + 0.5)); // id = 1: exact halves, ties to even
      case 3: return v.map((x) => x * 1e30); // d overflows f16 to inf
      case 4: return v.map((x) => x * 1e-8); // d is an f16 subnormal
      case 5: return v.map((x, j) => (j % 2 ? -0 : x));
      default: return v;
    }
  }

  for (const fmt of ["q8_0", "q8_1"] as const) {
    it(`quantize_${fmt}: SIMD = scalar = llama.cpp's formula, bitwise`, () => {
      h.reset();
      const blocks = 64;
      const x = new Float32Array(blocks * 32);
      for (let b = 0; b < blocks; b++) {
        const v = b < 6 ? specialBlock(b) : specialBlock(99).map((y) => y * 10 ** (rand() * 8 - 4));
        x.set(v, b * 32);
      }
      const bytes = ACT_BYTES[fmt][1] * blocks;
      const src = h.put(x);
      const simd = h.fresh(bytes), ref = h.fresh(bytes);
      h.call(`quantize_${fmt}`, src, simd, x.length);
      h.call(`quantize_${fmt}_ref`, src, ref, x.length);
      const a = h.getBytes(simd, bytes), b = h.getBytes(ref, bytes);
      const want = quantizeActivations(fmt, x);
      let diffs = 0, diffsTs = 0;
      for (let i = 0; i < bytes; i++) { diffs += a[i] !== b[i] ? 1 : 0; diffsTs += b[i] !== want[i] ? 1 : 0; }
      console.log(`quantize_${fmt}: ${blocks} blocks, bytes differing SIMD/scalar ${diffs}, scalar/TypeScript ${diffsTs}`);
      expect(a).toEqual(b);
      expect(b).toEqual(want);
    });
  }

  const specials = [0, -0, 1, -1, Infinity, -Infinity, NaN, 65504, 65519.99, 65520, -65520, 2 ** -14, 2 ** -24,
    2 ** -25, 2 ** -25 * 1.0001, 3 * 2 ** -25, 2 ** -26, 1e-30, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 3.4e38, -3.4e38,
    f32FromBits(0x7f7fffff), f32FromBits(0x3f808000), f32FromBits(0x3f818000), f32FromBits(0x7fc00001), f32FromBits(0xff800001)];
  for (const [name, enc] of [["f16", f32ToHalf], ["bf16", f32ToBf16]] as const) {
    it(`convert_f32_${name}: SIMD = scalar = round to nearest even, bitwise (n not a multiple of 8)`, () => {
      h.reset();
      const n = 1003;
      const x = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        x[i] = i < specials.length ? specials[i]
          : i % 3 === 0 ? f32FromBits((rand() * 2 ** 32) >>> 0) // any bit pattern
          : normal() * 2 ** (rand() * 60 - 40);
      }
      const src = h.put(x);
      const simd = h.fresh(2 * n + 16), ref = h.fresh(2 * n + 16);
      h.call(`convert_f32_${name}`, src, simd, n);
      h.call(`convert_f32_${name}_ref`, src, ref, n);
      const a = new Uint16Array(h.getBytes(simd, 2 * n + 16).buffer), b = new Uint16Array(h.getBytes(ref, 2 * n + 16).buffer);
      let diffs = 0, diffsTs = 0;
      for (let i = 0; i < n; i++) {
        diffs += a[i] !== b[i] ? 1 : 0;
        if (b[i] !== enc(x[i])) {
          diffsTs++;
          console.log(`  x = ${x[i]} (0x${f32Bits(x[i]).toString(16)}): kernel 0x${b[i].toString(16)}, TypeScript 0x${enc(x[i]).toString(16)}`);
        }
      }
      console.log(`convert_f32_${name}: ${n} values, differing SIMD/scalar ${diffs}, scalar/TypeScript ${diffsTs}`);
      expect(diffs).toBe(0);
      expect(diffsTs).toBe(0);
      expect(a.subarray(n)).toEqual(new Uint16Array(8).fill(0xa5a5)); // nothing written past n
    });
  }
});

// ---- dequantize ----

describe("dequantize", () => {
  for (const t of SIMPLE_TYPES) {
    it(`dequantize_${t.name} equals the TypeScript decoder, bitwise`, () => {
      h.reset();
      const rand = rng(100 + t.bytes), normal = gaussian(rand);
      const n = t.block === 1 ? 1003 : 37 * 32;
      const w = randomWeights(t, n, rand, normal);
      const src = h.put(w);
      const dst = h.fresh(4 * n + 64);
      h.call(`dequantize_${t.name}`, src, dst, n);
      const got = h.getF32(dst, n);
      const want = dequantize(t, w, 0, n);
      let diffs = 0;
      for (let i = 0; i < n; i++) diffs += Object.is(got[i], want[i]) ? 0 : 1;
      console.log(`dequantize_${t.name}: ${n} weights, ${diffs} differ`);
      expect(diffs).toBe(0);
      expect(h.getBytes(dst + 4 * n, 64)).toEqual(new Uint8Array(64).fill(0xa5));
    });
  }
});

// ---- matmul ----

describe("matmul SIMD against the scalar reference", () => {
  const TOKENS = [1, 2, 3, 4, 5, 7, 9, 11, 16];
  const ksFor = (t: SimpleType) => (t.block === 1 ? [1, 7, 13, 100, 263] : [32, 224, 288, 416]);

  for (const t of SIMPLE_TYPES) {
    it(`matmul_${t.name}: tokens ${TOKENS.join(",")}, k ${ksFor(t).join(",")}, rows 3..42 of 45, padded strides`, () => {
      const rand = rng(1000 + t.bytes * 7 + t.block), normal = gaussian(rand);
      let worstSimd = 0, worstRef = 0, worstRel = 0, cases = 0;
      for (const k of ksFor(t)) {
        h.reset();
        const rows = 45, rowStart = 3, rowEnd = 42, nTokMax = Math.max(...TOKENS);
        const wBytes = randomWeights(t, rows * k, rand, normal);
        const w = h.put(wBytes, 16);
        const [per, ab] = ACT_BYTES[t.act];
        const xRow = (k / per) * ab;
        const xStride = xRow + 10; // padded, and not a multiple of 4
        const outStride = rows + 7;
        const xf = randomActivations(k * nTokMax, rand, normal);
        const x = h.fresh(xStride * nTokMax + 64, 0x5a, 16);
        const xf32 = h.put(xf);
        const conv = CONVERTER[t.act];
        for (let tok = 0; tok < nTokMax; tok++) {
          if (conv) h.call(conv, xf32 + 4 * k * tok, x + xStride * tok, k);
          else h.u8(x + xStride * tok, xRow).set(new Uint8Array(xf.buffer, 4 * k * tok, xRow));
        }
        const xBytes = h.getBytes(x, xStride * nTokMax);
        for (const nTok of TOKENS) {
          cases++;
          const outBytes = 4 * outStride * nTok;
          const simd = h.fresh(outBytes), ref = h.fresh(outBytes);
          h.call(`matmul_${t.name}`, w, x, simd, k, rowStart, rowEnd, nTok, xStride, outStride);
          h.call(`matmul_${t.name}_ref`, w, x, ref, k, rowStart, rowEnd, nTok, xStride, outStride);
          const a = h.getF32(simd, outStride * nTok), b = h.getF32(ref, outStride * nTok);
          const canary = f32FromBits(0xa5a5a5a5);
          for (let tok = 0; tok < nTok; tok++) {
            for (let r = 0; r < outStride; r++) {
              const i = tok * outStride + r;
              if (r < rowStart || r >= rowEnd) { // untouched
                expect(Object.is(a[i], canary) && Object.is(b[i], canary), `${t.name} k=${k} nTok=${nTok}: out[${tok}][${r}] was written`).toBe(true);
                continue;
              }
              const { dot, abs } = exactDot(t, wBytes, r * rowBytes(t, k), xBytes, tok * xStride, k);
              const scale = Math.max(abs, 1e-30);
              const eSimd = Math.abs(a[i] - b[i]) / scale, eRef = Math.abs(b[i] - dot) / scale;
              worstSimd = Math.max(worstSimd, eSimd);
              worstRef = Math.max(worstRef, eRef);
              if (b[i] !== 0) worstRel = Math.max(worstRel, Math.abs(a[i] - b[i]) / Math.abs(b[i]));
              if (!(eSimd <= 1e-5) || !(eRef <= 1e-5)) {
                throw new Error(`matmul_${t.name} k=${k} nTok=${nTok} token ${tok} row ${r}: SIMD ${a[i]}, scalar ${b[i]}, ` +
                  `f64 ${dot} (sum of |terms| ${abs})`);
              }
            }
          }
        }
      }
      console.log(`matmul_${t.name}: ${cases} cases; largest |SIMD - scalar| / sum|terms| ${worstSimd.toExponential(2)}, ` +
        `|scalar - f64| / sum|terms| ${worstRef.toExponential(2)}, |SIMD - scalar| / |scalar| ${worstRel.toExponential(2)}`);
    });
  }

  // matmul_f16 converts with a fast path that is wrong for inf and NaN, and redoes a row (or the
  // whole call, for activations) that holds one: the results must still be the scalar reference's.
  it("matmul_f16 with inf and NaN among the weights and the activations", () => {
    const t = SIMPLE_TYPES.find((s) => s.name === "f16")!;
    const rand = rng(77), normal = gaussian(rand);
    const k = 61, rows = 12;
    for (const [where, nTok] of [["weights", 1], ["weights", 4], ["weights", 6], ["activations", 1], ["activations", 5]] as const) {
      h.reset();
      const wBytes = randomWeights(t, rows * k, rand, normal);
      const xBytes = quantizeActivations("f16", randomActivations(k * nTok, rand, normal));
      const specials = [0x7c00, 0xfc00, 0x7e00, 0x7c01];
      const target = where === "weights" ? wBytes : xBytes;
      const count = where === "weights" ? rows * k : k * nTok;
      for (let j = 0; j < 3; j++) {
        const i = Math.floor(rand() * (count - 8)); // inside the SIMD part of a row (k = 61: elements 0..55)
        const v = specials[j];
        target[2 * i] = v & 0xff;
        target[2 * i + 1] = v >> 8;
      }
      const w = h.put(wBytes), x = h.put(xBytes);
      const simd = h.fresh(4 * rows * nTok), ref = h.fresh(4 * rows * nTok);
      h.call("matmul_f16", w, x, simd, k, 0, rows, nTok, 2 * k, rows);
      h.call("matmul_f16_ref", w, x, ref, k, 0, rows, nTok, 2 * k, rows);
      const a = h.getF32(simd, rows * nTok), b = h.getF32(ref, rows * nTok);
      let nonFinite = 0;
      for (let i = 0; i < a.length; i++) {
        if (!Number.isFinite(b[i])) {
          nonFinite++;
          expect(Object.is(a[i], b[i]) || (Number.isNaN(a[i]) && Number.isNaN(b[i])), `${where} nTok=${nTok} out ${i}: ${a[i]} vs ${b[i]}`).toBe(true);
        } else {
          expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1e-5 * Math.abs(b[i]) + 1e-6);
        }
      }
      expect(nonFinite).toBeGreaterThan(0);
    }
  });

  it("matmul with one row and with rowStart = rowEnd", () => {
    for (const t of SIMPLE_TYPES) {
      h.reset();
      const rand = rng(5), normal = gaussian(rand);
      const k = t.block === 1 ? 40 : 64;
      const wBytes = randomWeights(t, 3 * k, rand, normal);
      const w = h.put(wBytes);
      const xf = randomActivations(k * 2, rand, normal);
      const [per, ab] = ACT_BYTES[t.act];
      const xStride = (k / per) * ab;
      const x = h.put(new Uint8Array([...quantizeActivations(t.act, xf.subarray(0, k)), ...quantizeActivations(t.act, xf.subarray(k))]));
      for (const nTok of [1, 2]) {
        const out = h.fresh(4 * 3 * nTok), ref = h.fresh(4 * 3 * nTok);
        h.call(`matmul_${t.name}`, w, x, out, k, 2, 2, nTok, xStride, 3); // nothing
        expect(h.getBytes(out, 12 * nTok)).toEqual(new Uint8Array(12 * nTok).fill(0xa5));
        h.call(`matmul_${t.name}`, w, x, out, k, 1, 2, nTok, xStride, 3);
        h.call(`matmul_${t.name}_ref`, w, x, ref, k, 1, 2, nTok, xStride, 3);
        for (let tok = 0; tok < nTok; tok++) {
          const got = h.getF32(out, 3 * nTok), want = h.getF32(ref, 3 * nTok);
          expect(Math.abs(got[tok * 3 + 1] - want[tok * 3 + 1])).toBeLessThanOrEqual(1e-5 * Math.abs(want[tok * 3 + 1]) + 1e-12);
          expect(Object.is(got[tok * 3], f32FromBits(0xa5a5a5a5))).toBe(true);
        }
      }
    }
  });
});
