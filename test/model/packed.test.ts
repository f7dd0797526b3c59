// Q3_K, Q5_K, Q6_K and Q8_0 matrices in the packed layout (compute/model/interleave.ts packQ3K /
// packQ5K / packQ6K / packQ8_0 write it, assembly/quants/q3_k.ts matmul_q3_kp, q5_k.ts matmul_q5_kp,
// q6_k.ts matmul_q6_kp and q8_0p.ts matmul_q8_0p read it): on the packer's bytes the
// packed matmul gives the bits the file-layout matmul gives on the file's bytes, in both builds, for
// every token count and row range (the one-token rows, the tiles, the rows left); its scalar
// reference (a reader of the layout written separately from the JS writer) sums as the file-layout
// reference does; the byte layout checked against the format's definition; and the loader packs
// exactly the Q3_K / Q5_K / Q6_K / Q8_0 matrices that only matmuls read, and a Q8_0 or Q6_K token_embd
// tied to the LM head, whose rows get_rows then reads from the packed layout.
import { describe, expect, it } from "vitest";
import { compileKernelBuild, createSharedMemory, instantiateKernels } from "../../compute/kernels/module";
import { matmulScratchBytes } from "../../compute/kernels/dispatch";
import { packable, packBlocks, packQ3K, packQ5K, packQ6K, packQ8_0 } from "../../compute/model/interleave";
import { loadQwen2 } from "../../compute/model/model";
import { GGMLType } from "../../weights/gguf/types";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2, synthQwen2Mix } from "../../tools/synth";
import { requireRelaxedSimd } from "../kernel-build";
import { gaussian, rng } from "../kernels/harness";
import { expectInPlaceWriter, prompt } from "./helpers";

type Kernels = Record<string, (...args: number[]) => void>;
const BLOCK = 110;
/** The packed types: file-layout block (weights, bytes, offsets of its f16 scales), activations, and
 *  a matrix whose row ranges suit the layout (Q8_0's: whole groups of four rows). */
const TYPES = [
  { name: "q3_k", type: GGMLType.Q3_K, block: 256, bytes: 110, halves: [108], act: "quantize_q8_K", actBytes: 292,
    rows: 41, k: 768, ranges: [[3, 38], [0, 41]] },
  { name: "q5_k", type: GGMLType.Q5_K, block: 256, bytes: 176, halves: [0, 2], act: "quantize_q8_K", actBytes: 292,
    rows: 41, k: 768, ranges: [[3, 38], [0, 41]] },
  { name: "q6_k", type: GGMLType.Q6_K, block: 256, bytes: 210, halves: [208], act: "quantize_q8_K", actBytes: 292,
    rows: 41, k: 768, ranges: [[3, 38], [0, 41]] },
  { name: "q8_0", type: GGMLType.Q8_0, block: 32, bytes: 34, halves: [0], act: "quantize_q8_0", actBytes: 34,
    rows: 40, k: 800, ranges: [[4, 36], [0, 40], [8, 20]] },
] as const;

/** A scale (Q3_K's d, Q5_K's d and dmin, Q6_K's d, Q8_0's d) as f16 bits: normal halves of either sign, some
 *  subnormal, a few zeros. */
function scaleHalf(rand: () => number): number {
  const sign = rand() < 0.3 ? 0x8000 : 0, r = rand();
  if (r < 0.25) return sign | (1 + ((rand() * 1023) | 0));
  if (r < 0.28) return sign;
  return sign | (0x1c00 + ((rand() * 0x800) | 0));
}

