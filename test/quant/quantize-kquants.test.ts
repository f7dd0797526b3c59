// The k-quant and IQ4_NL writers without fixtures (their byte-exactness against llama-quantize is
// quantize-fixtures.test.ts): on random rows, on rows with zero, tiny, constant and one-sign blocks,
// the dequantized values stay within a bound of the input measured in plain f64, nothing is NaN, and
// ggml's nearest_int is reproduced (round half to even, and its bit trick beyond 2^22).
import { describe, expect, test } from "vitest";
import { dequantizeRow, quantizeRow, quantTraits } from "../../weights/quant/index";
import { nearestInt } from "../../weights/quant/kquants";
import { randomRow, relRms } from "./helpers";

// Relative RMS error of random N(0, 1) rows (measured: Q2_K 0.32, Q3_K 0.17, Q4_K 0.087, Q5_K 0.044,
// Q6_K 0.022, IQ4_NL 0.080), with margin; and no error above this many times the row's RMS.
const BOUNDS: Record<string, [number, number]> = {
  Q2_K: [0.36, 2], Q3_K: [0.2, 1], Q4_K: [0.1, 0.5], Q5_K: [0.05, 0.25], Q6_K: [0.025, 0.1], IQ4_NL: [0.09, 0.6],
};

describe("k-quant and IQ4_NL writers", () => {
  const names = Object.keys(BOUNDS);
  for (const name of names) {
    const [relBound, maxBound] = BOUNDS[name];
    test(`${name}: random rows round-trip within the type's error`, () => {
      const x = randomRow(256 * 16, 7 + name.length, 1.3);
      const q = quantizeRow(name, x);
      expect(q.length).toBe((x.length / quantTraits(name).blockSize) * quantTraits(name).typeSize);
      const y = dequantizeRow(name, q, x.length);
      const err = relRms(y, x);
      expect(err).toBeLessThan(relBound);
      expect(err).toBeGreaterThan(relBound / 20); // a real quantization, not a copy
      let rms = 0;
      for (const v of x) rms += v * v;
      rms = Math.sqrt(rms / x.length);
      for (let i = 0; i < x.length; i++) expect(Math.abs(y[i] - x[i]), `${name} [${i}]`).toBeLessThan(maxBound * rms);
    });

    test(`${name}: zero, tiny, constant and one-sign blocks`, () => {
      const x = randomRow(256 * 6, 99, 0.5);
      x.fill(0, 0, 256);                          // all zero
      x.fill(1e-20, 256, 512);                    // below GROUP_MAX_EPS for the symmetric types
      x.fill(0.25, 512, 768);                     // constant
      for (let i = 768; i < 1024; i++) x[i] = Math.abs(x[i]) + 0.1; // all positive
      for (let i = 1024; i < 1280; i++) x[i] = -Math.abs(x[i]) - 0.1; // all negative
      const y = dequantizeRow(name, quantizeRow(name, x), x.length);
      expect(y.every(Number.isFinite)).toBe(true);
      expect(y.subarray(0, 256).every((v) => v === 0)).toBe(true);
      for (let i = 256; i < 512; i++) expect(Math.abs(y[i])).toBeLessThan(1e-6);
      for (const [from, to] of [[512, 768], [768, 1024], [1024, 1280], [1280, 1536]]) {
        const part = relRms(y.subarray(from, to), x.subarray(from, to));
        expect(part, `${name} values ${from}..${to}`).toBeLessThan(relBound * 1.5);
      }
    });
  }

  test("the quantizers are deterministic and do not keep state between rows", () => {
    const a = randomRow(512, 5);
    const b = randomRow(512, 6);
    expect(names).toEqual(["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL"]);
    for (const name of names) {
      const first = quantizeRow(name, a);
      quantizeRow(name, b);
      expect(quantizeRow(name, a)).toEqual(first);
    }
  });
});

describe("nearest_int", () => {
  test("rounds half to even in the range ggml asserts", () => {
    const cases: [number, number][] = [[0.5, 0], [1.5, 2], [2.5, 2], [-0.5, 0], [-1.5, -2], [-2.5, -2], [0.49999997, 0],
      [3.7, 4], [-3.7, -4], [4194302.5, 4194302], [-4194302.5, -4194302], [0, 0]];
    for (const [v, want] of cases) expect(nearestInt(Math.fround(v)), String(v)).toBe(want);
    expect(cases.length).toBe(12);
  });

  test("beyond 2^22 it gives what the C bit trick gives", () => {
    // (bits(v + 1.5*2^23) & 0x7fffff) - 0x400000, computed here with a DataView
    const view = new DataView(new ArrayBuffer(4));
    const trick = (v: number) => {
      view.setFloat32(0, Math.fround(v + 12582912));
      return (view.getUint32(0) & 0x7fffff) - 0x400000;
    };
    const values = [4194304, 5e6, 1e7, -5e6, 3e9, -3e9];
    for (const v of values) expect(nearestInt(Math.fround(v)), String(v)).toBe(trick(v));
    expect(values.length).toBe(6);
  });
});
