// The scalar quantizers against files written by llama.cpp (../shared/fixtures/mini, see its README),
// read with weights/gguf/reader.ts:
// quantizing F32.gguf's tensors reproduces llama-quantize's output byte for byte, every type
// dequantizes close to the F32 weights, and dot products with real weight rows stay within the
// activation rounding.
import { beforeAll, expect, test } from "vitest";
import { readFileSync } from "node:fs";
import { describeFixtures, fixturePath, fixturesAvailable } from "../fixtures";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { dequantizeRow, quantTraits, quantizeRow, vecDotF32 } from "../../weights/quant/index";
import { activationErrorBounds, randomRow, relRms } from "./helpers";


interface Tensor {
  name: string;
  dims: number[];
  type: number;
  data: Uint8Array;
}

/** Every tensor of a fixture file, by name. */
async function readTensors(name: string): Promise<Map<string, Tensor>> {
  const buffer = readFileSync(fixturePath("mini", `${name}.gguf`));
  // a plain Uint8Array: a Buffer's slice() would be a view, not a copy
  const file = parseGGUFBytes(new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength));
  const out = new Map<string, Tensor>();
  for (const t of file.tensors) out.set(t.name, { name: t.name, dims: t.dims, type: t.type, data: await file.readTensor(t) });
  return out;
}

function elements(t: Tensor): number {
  return t.dims.reduce((a, b) => a * b, 1);
}

function f32Data(t: Tensor): Float32Array {
  return new Float32Array(t.data.slice(0, 4 * elements(t)).buffer);
}