describe("the packed matmuls on packed blocks give the file-layout matmuls' bits", () => {
  // with the matmul scratch (Q8_0: the tiles of four tokens, the one-token path over four quarters
  // and the groups left, and in the relaxed build under an AVX-VNNI V8 the i32 dot-add) and without
  // it (Q8_0: the scalar reader); the weight bytes random (Q8_0's quants over the whole i8 range)
  const cases = (["simd128", "relaxed-simd"] as const).flatMap((build) => TYPES.map((t) => [build, t.name] as const));

  it.for(cases)("%s matmul_%sp: token counts 1..19, row ranges of the type's case, with and without scratch; _ref as matmul_T_ref", async ([build, name], ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const t = TYPES.find((e) => e.name === name)!;
    const memory = createSharedMemory(128);
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as unknown as Kernels;
    const rand = rng(3131 + t.bytes), normal = gaussian(rand);
    const { rows, k } = t, nb = k / t.block, nTokMax = 19;
    const wBytes = rows * nb * t.bytes, xStride = nb * t.actBytes + 8, outStride = rows + 3;
    const after = (p: number, n: number) => Math.ceil((p + n) / 64) * 64 + 64;
    const W = 65536, WP = after(W, wBytes), XF = after(WP, wBytes), X = after(XF, 4 * k * nTokMax);
    const OUT_A = after(X, xStride * nTokMax), OUT_B = after(OUT_A, 4 * outStride * nTokMax), SCRATCH = after(OUT_B, 4 * outStride * nTokMax);
    const u8 = new Uint8Array(memory.buffer), dv = new DataView(memory.buffer);
    for (let i = 0; i < wBytes; i++) u8[W + i] = (rand() * 256) | 0;
    for (let b = 0; b < rows * nb; b++) for (const h of t.halves) dv.setUint16(W + b * t.bytes + h, scaleHalf(rand), true);
    u8.copyWithin(WP, W, W + wBytes);
    packBlocks(u8, WP, rows, k, t.type);
    expect(u8.subarray(WP, WP + wBytes)).not.toEqual(u8.subarray(W, W + wBytes));
    for (let i = 0; i < k * nTokMax; i++) dv.setFloat32(XF + 4 * i, normal() * (rand() < 0.05 ? 20 : 1), true);
    for (let tok = 0; tok < nTokMax; tok++) K[t.act](XF + 4 * k * tok, X + xStride * tok, k);
    let compared = 0;
    for (const [rowStart, rowEnd] of t.ranges) {
      for (let nTok = 1; nTok <= nTokMax; nTok++) {
        for (const [a, b, scratch] of [[`matmul_${name}`, `matmul_${name}p`, SCRATCH], [`matmul_${name}`, `matmul_${name}p`, 0],
          [`matmul_${name}_ref`, `matmul_${name}p_ref`, 0]] as const) {
          if (scratch === 0 && nTok > 3) continue; // without scratch and the scalar readers: a few token counts suffice
          u8.fill(0xa5, OUT_A, SCRATCH + matmulScratchBytes(k));
          K[a](W, X, OUT_A, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
          K[b](WP, X, OUT_B, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
          const fa = new Uint32Array(memory.buffer, OUT_A, outStride * nTokMax), fb = new Uint32Array(memory.buffer, OUT_B, outStride * nTokMax);
          for (let i = 0; i < fa.length; i++, compared++) {
            if (fa[i] !== fb[i]) throw new Error(`${build} ${b} (scratch ${scratch !== 0}) rows ${rowStart}..${rowEnd} nTok=${nTok} output ${i}: ${fb[i].toString(16)}, ${a} ${fa[i].toString(16)}`);
          }
        }
      }
    }
    expect(compared).toBe(t.ranges.length * (19 + 3 + 3) * outStride * nTokMax);
  });
});

describe("packQ8_0", () => {
  it("lays out a group as q8_0p.ts says: the four d, then per quad j the four rows' weights 4j..4j+3", () => {
    const rand = rng(79);
    const rows = 8, nb = 3, rowBytes = 34 * nb;
    const file = new Uint8Array(rows * rowBytes + 3);
    for (let i = 0; i < file.length; i++) file[i] = (rand() * 256) | 0;
    const packed = file.slice();
    packQ8_0(packed, 3, rows, 32 * nb); // an odd offset: the packer must not need alignment
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < nb; b++) {
        const src = 3 + r * rowBytes + 34 * b; // row r's block b in the file
        const sb = 3 + (r & ~3) * rowBytes + 136 * b, i = r & 3; // its group's super-block b
        expect([packed[sb + 2 * i], packed[sb + 2 * i + 1]]).toEqual([file[src], file[src + 1]]);
        for (let j = 0; j < 32; j++) expect(packed[sb + 8 + 16 * (j >> 2) + 4 * i + (j & 3)]).toBe(file[src + 2 + j]);
      }
    }
    expect(packed.subarray(0, 3)).toEqual(file.subarray(0, 3));
    expect(packable(GGMLType.Q8_0, 4, 64)).toBe(true);
    expect(packable(GGMLType.Q8_0, 6, 64)).toBe(false);
    expect(packable(GGMLType.Q8_0, 4, 48)).toBe(false);
    expect(() => packQ8_0(new Uint8Array(6 * 34), 0, 6, 32)).toThrow(RangeError);
  });
});

