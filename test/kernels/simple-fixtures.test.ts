// The simple weight types on real tensors: llama-quantize's files in ../shared/fixtures/mini (see
// its README) dequantized by the kernels, checked bitwise against the TypeScript decoder and within
// the quantization error against the same tensors of F32.gguf; and a matmul on a real tensor.
import { beforeAll, expect, it } from "vitest";
import { parseGGUFBytes, type GGUFFile } from "../../weights/gguf/reader";
import { describeFixtures, readFixture } from "../fixtures";
import { gaussian, KernelHarness, rng } from "./harness";
import { ACT_BYTES, dequantize, simpleType } from "./simple-types";

// file, kernel type name, ggml type id, largest relative RMS error against F32 (1.5 times the
// largest measured over the file's tensors, noted beside it)
const FILES: [string, string, number, number][] = [
  ["F16", "f16", 1, 3e-4], // 2.1e-4
  ["BF16", "bf16", 30, 2.5e-3], // 1.7e-3
  ["Q8_0-pure", "q8_0", 8, 8e-3], // 5.4e-3
  ["Q4_0-pure", "q4_0", 2, 0.13], // 0.087
  ["Q4_1-pure", "q4_1", 3, 0.12], // 0.079
  ["Q5_0-pure", "q5_0", 6, 0.065], // 0.043
  ["Q5_1-pure", "q5_1", 7, 0.057], // 0.038
  ["IQ4_NL-pure", "iq4_nl", 20, 0.115], // 0.077
];

const CONVERTER: Record<string, string> = {
  f16: "convert_f32_f16", bf16: "convert_f32_bf16", q8_0: "quantize_q8_0", q8_1: "quantize_q8_1",
};

describeFixtures("simple types on the llama.cpp fixtures (mini)", () => {
  let h: KernelHarness;
  let f32: GGUFFile | undefined; // opened by the first test that runs (none runs without the fixtures)
  const open = (name: string) => parseGGUFBytes(readFixture("mini", `${name}.gguf`));
  beforeAll(async () => {
    h = await KernelHarness.create(256);
  });

  async function f32Tensor(name: string): Promise<Float32Array> {
    const bytes = await (f32 ??= open("F32")).readTensor(name); // a view into the file (a Buffer: slice() would not copy)
    return new Float32Array(Uint8Array.from(bytes).buffer);
  }

  for (const [file, name, typeId, bound] of FILES) {
    it(`${file}.gguf: dequantize_${name} = TypeScript decoder, and within ${bound} (relative RMS) of F32.gguf`, async () => {
      const t = simpleType(name);
      const g = open(file);
      const tensors = g.tensors.filter((x) => x.dims.length === 2);
      expect(tensors.length).toBeGreaterThan(0);
      let worst = 0, worstName = "";
      for (const info of tensors) {
        expect(info.type, `${file} ${info.name}`).toBe(typeId);
        h.reset();
        const n = info.dims[0] * info.dims[1];
        const bytes = await g.readTensor(info);
        const src = h.put(bytes);
        const dst = h.fresh(4 * n);
        h.call(`dequantize_${name}`, src, dst, n);
        const got = h.getF32(dst, n);
        const want = dequantize(t, bytes, 0, n);
        let diffs = 0;
        for (let i = 0; i < n; i++) diffs += Object.is(got[i], want[i]) ? 0 : 1;
        expect(diffs, `${file} ${info.name}: values differing from the TypeScript decoder`).toBe(0);
        const ref = await f32Tensor(info.name);
        let err = 0, norm = 0;
        for (let i = 0; i < n; i++) {
          err += (got[i] - ref[i]) ** 2;
          norm += ref[i] ** 2;
        }
        const rel = Math.sqrt(err / norm);
        if (rel > worst) { worst = rel; worstName = info.name; }
      }
      console.log(`${file}: ${tensors.length} tensors dequantized; largest relative RMS error against F32 ${worst.toExponential(2)} (${worstName})`);
      expect(worst).toBeLessThan(bound);
    });

    it(`${file}.gguf: matmul_${name} of blk.0.ffn_down (k 768) and blk.1.attn_q, SIMD = scalar, near F32`, async () => {
      const t = simpleType(name);
      const g = open(file);
      for (const tensorName of ["blk.0.ffn_down.weight", "blk.1.attn_q.weight"]) {
        h.reset();
        const info = g.tensor(tensorName)!;
        const [k, rows] = info.dims;
        const w = h.put(await g.readTensor(info));
        const wf = await f32Tensor(tensorName);
        const nTok = 5;
        const rand = rng(3), normal = gaussian(rand);
        const xf = Float32Array.from({ length: k * nTok }, () => normal());
        const [per, ab] = ACT_BYTES[t.act];
        const xStride = (k / per) * ab;
        const xf32 = h.put(xf);
        const x = h.fresh(xStride * nTok);
        for (let tok = 0; tok < nTok; tok++) h.call(CONVERTER[t.act], xf32 + 4 * k * tok, x + xStride * tok, k);
        const simd = h.fresh(4 * rows * nTok), ref = h.fresh(4 * rows * nTok);
        h.call(`matmul_${name}`, w, x, simd, k, 0, rows, nTok, xStride, rows);
        h.call(`matmul_${name}_ref`, w, x, ref, k, 0, rows, nTok, xStride, rows);
        const a = h.getF32(simd, rows * nTok), b = h.getF32(ref, rows * nTok);
        let errSimd = 0, errF32 = 0, norm = 0;
        for (let tok = 0; tok < nTok; tok++) {
          for (let r = 0; r < rows; r++) {
            let exact = 0;
            for (let i = 0; i < k; i++) exact += wf[r * k + i] * xf[tok * k + i];
            const i = tok * rows + r;
            errSimd = Math.max(errSimd, Math.abs(a[i] - b[i]));
            errF32 += (a[i] - exact) ** 2;
            norm += exact ** 2;
          }
        }
        const rmsNorm = Math.sqrt(norm / (rows * nTok));
        const rel = Math.sqrt(errF32 / norm);
        console.log(`${file} ${tensorName}: |SIMD - scalar| max ${(errSimd / rmsNorm).toExponential(2)} of the RMS output; ` +
          `relative RMS error against F32 weights and f32 activations ${rel.toExponential(2)}`);
        expect(errSimd / rmsNorm).toBeLessThan(1e-5);
        expect(rel).toBeLessThan(bound * 1.5 + 2e-3); // activation rounding adds to the weight error
      }
    });
  }
});