describeFixtures("llama.cpp fixtures", () => {
  let f32 = new Map<string, Tensor>();
  beforeAll(async () => {
    if (fixturesAvailable) f32 = await readTensors("F32"); // else every test is skipped
  });

  // Files whose every quantized tensor qwasm can write: quantizing F32.gguf row by row must give the
  // same bytes (F16/BF16 were written by gguf-py from the same f32 draws, the rest by llama-quantize).
  for (const file of ["F16", "BF16", "Q8_0-pure", "Q4_0-pure", "Q4_1-pure", "Q5_0-pure", "Q5_1-pure"]) {
    test(`quantizeRow reproduces ${file}.gguf byte for byte`, async () => {
      const q = await readTensors(file);
      expect(q.size).toBe(f32.size);
      let checked = 0;
      for (const [name, src] of f32) {
        const want = q.get(name)!;
        const x = f32Data(src);
        const rowLen = src.dims[0];
        const traits = quantTraits(want.type);
        const rowBytes = (rowLen / traits.blockSize) * traits.typeSize;
        for (let r = 0; r < x.length / rowLen; r++) {
          const got = quantizeRow(want.type, x.subarray(r * rowLen, (r + 1) * rowLen));
          const expected = want.data.subarray(r * rowBytes, (r + 1) * rowBytes);
          if (!bytesEqual(got, expected)) {
            const i = got.findIndex((b, k) => b !== expected[k]);
            expect.fail(`${file} ${name} row ${r}: byte ${i} is ${got[i]}, llama.cpp wrote ${expected[i]}`);
          }
        }
        if (traits.name !== "F32") checked++;
      }
      expect(checked).toBe(15); // token_embd + 7 matrices x 2 layers
    });
  }

  // Relative RMS error of the dequantized weights vs F32, worst tensor. Measured (random N(0, s)
  // weights): F16 2.1e-4, BF16 1.7e-3, Q8_0 5.4e-3, Q4_0 8.7e-2, Q4_1 7.9e-2, Q5_0 4.3e-2, Q5_1 3.8e-2,
  // Q2_K 0.30, Q3_K 0.15, Q4_K 7.2e-2, Q5_K 3.6e-2, Q6_K 1.8e-2, IQ4_NL 7.6e-2.
  const worstRelRms: Record<string, number> = {
    F16: 3e-4, BF16: 2.5e-3, Q8_0: 8e-3, Q4_0: 0.12, Q4_1: 0.11, Q5_0: 0.06, Q5_1: 0.055,
    Q2_K: 0.36, Q3_K: 0.2, Q4_K: 0.1, Q5_K: 0.05, Q6_K: 0.025, IQ4_NL: 0.1,
  };
  const files = ["F16", "BF16", "Q8_0-pure", "Q4_0-pure", "Q4_1-pure", "Q5_0-pure", "Q5_1-pure", "Q2_K-pure",
    "Q3_K-pure", "Q4_K-pure", "Q5_K-pure", "Q6_K-pure", "IQ4_NL-pure", "Q4_0", "Q4_K_M"];

  for (const file of files) {
    test(`${file}.gguf dequantizes close to F32.gguf`, async () => {
      const q = await readTensors(file);
      const seen = new Set<string>();
      let compared = 0;
      for (const [name, src] of f32) {
        const t = q.get(name)!;
        expect(t.dims, name).toEqual(src.dims);
        const want = f32Data(src);
        const got = dequantizeRow(t.type, t.data, elements(t));
        const traits = quantTraits(t.type);
        seen.add(traits.name);
        if (traits.name === "F32") {
          expect(got, name).toEqual(want);
          continue;
        }
        const err = relRms(got, want);
        expect(err, `${file} ${name} (${traits.name})`).toBeLessThan(worstRelRms[traits.name]);
        expect(err, `${file} ${name} (${traits.name}): suspiciously exact`).toBeGreaterThan(worstRelRms[traits.name] / 20);
        compared++;
      }
      expect(compared).toBe(15); // token_embd + 7 matrices x 2 layers
      // the mixes hold what the README says
      if (file === "Q4_0") expect([...seen].sort()).toEqual(["F32", "Q4_0", "Q6_K"]);
      if (file === "Q4_K_M") expect([...seen].sort()).toEqual(["F32", "Q4_K", "Q6_K"]);
    });
  }

  test("k-quant errors are ordered by bits", async () => {
    const errs = await Promise.all(["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0"].map(async (type) => {
      const q = await readTensors(`${type}-pure`);
      const t = q.get("blk.0.ffn_down.weight")!;
      return relRms(dequantizeRow(t.type, t.data, elements(t)), f32Data(f32.get(t.name)!));
    }));
    for (let i = 1; i < errs.length; i++) expect(errs[i]).toBeLessThan(errs[i - 1] * 0.7);
  });

  // Real weight rows (not just random bytes) through the dot products, against f64 on the
  // dequantized row: the difference must stay within the activation format's rounding.
  for (const file of files) {
    test(`${file}.gguf: vecDot of real rows with quantized activations`, async () => {
      const q = await readTensors(file);
      for (const name of ["token_embd.weight", "blk.1.attn_v.weight", "blk.1.ffn_down.weight"]) {
        const t = q.get(name)!;
        const traits = quantTraits(t.type);
        const rowLen = t.dims[0];
        const rowBytes = (rowLen / traits.blockSize) * traits.typeSize;
        const x = randomRow(rowLen, 77, 3);
        const xErr = activationErrorBounds(traits.vecDotFormat, x);
        for (let r = 0; r < 8; r++) {
          const row = t.data.subarray(r * rowBytes, (r + 1) * rowBytes);
          const w = dequantizeRow(t.type, row, rowLen);
          let exact = 0;
          let bound = 0;
          for (let i = 0; i < rowLen; i++) {
            exact += w[i] * x[i];
            bound += Math.abs(w[i]) * xErr[i] + Math.abs(w[i] * x[i]) * 1e-6;
          }
          const got = vecDotF32(t.type, row, x);
          expect(Math.abs(got - exact), `${file} ${name} row ${r}`).toBeLessThanOrEqual(bound);
        }
      }
    });
  }
});

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