describe("get_row_q8_0p", () => {
  it.for(["simd128", "relaxed-simd"] as const)("%s: every row of a packed matrix as dequantize_q8_0 gives it from the file, bit for bit", async (build, ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const memory = createSharedMemory(8);
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as unknown as Kernels;
    const rand = rng(3301);
    const rows = 12, k = 160, rowBytes = (k / 32) * 34;
    const W = 65536, WP = W + rows * rowBytes + 64, A = WP + rows * rowBytes + 64, B = A + 4 * k + 64;
    const u8 = new Uint8Array(memory.buffer), dv = new DataView(memory.buffer);
    for (let i = 0; i < rows * rowBytes; i++) u8[W + i] = (rand() * 256) | 0;
    for (let b = 0; b < rows * k / 32; b++) dv.setUint16(W + 34 * b, scaleHalf(rand), true);
    u8.copyWithin(WP, W, W + rows * rowBytes);
    packQ8_0(u8, WP, rows, k);
    for (let r = 0; r < rows; r++) {
      u8.fill(0xa5, A, B + 4 * k);
      K.dequantize_q8_0(W + r * rowBytes, A, k);
      K.get_row_q8_0p(WP, r, k, B);
      expect(new Uint32Array(memory.buffer, B, k), `row ${r}`).toEqual(new Uint32Array(memory.buffer, A, k));
    }
  });
});

describe("packQ3K", () => {
  it("lays out a block as q3_k.ts says: the biased weights (low2 | high << 2) in A, B, C; scales and d kept", () => {
    const rand = rng(77);
    const block = new Uint8Array(2 * BLOCK);
    for (let i = 0; i < block.length; i++) block[i] = (rand() * 256) | 0;
    const packed = block.slice();
    packQ3K(packed, 0, 1, 512);
    for (let b = 0; b < 2; b++) {
      const at = b * BLOCK;
      expect(packed.subarray(at + 96, at + 110)).toEqual(block.subarray(at + 96, at + 110));
      // weight 16j + l by the format's definition (ggml's dequantize_row_q3_K order)
      const u = (j: number, l: number) => {
        const idx = 16 * j + l, half = idx >> 7, r = idx & 127, shiftPair = r >> 5, ll = r & 31;
        const low2 = (block[at + 32 + 32 * half + ll] >> (2 * shiftPair)) & 3;
        const high = (block[at + ll] >> (4 * half + shiftPair)) & 1;
        return low2 | (high << 2);
      };
      for (let s = 0; s < 2; s++) {
        for (let l = 0; l < 16; l++) {
          const A = packed[at + 48 * s + l], B = packed[at + 48 * s + 16 + l], C = packed[at + 48 * s + 32 + l];
          const j = 8 * s;
          expect([A & 7, (A >> 3) & 7, B & 7, (B >> 3) & 7, C & 7, (C >> 3) & 7, (A >> 6) | (((B >> 6) & 1) << 2), (B >> 7) | ((C >> 6) << 1)])
            .toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((g) => u(j + g, l)));
        }
      }
    }
  });

  it("refuses what packable() refuses", () => {
    expect(packable(GGMLType.Q3_K, 3, 512)).toBe(true);
    expect(packable(GGMLType.Q3_K, 3, 500)).toBe(false);
    expect(packable(GGMLType.Q2_K, 3, 512)).toBe(false);
    expect(() => packQ3K(new Uint8Array(BLOCK), 0, 1, 128)).toThrow(RangeError);
  });
});

