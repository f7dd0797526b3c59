// Matrices of the 32-weight types interleaved by four rows (compute/model/interleave.ts writes the layout,
// assembly/quants/b32x4.ts reads it): the x4 matmuls on interleaveRows4's bytes give the bits the
// file-layout matmuls give on the file's bytes, in both builds, for every token count and row range;
// the x4 scalar reference (a reader of the layout written separately from the JS writer) sums as the
// file-layout reference does; and the loader gives the layout to exactly the matrices it should.
import { describe, expect, it } from "vitest";
import { compileKernelBuild, createSharedMemory, instantiateKernels } from "../../compute/kernels/module";
import { matmulScratchBytes } from "../../compute/kernels/dispatch";
import { interleavable, interleaveRows4, x4Layout } from "../../compute/model/interleave";
import { loadQwen2 } from "../../compute/model/model";
import { GGMLType } from "../../weights/gguf/types";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { requireRelaxedSimd } from "../kernel-build";
import { gaussian, rng } from "../kernels/harness";
import { expectInPlaceWriter, prompt } from "./helpers";

type Kernels = Record<string, (...args: number[]) => void>;

const TYPES = [
  { name: "q4_0", type: GGMLType.Q4_0, bytes: 18, convert: "quantize_q8_0", xBytes: 34, halves: [0] },
  { name: "q4_1", type: GGMLType.Q4_1, bytes: 20, convert: "quantize_q8_1", xBytes: 36, halves: [0, 2] },
  { name: "q5_0", type: GGMLType.Q5_0, bytes: 22, convert: "quantize_q8_0", xBytes: 34, halves: [0] },
  { name: "q5_1", type: GGMLType.Q5_1, bytes: 24, convert: "quantize_q8_1", xBytes: 36, halves: [0, 2] },
  { name: "iq4_nl", type: GGMLType.IQ4_NL, bytes: 18, convert: "quantize_q8_0", xBytes: 34, halves: [0] },
] as const;

/** A block scale as f16 bits: normal halves of either sign, some subnormal, a few zeros. */
function scaleHalf(rand: () => number): number {
  const sign = rand() < 0.3 ? 0x8000 : 0, r = rand();
  if (r < 0.1) return sign | (1 + ((rand() * 1023) | 0));
  if (r < 0.13) return sign;
  return sign | (0x1c00 + ((rand() * 0x800) | 0));
}

/** Memory with random weights (W: the file's layout, WX: the same interleaved), nTokMax tokens of
 *  activations, outputs and a scratch. */
function setUp(t: (typeof TYPES)[number], K: Kernels, memory: WebAssembly.Memory, rows: number, k: number, nTokMax: number, seed: number) {
  const rand = rng(seed), normal = gaussian(rand);
  const nb = k / 32, wBytes = rows * nb * t.bytes, xStride = nb * t.xBytes + 12, outStride = rows + 3;
  const after = (p: number, n: number) => Math.ceil((p + n) / 64) * 64 + 64;
  const W = 65536, WX = after(W, wBytes), XF = after(WX, wBytes), X = after(XF, 4 * k * nTokMax);
  const OUT_A = after(X, xStride * nTokMax), OUT_B = after(OUT_A, 4 * outStride * nTokMax);
  const SCRATCH = after(OUT_B, 4 * outStride * nTokMax), END = after(SCRATCH, matmulScratchBytes(k));
  if (END > memory.buffer.byteLength) memory.grow(Math.ceil((END - memory.buffer.byteLength) / 65536));
  const u8 = new Uint8Array(memory.buffer), dv = new DataView(memory.buffer);
  for (let i = 0; i < wBytes; i++) u8[W + i] = (rand() * 256) | 0;
  for (let b = 0; b < rows * nb; b++) {
    const p = W + b * t.bytes;
    for (const h of t.halves) dv.setUint16(p + h, scaleHalf(rand), true);
  }
  u8.copyWithin(WX, W, W + wBytes);
  interleaveRows4(u8, WX, rows, k, t.type);
  for (let i = 0; i < k * nTokMax; i++) dv.setFloat32(XF + 4 * i, normal() * (rand() < 0.05 ? 20 : 1), true);
  for (let tok = 0; tok < nTokMax; tok++) K[t.convert](XF + 4 * k * tok, X + xStride * tok, k);
  return { W, WX, X, OUT_A, OUT_B, SCRATCH, xStride, outStride };
}

