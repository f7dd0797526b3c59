// Scalar quantizers on random data (no fixtures needed): f16/bf16 rounding, block layouts, quantize →
// dequantize error bounds, the activation formats' exact rules, and every type's dot product against
// plain f64 arithmetic on its own dequantized operands.
import { describe, expect, test } from "vitest";
import { GGMLType, typeInfo } from "../../weights/gguf/types";
import {
  QUANT_TRAITS, QUANTIZABLE_TYPES, dequantizeRow, quantTraits, quantizeActivations,
  quantizeQ8_0Activations, quantizeQ8_1Activations, quantizeQ8_KActivations, quantizeRow, vecDot, vecDotF32,
} from "../../weights/quant/index";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../weights/quant/half";
import { activationErrorBounds, decodeActivations, randomBlocks, randomRow, rng } from "./helpers";

/** Independent round-to-nearest-even onto a grid with `mantBits` stored mantissa bits. */
function roundToGrid(x: number, mantBits: number, minExp: number): number {
  if (x === 0) return 0;
  const e = Math.max(Math.floor(Math.log2(Math.abs(x))), minExp);
  const ulp = 2 ** (e - mantBits);
  const q = x / ulp;
  let r = Math.round(q);
  if (r - q === 0.5 && r % 2 !== 0) r -= 1;
  return r * ulp;
}

describe("f16 and bf16", () => {
  test("f32 → f16 edge cases: ties to even, subnormals, overflow, NaN", () => {
    const cases: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff],
      [65519.99, 0x7bff], [65520, 0x7c00], [1e9, 0x7c00], [-Infinity, 0xfc00], [NaN, 0x7e00],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], [2 ** -26, 0x0000], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02],
      [(2 ** -14) * (1 - 2 ** -11), 0x0400], // rounds up out of the subnormals into the first normal
    ];
    for (const [x, h] of cases) expect(f32ToF16(x), `f32ToF16(${x})`).toBe(h);
  });

  test("every finite f16 survives f16 → f32 → f16", () => {
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaN
      expect(f32ToF16(f16ToF32(h))).toBe(h);
    }
  });

  test("f32 → f16 rounds like an independent nearest-even on random values", () => {
    const next = rng(7);
    for (let i = 0; i < 20000; i++) {
      const x = Math.fround((next() * 2 - 1) * 2 ** Math.floor(next() * 44 - 28));
      const want = Math.abs(roundToGrid(x, 10, -14)) >= 65520 ? Math.sign(x) * Infinity : roundToGrid(x, 10, -14);
      expect(f16ToF32(f32ToF16(x)) + 0, `x = ${x}`).toBe(want + 0); // + 0: the sign of zero aside
    }
  });

  test("f32 → bf16 rounds to nearest even, NaN stays NaN (quiet)", () => {
    const next = rng(8);
    for (let i = 0; i < 20000; i++) {
      const x = Math.fround((next() * 2 - 1) * 2 ** Math.floor(next() * 80 - 40));
      expect(bf16ToF32(f32ToBf16(x)) + 0, `x = ${x}`).toBe(roundToGrid(x, 7, -126) + 0);
    }
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16(NaN) & 0x7fc0).toBe(0x7fc0);
    expect(f32ToBf16(-Infinity)).toBe(0xff80);
  });
});

describe("type table", () => {
  test("block layouts agree with weights/gguf/types.ts", () => {
    const sizes: Record<string, [number, number]> = {
      F32: [1, 4], F16: [1, 2], BF16: [1, 2], Q4_0: [32, 18], Q4_1: [32, 20], Q5_0: [32, 22], Q5_1: [32, 24],
      Q8_0: [32, 34], Q2_K: [256, 84], Q3_K: [256, 110], Q4_K: [256, 144], Q5_K: [256, 176], Q6_K: [256, 210],
      IQ4_NL: [32, 18],
    };
    expect([...QUANT_TRAITS.values()].map((t) => t.name).sort()).toEqual(Object.keys(sizes).sort());
    for (const t of QUANT_TRAITS.values()) {
      expect([t.blockSize, t.typeSize], t.name).toEqual(sizes[t.name]);
      expect(typeInfo(t.id)!.typeSize).toBe(t.typeSize);
      expect(quantTraits(t.name.toLowerCase())).toBe(t);
    }
    expect(QUANTIZABLE_TYPES).toEqual(["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
      "Q5_K", "Q6_K", "IQ4_NL"]);
  });

  test("activation formats follow the weight type", () => {
    const want: Record<string, string> = {
      F32: "f32", F16: "f16", BF16: "bf16", Q4_0: "q8_0", Q5_0: "q8_0", Q8_0: "q8_0", IQ4_NL: "q8_0",
      Q4_1: "q8_1", Q5_1: "q8_1", Q2_K: "q8_K", Q3_K: "q8_K", Q4_K: "q8_K", Q5_K: "q8_K", Q6_K: "q8_K",
    };
    for (const t of QUANT_TRAITS.values()) expect(t.vecDotFormat, t.name).toBe(want[t.name]);
  });

  test("errors name the type and what is supported", () => {
    expect(() => quantTraits(GGMLType.IQ4_XS)).toThrow(/type 23 \(IQ4_XS\).*supported: F32/);
    expect(() => quantizeRow(GGMLType.IQ4_XS, new Float32Array(256))).toThrow(/IQ4_XS.*no quantizer.*supported: F32/);
    expect(() => quantizeRow("Q4_K", new Float32Array(255))).toThrow(/multiple of the block size 256/);
    expect(() => quantizeRow("Q4_0", new Float32Array(33))).toThrow(/multiple of the block size 32/);
  });
});