describe("packQ5K", () => {
  it("lays out a block as q5_k.ts says: low weight | high weight's low 3 bits << 5 in qs, the high weight's top 2 bits in qh; d, dmin, scales kept", () => {
    const rand = rng(78);
    const block = new Uint8Array(2 * 176 + 3);
    for (let i = 0; i < block.length; i++) block[i] = (rand() * 256) | 0;
    const packed = block.slice();
    packQ5K(packed, 3, 1, 512); // an odd offset: the packer must not need alignment
    for (let b = 0; b < 2; b++) {
      const at = 3 + b * 176;
      expect(packed.subarray(at, at + 16)).toEqual(block.subarray(at, at + 16));
      // weight l of sub-block j by the format's definition (ggml's dequantize_row_q5_K)
      const q = (j: number, l: number) => {
        const c = j >> 1, nib = (block[at + 48 + 32 * c + l] >> (4 * (j & 1))) & 15;
        return nib | (((block[at + 16 + l] >> j) & 1) << 4);
      };
      for (let c = 0; c < 4; c++) {
        for (let l = 0; l < 32; l++) {
          const byte = packed[at + 48 + 32 * c + l];
          expect([byte & 31, (byte >> 5) | (((packed[at + 16 + l] >> (2 * c)) & 3) << 3)]).toEqual([q(2 * c, l), q(2 * c + 1, l)]);
        }
      }
    }
    expect(packable(GGMLType.Q5_K, 2, 512)).toBe(true);
    expect(packable(GGMLType.Q4_K, 2, 512)).toBe(false);
    expect(() => packQ5K(new Uint8Array(176), 0, 1, 128)).toThrow(RangeError);
  });
});

describe("packQ6K", () => {
  it("lays out a block as q6_k.ts says: sub-blocks 0-11 in bits 0-5 of twelve vectors, 12-15 in their bits 6-7; scales and d kept", () => {
    const rand = rng(80);
    const block = new Uint8Array(2 * 210 + 3);
    for (let i = 0; i < block.length; i++) block[i] = (rand() * 256) | 0;
    const packed = block.slice();
    packQ6K(packed, 3, 1, 512); // an odd offset: the packer must not need alignment
    for (let b = 0; b < 2; b++) {
      const at = 3 + b * 210;
      expect(packed.subarray(at + 192, at + 210)).toEqual(block.subarray(at + 192, at + 210));
      // weight l of sub-block j by the format's definition (ggml's dequantize_row_q6_K)
      const q = (j: number, l: number) => {
        const idx = 16 * j + l, half = idx >> 7, r = idx & 127, part = r >> 5, ll = r & 31;
        const nib = (block[at + 64 * half + 32 * (part & 1) + ll] >> (4 * (part >> 1))) & 15;
        return nib | (((block[at + 128 + 32 * half + ll] >> (2 * part)) & 3) << 4);
      };
      for (let l = 0; l < 16; l++) {
        const v = (j: number) => packed[at + 16 * j + l];
        expect(Array.from({ length: 12 }, (_, j) => v(j) & 63)).toEqual(Array.from({ length: 12 }, (_, j) => q(j, l)));
        expect([0, 1, 2, 3].map((m) => (v(3 * m) >> 6) | ((v(3 * m + 1) >> 6) << 2) | ((v(3 * m + 2) >> 6) << 4)))
          .toEqual([12, 13, 14, 15].map((j) => q(j, l)));
      }
    }
    expect(packed.subarray(0, 3)).toEqual(block.subarray(0, 3));
    expect(packable(GGMLType.Q6_K, 2, 512)).toBe(true);
    expect(packable(GGMLType.Q6_K, 2, 384)).toBe(false);
    expect(() => packQ6K(new Uint8Array(210), 0, 1, 128)).toThrow(RangeError);
  });
});

describe("pack_q3_k, pack_q5_k and pack_q6_k", () => {
  const cases = (["simd128", "relaxed-simd"] as const).flatMap((build) =>
    ([["q3_k", 110, packQ3K], ["q5_k", 176, packQ5K], ["q6_k", 210, packQ6K]] as const).map(([name, bytes, js]) => [build, name, bytes, js] as const));
  it.for(cases)("%s pack_%s: the kernels' packer writes the JavaScript packer's bytes, in place, at any offset", async ([build, name, bytes, js], ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const memory = createSharedMemory(8);
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as unknown as Kernels;
    const blocks = 37, W = 65536 + 3; // an odd offset
    expectInPlaceWriter(memory, rng(3303), W, bytes * blocks, (u8, at) => js(u8, at, 1, 256 * blocks), () => K[`pack_${name}`](W, blocks));
  });
});