describe("the x4 matmuls on interleaved rows give the file-layout matmuls' bits", () => {
  const cases = (["simd128", "relaxed-simd"] as const).flatMap((build) => TYPES.map((t) => [build, t.name] as const));

  it.for(cases)("%s matmul_%sx4: token counts 1..19, rows 4..36 and 0..40 of 40; with a scratch as matmul_T, without as matmul_Tx4_ref", async ([build, name], ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const t = TYPES.find((x) => x.name === name)!;
    const memory = createSharedMemory(64);
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as unknown as Kernels;
    const rows = 40, k = 320, nTokMax = 19;
    const s = setUp(t, K, memory, rows, k, nTokMax, 99 + t.bytes);
    let compared = 0;
    for (const [rowStart, rowEnd] of [[4, 36], [0, 40]]) {
      for (let nTok = 1; nTok <= nTokMax; nTok++) {
        // with a scratch: the file-layout matmul's bits; without (the x4 matmul then runs its scalar
        // reference): matmul_Tx4_ref's
        for (const scratch of [s.SCRATCH, 0]) {
          new Uint8Array(memory.buffer).fill(0xa5, s.OUT_A, s.SCRATCH + matmulScratchBytes(k));
          if (scratch) K[`matmul_${name}`](s.W, s.X, s.OUT_A, k, rowStart, rowEnd, nTok, s.xStride, s.outStride, scratch);
          else K[`matmul_${name}x4_ref`](s.WX, s.X, s.OUT_A, k, rowStart, rowEnd, nTok, s.xStride, s.outStride, 0);
          K[`matmul_${name}x4`](s.WX, s.X, s.OUT_B, k, rowStart, rowEnd, nTok, s.xStride, s.outStride, scratch);
          const a = new Uint32Array(memory.buffer, s.OUT_A, s.outStride * nTokMax);
          const b = new Uint32Array(memory.buffer, s.OUT_B, s.outStride * nTokMax);
          for (let i = 0; i < a.length; i++) {
            const row = i % s.outStride, inside = i < s.outStride * nTok && row >= rowStart && row < rowEnd;
            if (inside) {
              expect(Number.isFinite(new Float32Array(a.buffer, s.OUT_A + 4 * i, 1)[0]), `${name} output ${i} finite`).toBe(true);
              compared++;
            }
            if (a[i] !== b[i]) {
              throw new Error(`${build} matmul_${name}x4 rows ${rowStart}..${rowEnd} nTok=${nTok} scratch=${scratch !== 0}: ` +
                `token ${Math.floor(i / s.outStride)} row ${row} ${inside ? "" : "(outside the range) "}bits ${b[i].toString(16)}, file layout ${a[i].toString(16)}`);
            }
          }
        }
      }
    }
    expect(compared).toBe(2 * (32 + 40) * (nTokMax * (nTokMax + 1)) / 2);
  });

  it.for(TYPES.map((t) => t.name))("matmul_%sx4_ref reads the layout as the file layout's _ref reads the file: bit for bit", async (name) => {
    const t = TYPES.find((x) => x.name === name)!;
    const memory = createSharedMemory(64);
    const K = await instantiateKernels(memory, await compileKernelBuild("simd128")) as unknown as Kernels;
    const rows = 12, k = 256, nTok = 3;
    const s = setUp(t, K, memory, rows, k, nTok, 5 + t.bytes);
    K[`matmul_${name}_ref`](s.W, s.X, s.OUT_A, k, 0, rows, nTok, s.xStride, s.outStride, 0);
    K[`matmul_${name}x4_ref`](s.WX, s.X, s.OUT_B, k, 0, rows, nTok, s.xStride, s.outStride, 0);
    const a = new Uint32Array(memory.buffer, s.OUT_A, s.outStride * nTok), b = new Uint32Array(memory.buffer, s.OUT_B, s.outStride * nTok);
    let compared = 0;
    for (let tok = 0; tok < nTok; tok++) {
      for (let r = 0; r < rows; r++, compared++) {
        const i = tok * s.outStride + r;
        expect(b[i], `${name} token ${tok} row ${r}`).toBe(a[i]);
      }
    }
    expect(compared).toBe(rows * nTok);
  });
});