describe("quantize → dequantize", () => {
  // Largest error per block, in units of the block's scale d (see the ggml reference quantizers):
  // *_0 types can clamp the largest positive step (q = 15 instead of 16), *_1 round to nearest;
  // plus the f16 rounding of d (and m).
  const stepBound: Record<string, (amax: number, range: number) => number> = {
    Q8_0: (amax) => (amax / 127) * (0.5 + 127 / 2048),
    Q4_0: (amax) => (amax / 8) * (1 + 8 / 2048),
    Q5_0: (amax) => (amax / 16) * (1 + 16 / 2048),
    Q4_1: (amax, range) => (range / 15) * (0.5 + 15 / 2048) + amax / 2048,
    Q5_1: (amax, range) => (range / 31) * (0.5 + 31 / 2048) + amax / 2048,
  };

  for (const name of ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]) {
    test(`${name}: every value within its block's rounding step`, () => {
      const x = randomRow(32 * 64, 100 + name.length, 0.7);
      x[5] = 0; x.fill(0, 64, 96); // a zero block quantizes to zeros
      const y = dequantizeRow(name, quantizeRow(name, x), x.length);
      for (let b = 0; b < x.length / 32; b++) {
        const blk = x.subarray(32 * b, 32 * b + 32);
        const amax = Math.max(...blk.map(Math.abs));
        const bound = stepBound[name](amax, Math.max(...blk) - Math.min(...blk)) + 1e-7;
        for (let j = 0; j < 32; j++) expect(Math.abs(y[32 * b + j] - blk[j]), `${name} block ${b} [${j}]`).toBeLessThanOrEqual(bound);
      }
      expect(y.subarray(64, 96).every((v) => v === 0)).toBe(true);
    });
  }

  test("F32 is exact, F16 and BF16 are the rounded values", () => {
    const x = randomRow(1000, 3, 100);
    expect(dequantizeRow("F32", quantizeRow("F32", x), 1000)).toEqual(x);
    const h = dequantizeRow("F16", quantizeRow("F16", x), 1000);
    const b = dequantizeRow("BF16", quantizeRow("BF16", x), 1000);
    for (let i = 0; i < 1000; i++) {
      expect(h[i]).toBe(f16ToF32(f32ToF16(x[i])));
      expect(b[i]).toBe(bf16ToF32(f32ToBf16(x[i])));
    }
  });

  test("q4_0 rounds with f32 arithmetic (x*id + 8.5 in float, then truncated)", () => {
    // A block whose max is -8 gives d = 1, id = 1; x = -0.50000006 lands on 8.0 only in f32.
    const x = new Float32Array(32);
    x[0] = -8;
    x[1] = Math.fround(-0.50000006);
    const q = quantizeRow("Q4_0", x);
    expect(f16ToF32(q[0] | (q[1] << 8))).toBe(1);
    expect(q[2 + 1] & 0x0f).toBe(8); // f64 arithmetic would give 7
  });
});