describe("pack_q8_0", () => {
  it.for(["simd128", "relaxed-simd"] as const)("%s: writes packQ8_0's bytes, in place, at an odd offset, through the scratch only", async (build, ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const memory = createSharedMemory(8);
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as unknown as Kernels;
    const rows = 12, cols = 160, n = rows * (cols / 32) * 34, W = 65536 + 3; // an odd offset
    const S = W + n + 4096;
    expectInPlaceWriter(memory, rng(3305), W, n, (u8, at) => packQ8_0(u8, at, rows, cols), () => K.pack_q8_0(W, rows, cols, S),
      { at: S, used: 4 * (cols / 32) * 34, bytes: matmulScratchBytes(cols) });
  });
});

describe("dequantize_q6_kp", () => {
  it.for(["simd128", "relaxed-simd"] as const)("%s: every row of a packed matrix as dequantize_q6_k gives it from the file, bit for bit", async (build, ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const memory = createSharedMemory(8);
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as unknown as Kernels;
    const rand = rng(3302);
    const rows = 5, k = 768, rowBytes = (k / 256) * 210;
    const W = 65536, WP = W + rows * rowBytes + 64, A = WP + rows * rowBytes + 64, B = A + 4 * k + 64;
    const u8 = new Uint8Array(memory.buffer), dv = new DataView(memory.buffer);
    for (let i = 0; i < rows * rowBytes; i++) u8[W + i] = (rand() * 256) | 0;
    for (let b = 0; b < rows * k / 256; b++) dv.setUint16(W + 210 * b + 208, scaleHalf(rand), true);
    u8.copyWithin(WP, W, W + rows * rowBytes);
    packQ6K(u8, WP, rows, k);
    for (let r = 0; r < rows; r++) {
      u8.fill(0xa5, A, B + 4 * k);
      K.dequantize_q6_k(W + r * rowBytes, A, k);
      K.dequantize_q6_kp(WP + r * rowBytes, B, k);
      expect(new Uint32Array(memory.buffer, B, k), `row ${r}`).toEqual(new Uint32Array(memory.buffer, A, k));
    }
  });
});