describe("interleaveRows4", () => {
  it("puts each row's d, m and qs in its slot and the 5th bits in the plane (bit 2r + h of byte j)", () => {
    // Q5_1, four rows of one block: row r's d = 0x1100 + r, m = 0x2200 + r, qs bytes 16r..16r+15,
    // and one 5th bit set per row: weight 3r + 16 * (r & 1) (h = r & 1)
    const bytes = new Uint8Array(8 + 4 * 24);
    for (let r = 0; r < 4; r++) {
      const p = 8 + 24 * r;
      bytes[p] = r; bytes[p + 1] = 0x11; bytes[p + 2] = r; bytes[p + 3] = 0x22;
      const bit = 3 * r + 16 * (r & 1);
      new DataView(bytes.buffer).setUint32(p + 4, 2 ** bit, true);
      for (let j = 0; j < 16; j++) bytes[p + 8 + j] = 16 * r + j;
    }
    const odd = new Uint8Array(9 + 4 * 24);
    odd.set(bytes.subarray(8), 9); // the same matrix at an odd offset (copied through a temporary)
    interleaveRows4(bytes, 8, 4, 32, GGMLType.Q5_1);
    interleaveRows4(odd, 9, 4, 32, GGMLType.Q5_1);
    expect([...odd.subarray(9)], "at an odd offset").toEqual([...bytes.subarray(8)]);
    const sb = bytes.subarray(8);
    for (let r = 0; r < 4; r++) {
      expect([sb[2 * r], sb[2 * r + 1]], `d of row ${r}`).toEqual([r, 0x11]);
      expect([sb[8 + 2 * r], sb[9 + 2 * r]], `m of row ${r}`).toEqual([r, 0x22]);
      expect([...sb.subarray(32 + 16 * r, 48 + 16 * r)], `qs of row ${r}`).toEqual(Array.from({ length: 16 }, (_, j) => 16 * r + j));
    }
    const plane = [...sb.subarray(16, 32)];
    const expected = new Array(16).fill(0);
    for (let r = 0; r < 4; r++) expected[3 * r] |= 1 << (2 * r + (r & 1));
    expect(plane).toEqual(expected);
    expect([...bytes.subarray(0, 8)], "bytes before the matrix").toEqual(new Array(8).fill(0));
  });

  it("refuses what has no x4 layout", () => {
    expect(interleavable(GGMLType.Q5_0, 8, 64)).toBe(true);
    expect(interleavable(GGMLType.Q5_1, 4, 32)).toBe(true);
    expect(interleavable(GGMLType.Q5_0, 6, 64)).toBe(false);
    expect(interleavable(GGMLType.Q5_0, 0, 64)).toBe(false);
    expect(interleavable(GGMLType.Q8_0, 8, 64)).toBe(false); // memory-bound: the file's layout (interleave.ts)
    expect(interleavable(GGMLType.Q4_K, 8, 256)).toBe(false);
    expect(interleavable(GGMLType.F16, 8, 64)).toBe(false);
    expect(() => interleaveRows4(new Uint8Array(6 * 22), 0, 6, 32, GGMLType.Q5_0)).toThrow(RangeError);
  });
});

describe("the loader", () => {
  it("interleaves the Q5_0 matmul weights but not token_embd, and the logits match the scalar reference kernels'", async () => {
    const vocabulary = await readQwen2Vocabulary();
    const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q5_0", seed: 3 }));
    const fast = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 8 });
    const ref = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 8, reference: true });
    try {
      const l = fast.forward.layout.layers[0];
      const q5 = [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].filter((m) => m.type === GGMLType.Q5_0);
      expect(q5.length).toBeGreaterThan(0);
      for (const m of q5) expect(m.x4, `rows ${m.rows}`).toBe(m.rows % 4 === 0 ? true : undefined);
      expect(fast.forward.layout.tokenEmbd.x4).toBeUndefined();
      expect(ref.forward.layout.layers[0].q.x4).toBeUndefined();
      const tokens = prompt(6);
      const a = await fast.forward.step(tokens, 0), b = await ref.forward.step(tokens, 0);
      let worst = 0;
      const scale = b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / scale);
      console.log(`x4 Q5_0 model vs scalar reference kernels: max |Δ| / max|logit| ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-4);
    } finally {
      await fast.dispose();
      await ref.dispose();
    }
  });
});

describe("interleave_x4 (the kernels' interleaver, which the loader runs)", () => {
  const cases = (["simd128", "relaxed-simd"] as const).flatMap((build) => TYPES.map((t) => [build, t.name] as const));
  it.for(cases)("%s %s: writes interleaveRows4's bytes, in place, at an odd offset, through the scratch only", async ([build, name], ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const t = TYPES.find((x) => x.name === name)!;
    const x4 = x4Layout(t.type)!;
    const memory = createSharedMemory(8);
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as unknown as Kernels;
    const rows = 12, cols = 96, n = rows * (cols / 32) * t.bytes, W = 65536 + 3; // an odd offset
    const S = W + n + 4096;
    expectInPlaceWriter(memory, rng(3304), W, n, (u8, at) => interleaveRows4(u8, at, rows, cols, t.type),
      () => K.interleave_x4(W, rows, cols, t.bytes, x4.qsAt, x4.hasMin ? 1 : 0, x4.plane ? 1 : 0, S),
      { at: S, used: 4 * (cols / 32) * t.bytes, bytes: matmulScratchBytes(cols) });
  });
});