describe("activation formats", () => {
  test("q8_0: 127/amax and round half to even (x86 path), fp16 d", () => {
    const x = new Float32Array(32);
    x.set([127, 2.5, 3.5, -2.5, -3.5, 0.5, 1.5, -126.5]);
    const a = quantizeQ8_0Activations(x);
    const q = new Int8Array(a.buffer, 2, 32);
    expect(f16ToF32(a[0] | (a[1] << 8))).toBe(1);
    expect([...q.subarray(0, 8)]).toEqual([127, 2, 4, -2, -4, 0, 2, -126]);
    expect(quantizeQ8_0Activations(new Float32Array(32)).every((b) => b === 0)).toBe(true);
  });

  test("q8_1: q8_0 plus s = fp16(d * sum(q)) with d in f32", () => {
    const x = randomRow(32 * 8, 11, 3);
    const a = quantizeQ8_1Activations(x);
    const a0 = quantizeQ8_0Activations(x);
    for (let b = 0; b < 8; b++) {
      expect(a.subarray(36 * b + 4, 36 * b + 36)).toEqual(a0.subarray(34 * b + 2, 34 * b + 34));
      expect(a.subarray(36 * b, 36 * b + 2)).toEqual(a0.subarray(34 * b, 34 * b + 2));
      const amax = Math.max(...x.subarray(32 * b, 32 * b + 32).map(Math.abs));
      const d = Math.fround(amax / 127);
      const sum = [...new Int8Array(a.buffer, 36 * b + 4, 32)].reduce((s, v) => s + v, 0);
      expect(a[36 * b + 2] | (a[36 * b + 3] << 8)).toBe(f32ToF16(Math.fround(d * sum)));
    }
  });

  test("q8_K: signed max (first on ties), iscale = -127/max, f32 d, bsums", () => {
    const x = new Float32Array(512);
    x[3] = -2; x[7] = 2; x[8] = 0.5;
    for (let i = 256; i < 512; i++) x[i] = Math.sin(i);
    const a = quantizeQ8_KActivations(x);
    const view = new DataView(a.buffer);
    const q = new Int8Array(a.buffer);
    expect(view.getFloat32(0, true)).toBe(Math.fround(1 / 63.5));
    expect([q[4 + 3], q[4 + 7], q[4 + 8]]).toEqual([-127, 127, 32]); // iscale = 63.5 (max = -2)
    for (let b = 0; b < 2; b++) {
      for (let g = 0; g < 16; g++) {
        let s = 0;
        for (let j = 0; j < 16; j++) s += q[292 * b + 4 + 16 * g + j];
        expect(view.getInt16(292 * b + 260 + 2 * g, true)).toBe(s);
      }
    }
    const y = decodeActivations("q8_K", a, 512);
    const d1 = view.getFloat32(292, true);
    for (let i = 256; i < 512; i++) expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(d1 * 0.5 + 1e-7);
    expect(quantizeQ8_KActivations(new Float32Array(256)).every((b) => b === 0)).toBe(true);
  });

  test("q8_K rounds half to even after the f32 product", () => {
    const x = new Float32Array(256);
    x[0] = -127; // iscale = 1
    x[1] = 2.5; x[2] = 3.5; x[3] = -0.5;
    const q = new Int8Array(quantizeQ8_KActivations(x).buffer, 4, 256);
    expect([q[0], q[1], q[2], q[3]]).toEqual([-127, 2, 4, 0]);
  });
});

describe("vecDot", () => {
  const n = 1024;
  for (const traits of QUANT_TRAITS.values()) {
    test(`${traits.name}: equals the f64 dot of the dequantized operands`, () => {
      const w = randomBlocks(traits, n, 1000 + traits.id);
      const x = randomRow(n, 2000 + traits.id, 2);
      const act = quantizeActivations(traits.vecDotFormat, x);
      const wf = dequantizeRow(traits.id, w, n);
      const af = decodeActivations(traits.vecDotFormat, act, n);
      let exact = 0;
      let mag = 0;
      for (let i = 0; i < n; i++) {
        exact += wf[i] * af[i];
        mag += Math.abs(wf[i] * af[i]);
      }
      // q8_1's s is fp16(d * sum q) with the unrounded d: allow its two f16 roundings per block.
      let sTerm = 0;
      if (traits.vecDotFormat === "q8_1") {
        for (let b = 0; b < n / 32; b++) {
          const m = f16ToF32(w[traits.typeSize * b + 2] | (w[traits.typeSize * b + 3] << 8));
          const s = f16ToF32(act[36 * b + 2] | (act[36 * b + 3] << 8));
          sTerm += Math.abs(m * s) * 2 ** -10;
        }
      }
      const got = vecDot(traits.id, w, act, n);
      expect(Math.abs(got - exact), `${traits.name}: ${got} vs ${exact}`).toBeLessThanOrEqual(2e-6 * mag + sTerm + 1e-30);
      expect(vecDotF32(traits.id, w, x)).toBe(got);
    });

    test(`${traits.name}: approximates the f32 dot within the activation rounding`, () => {
      const w = randomBlocks(traits, n, 3000 + traits.id);
      const x = randomRow(n, 4000 + traits.id, 2);
      const wf = dequantizeRow(traits.id, w, n);
      const xErr = activationErrorBounds(traits.vecDotFormat, x);
      let exact = 0;
      let bound = 0;
      for (let i = 0; i < n; i++) {
        exact += wf[i] * x[i];
        bound += Math.abs(wf[i]) * xErr[i] + Math.abs(wf[i] * x[i]) * 1e-6;
      }
      expect(Math.abs(vecDotF32(traits.id, w, x) - exact)).toBeLessThanOrEqual(bound);
    });
  }
});