describe("the loader", () => {
  it.for(["Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K untied", "Q8_0", "Q8_0 untied"])("packs the Q3_K, Q5_K, Q6_K and Q8_0 matmul weights of a %s file (token_embd only as a Q8_0 or Q6_K LM head tied to it, never with the reference kernels), and the logits match the scalar reference kernels'", async (mix) => {
    const vocabulary = await readQwen2Vocabulary();
    // vocab 513: 516 rows of token_embd (3 special tokens), whole groups of four for Q8_0's layout
    const untied = mix.endsWith(" untied"), name = mix.split(" ")[0];
    const shape = { ...QWEN2_PRESETS.tiny, hidden: 256, ffn: 512, heads: 4, kvHeads: 2, tied: !untied, vocab: 513 };
    const bytes = await writeGGUFBytes(name === "Q8_0"
      ? synthQwen2({ shape, vocabulary, type: "Q8_0", embeddingType: "Q8_0", seed: 5 }) : synthQwen2Mix({ shape, vocabulary, mix: name as "Q3_K_M" | "Q4_K_M" | "Q5_K_M" | "Q6_K", seed: 5 }));
    const fast = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 8 });
    const ref = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 8, reference: true });
    try {
      const L = fast.forward.layout;
      const all = L.layers.flatMap((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]);
      const main = { Q3_K_M: GGMLType.Q3_K, Q4_K_M: GGMLType.Q6_K, Q5_K_M: GGMLType.Q5_K, Q6_K: GGMLType.Q6_K, Q8_0: GGMLType.Q8_0 }[name]!;
      expect(all.filter((m) => m.type === main).length).toBeGreaterThan(0);
      const packs = (m: { type: number; rows: number }) => m.type === GGMLType.Q3_K || m.type === GGMLType.Q5_K ||
        m.type === GGMLType.Q6_K || (m.type === GGMLType.Q8_0 && m.rows % 4 === 0);
      for (const m of [...all, L.output]) expect(m.packed, `type ${m.type}, rows ${m.rows}`).toBe(packs(m) ? true : undefined);
      // get_rows reads token_embd: packed only when it is a tied Q8_0 or Q6_K LM head (then the same bytes)
      const tied = L.output.offset === L.tokenEmbd.offset;
      expect(tied).toBe(!untied);
      const reader = L.tokenEmbd.type === GGMLType.Q8_0 || L.tokenEmbd.type === GGMLType.Q6_K;
      expect(L.tokenEmbd.packed).toBe(tied && packs(L.tokenEmbd) && reader ? true : undefined);
      if (name === "Q8_0") expect([L.output.type, L.output.rows % 4, L.output.packed]).toEqual([GGMLType.Q8_0, 0, true]);
      else expect([L.output.type, L.output.packed]).toEqual([GGMLType.Q6_K, true]); // llama-quantize's mixes: a Q6_K output
      const R = ref.forward.layout;
      expect([...R.layers.flatMap((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]), R.output, R.tokenEmbd].some((m) => m.packed)).toBe(false);
      const tokens = prompt(6);
      const a = await fast.forward.step(tokens, 0), b = await ref.forward.step(tokens, 0);
      let worst = 0;
      const scale = b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / scale);
      console.log(`packed ${mix} model vs scalar reference kernels: max |Δ| / max|logit| ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-4);
    } finally {
      await fast.dispose();
      await ref.dispose();
    }
  });
});

describe("the loader, a MoE model", () => {
  it.for(["Q4_0", "Q8_0", "Q6_K", "Q5_K_M"])("gives a %s qwen2moe file's expert tensors the x4 / packed layout of their type (every slab as a matrix), and the logits match the scalar reference kernels'", async (name) => {
    const vocabulary = await readQwen2Vocabulary();
    // 8 experts of 256 x 256 (whole K-quant blocks), 2 used, a shared expert; vocab 513 (516 rows: whole groups of four)
    const shape = { ...QWEN2_PRESETS["tiny-moe"], hidden: 256, ffn: 512, heads: 4, kvHeads: 2, vocab: 513,
      moe: { experts: 8, expertsUsed: 2, expertFfn: 256, sharedFfn: 512 } };
    const bytes = await writeGGUFBytes(name === "Q4_0" || name === "Q8_0"
      ? synthQwen2({ shape, vocabulary, type: name, embeddingType: name, seed: 6 }) : synthQwen2Mix({ shape, vocabulary, mix: name as "Q6_K" | "Q5_K_M", seed: 6 }));
    const fast = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 8 });
    const ref = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 8, reference: true });
    try {
      const experts = fast.forward.layout.layers.flatMap((l) => l.moe ? [l.moe.gateExps, l.moe.upExps, l.moe.downExps] : []);
      expect(experts.length).toBe(3 * shape.layers);
      for (const m of experts) {
        expect(m.experts, `type ${m.type}`).toBe(8);
        if (m.type === GGMLType.Q4_0) expect([m.x4, m.packed]).toEqual([true, undefined]);
        else expect([m.x4, m.packed], `type ${m.type}`).toEqual([undefined, packable(m.type, m.rows, m.cols) ? true : undefined]);
      }
      expect(experts.some((m) => m.x4 || m.packed)).toBe(true);
      const refExperts = ref.forward.layout.layers.flatMap((l) => l.moe ? [l.moe.gateExps, l.moe.upExps, l.moe.downExps] : []);
      expect(refExperts.some((m) => m.x4 || m.packed)).toBe(false);
      const tokens = prompt(6);
      const a = await fast.forward.step(tokens, 0), b = await ref.forward.step(tokens, 0);
      let worst = 0;
      const scale = b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / scale);
      console.log(`MoE ${name} model, experts laid out vs scalar reference kernels: max |Δ| / max|logit| ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-4);
    } finally {
      await fast.dispose();
      await ref.dispose();
    }
  });
});
