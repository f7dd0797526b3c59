// The two kernel builds (SIMD128 and relaxed SIMD) and how compute/kernels/module.ts picks one: the
// relaxed build must agree with the SIMD128 one within f32 rounding where the runtime runs it, and any
// doubt must fall back to SIMD128. Where the runtime validates relaxed SIMD, the relaxed build must be
// the one taken. Node 20 does not validate it by default: the relaxed build's tests are skipped by the
// runner there (the "relaxed-simd" vitest project runs them with the flag, and fails where it cannot).
import { describe, expect, it } from "vitest";
import type { TestKernels } from "./harness";
import {
  chooseKernels, compileKernelBuild, PROBED, createSharedMemory, instantiateKernels, kernelBuild, kernelChoice, probeKernels,
  relaxedSimdValidates, type Kernels,
} from "../../compute/kernels/module";
import { checkedKernelBuild, requireRelaxedSimd } from "../kernel-build";
import { gaussian, rng } from "./harness";
import { matmulScratchBytes } from "../../compute/kernels/dispatch";

/** A module whose exports `names` are functions of nine i32 that do nothing. */
function doNothingModule(names: string[]): WebAssembly.Module {
  const bytes: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const section = (id: number, body: number[]) => bytes.push(id, ...leb(body.length), ...body);
  const leb = (n: number) => { const out: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n); return out; };
  section(1, [0x01, 0x60, 0x09, ...Array(9).fill(0x7f), 0x00]); // type 0: (i32 x 9) -> ()
  section(3, [...leb(names.length), ...names.map(() => 0x00)]);
  const exports: number[] = [...leb(names.length)];
  names.forEach((name, i) => exports.push(...leb(name.length), ...[...name].map((c) => c.charCodeAt(0)), 0x00, ...leb(i)));
  section(7, exports);
  section(10, [...leb(names.length), ...names.flatMap(() => [0x02, 0x00, 0x0b])]); // empty bodies
  return new WebAssembly.Module(new Uint8Array(bytes));
}

const QUANTIZED = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"];

describe("choosing the kernel build", () => {
  it("takes SIMD128 when the runtime does not validate relaxed SIMD", async () => {
    const plain = await compileKernelBuild("simd128");
    let compiled = false;
    const choice = await chooseKernels(plain, { validates: () => false, relaxed: async () => { compiled = true; return plain; } });
    expect(choice.build).toBe("simd128");
    expect(choice.module).toBe(plain);
    expect(compiled).toBe(false);
  });

  it("takes SIMD128 when the probe finds a difference", async () => {
    const plain = await compileKernelBuild("simd128");
    const wrong = doNothingModule(QUANTIZED.map((t) => `matmul_${t}`));
    const mismatch = await probeKernels(plain, wrong);
    console.log(`probe of a module that computes nothing: ${mismatch}`);
    expect(mismatch).toMatch(/^matmul_q4_0 /);
    const choice = await chooseKernels(plain, { validates: () => true, relaxed: async () => wrong });
    expect(choice.build).toBe("simd128");
    expect(choice.module).toBe(plain);
    expect(choice.reason).toMatch(/wrong results/);
  });

  it("takes SIMD128 when the relaxed build fails to compile, instantiate or run", async () => {
    const plain = await compileKernelBuild("simd128");
    const failures: (() => Promise<WebAssembly.Module>)[] = [
      async () => { throw new WebAssembly.CompileError("relaxed SIMD is not enabled"); },
      async () => doNothingModule([]), // lacks the matmul exports: the probe throws calling one
    ];
    for (const relaxed of failures) {
      const choice = await chooseKernels(plain, { validates: () => true, relaxed });
      expect(choice.build).toBe("simd128");
      expect(choice.module).toBe(plain);
      expect(choice.reason).toMatch(/failed/);
    }
    const choice = await chooseKernels(plain, { validates: () => { throw new Error("no"); } });
    expect(choice.build).toBe("simd128");
  });

  it("takes the relaxed build when the probe finds it agrees", async () => {
    const plain = await compileKernelBuild("simd128");
    expect(await probeKernels(plain, plain)).toBeUndefined();
    const stand = new WebAssembly.Module(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    const choice = await chooseKernels(plain, { validates: () => true, relaxed: async () => stand, probe: async () => undefined });
    expect(choice.build).toBe("relaxed-simd");
    expect(choice.module).toBe(stand);
  });

  it("kernelModule() is the chosen build's module: the relaxed one wherever the runtime validates relaxed SIMD", async () => {
    const choice = await kernelChoice();
    console.log(`this runtime: relaxed SIMD ${relaxedSimdValidates() ? "validates" : "does not validate"}; ` +
      `kernels ${choice.build}${choice.reason ? ` (${choice.reason})` : ""}`);
    expect(await kernelBuild()).toBe(choice.build);
    // relaxed-simd where the runtime validates it (and, in the relaxed-simd project, that it does)
    expect(await checkedKernelBuild()).toBe(relaxedSimdValidates() ? "relaxed-simd" : "simd128");
  });

  it("the build check fails where relaxed SIMD validates and SIMD128 was taken, or where the relaxed project cannot run it", async () => {
    const stand = new WebAssembly.Module(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    const simd128 = { module: stand, build: "simd128" as const, reason: "the relaxed build computes wrong results: ..." };
    const relaxed = { module: stand, build: "relaxed-simd" as const };
    await expect(checkedKernelBuild(simd128, true, false)).rejects.toThrow(/should be relaxed-simd, but they are simd128 \(the relaxed build computes wrong/);
    await expect(checkedKernelBuild(simd128, true, true)).rejects.toThrow(/should be relaxed-simd/);
    await expect(checkedKernelBuild(simd128, false, true)).rejects.toThrow(/relaxed-simd vitest project runs where relaxed SIMD does not validate/);
    await expect(checkedKernelBuild(relaxed, false, false)).rejects.toThrow(/should be simd128/);
    expect(await checkedKernelBuild(simd128, false, false)).toBe("simd128");
    expect(await checkedKernelBuild(relaxed, true, true)).toBe("relaxed-simd");
  });
});

/** A block scale (or min) as f16 bits: mostly normal halves of either sign, a quarter subnormal (as
 *  the K-quants' super-block scales of real weights often are) and a few zeros of either sign. */
function scaleHalf(rand: () => number): number {
  const sign = rand() < 0.3 ? 0x8000 : 0, r = rand();
  if (r < 0.25) return sign | (1 + ((rand() * 1023) | 0));
  if (r < 0.28) return sign;
  return sign | (0x1c00 + ((rand() * 0x800) | 0));
}

describe("the relaxed build agrees with the SIMD128 build", () => {
  // name, block, bytes per block, activation converter, activation bytes per block, f16 scale offsets:
  // every quantized type, as the run-time probe checks them.
  const TYPES = PROBED;

  it.for(TYPES)("matmul_%s: every token count 1..19, rows 3..38 of 41, f32 rounding apart; with a scratch and without, bit for bit", async ([name, block, bytes, convert, xBytes, halves], ctx) => {
    requireRelaxedSimd(ctx);
    const memory = createSharedMemory(64);
    const plain = await instantiateKernels(memory, await compileKernelBuild("simd128"));
    // where the runtime validates relaxed SIMD, the relaxed build must compile: a failure fails the test
    const relaxed: Kernels = await instantiateKernels(memory, await compileKernelBuild("relaxed-simd"));
    const rand = rng(4242 + bytes), normal = gaussian(rand);
    const rows = 41, rowStart = 3, rowEnd = 38, k = block === 32 ? 320 : 768, nTokMax = 19;
    const nb = k / block, xStride = nb * xBytes + 12, outStride = rows + 5;
    const u8 = () => new Uint8Array(memory.buffer);
    const dv = () => new DataView(memory.buffer);
    const after = (p: number, n: number) => Math.ceil((p + n) / 64) * 64 + 64;
    const W = 65536, XF = after(W, rows * nb * bytes), X = after(XF, 4 * k * nTokMax);
    const OUT_P = after(X, xStride * nTokMax), OUT_R = after(OUT_P, 4 * outStride * nTokMax);
    const OUT_S = after(OUT_R, 4 * outStride * nTokMax), SCRATCH = after(OUT_S, 4 * outStride * nTokMax);
    for (let i = 0; i < rows * nb * bytes; i++) u8()[W + i] = (rand() * 256) | 0;
    for (let b = 0; b < rows * nb; b++) {
      const p = W + b * bytes;
      if (name === "q8_0") for (let j = 2; j < 34; j++) if (u8()[p + j] === 0x80) u8()[p + j] = 0x81; // ggml never writes -128
      for (const h of halves) dv().setUint16(p + h, scaleHalf(rand), true);
    }
    for (let i = 0; i < k * nTokMax; i++) dv().setFloat32(XF + 4 * i, normal() * (rand() < 0.05 ? 20 : 1), true);
    for (let t = 0; t < nTokMax; t++) plain[convert](XF + 4 * k * t, X + xStride * t, k);
    let worst = 0;
    for (let nTok = 1; nTok <= nTokMax; nTok++) {
      u8().fill(0xa5, OUT_P, SCRATCH + matmulScratchBytes(k));
      plain[`matmul_${name}`](W, X, OUT_P, k, rowStart, rowEnd, nTok, xStride, outStride, SCRATCH);
      relaxed[`matmul_${name}`](W, X, OUT_R, k, rowStart, rowEnd, nTok, xStride, outStride, 0);
      relaxed[`matmul_${name}`](W, X, OUT_S, k, rowStart, rowEnd, nTok, xStride, outStride, SCRATCH);
      // the scratch (garbage before the call) changes where the tiles find roffset * sum(x), never a bit;
      // with it, Q8_0's tiles of eight take the i32 dot-add where it is a full u8 x i8 product (Node 24
      // on AVX-VNNI: dot_add_exact in common.ts), without it the SIMD128 tiles: the same bits
      const r = new Uint32Array(memory.buffer, OUT_R, outStride * nTokMax);
      const s = new Uint32Array(memory.buffer, OUT_S, outStride * nTokMax);
      const differ = r.findIndex((v, i) => v !== s[i]);
      expect(differ, `${name} nTok=${nTok}: first output that differs with a scratch`).toBe(-1);
      const a = new Float32Array(memory.buffer, OUT_P, outStride * nTokMax);
      const b = new Float32Array(memory.buffer, OUT_R, outStride * nTokMax);
      const scale = a.subarray(0, outStride * nTok).reduce((m, v, i) => (i % outStride >= rowStart && i % outStride < rowEnd ? Math.max(m, Math.abs(v)) : m), 0);
      for (let i = 0; i < outStride * nTokMax; i++) {
        const inside = i < outStride * nTok && i % outStride >= rowStart && i % outStride < rowEnd;
        if (!inside) { expect(Object.is(a[i], b[i]), `${name} nTok=${nTok}: output ${i} written`).toBe(true); continue; }
        const diff = Math.abs(a[i] - b[i]) / scale;
        worst = Math.max(worst, diff);
        if (!(diff <= 1e-6)) throw new Error(`matmul_${name} nTok=${nTok} token ${Math.floor(i / outStride)} row ${i % outStride}: relaxed ${b[i]}, SIMD128 ${a[i]}`);
      }
    }
    console.log(`matmul_${name}: relaxed vs SIMD128, largest |diff| / max|out| ${worst.toExponential(2)}`);
  });
});

describe("one token: the matmuls that sum as their scalar reference do so bit for bit", () => {
  // The one-token paths that fold each block's integer sum before the f32 multiply-add (see
  // dot_b32_rows4 in assembly/quants/common.ts, rowDot1Relaxed in kquants.ts and q6_k.ts) sum
  // exactly as matmul_T_ref does, block after block: any change to their order shows here.
  const EXACT: Record<"simd128" | "relaxed-simd", string[]> = {
    simd128: ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"],
    "relaxed-simd": ["q4_0", "q4_1", "q5_0", "q8_0", "q5_1", "iq4_nl", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"],
  };
  const cases = (["simd128", "relaxed-simd"] as const).flatMap((build) => EXACT[build].map((name) => [build, name] as const));

  it.for(cases)("%s matmul_%s: one token, rows 3..38 of 41 (four quarters and the rows left), equal to _ref", async ([build, name], ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const spec = PROBED.find(([suffix]) => suffix === name);
    expect(spec, `${name} in PROBED`).toBeDefined();
    const [, block, bytes, convert, xBytes, halves] = spec!;
    const memory = createSharedMemory(64);
    // By name built from the type: the typed exports plus lookup by string, as the test harness does.
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as TestKernels;
    const rand = rng(777 + bytes), normal = gaussian(rand);
    const rows = 41, rowStart = 3, rowEnd = 38, k = block === 32 ? 352 : 1024;
    const nb = k / block, xStride = nb * xBytes;
    const u8 = () => new Uint8Array(memory.buffer);
    const dv = () => new DataView(memory.buffer);
    const after = (p: number, n: number) => Math.ceil((p + n) / 64) * 64 + 64;
    const W = 65536, XF = after(W, rows * nb * bytes), X = after(XF, 4 * k);
    const OUT = after(X, xStride), OUT_REF = after(OUT, 4 * rows);
    for (let i = 0; i < rows * nb * bytes; i++) u8()[W + i] = (rand() * 256) | 0;
    for (let b = 0; b < rows * nb; b++) for (const h of halves) dv().setUint16(W + b * bytes + h, scaleHalf(rand), true);
    for (let i = 0; i < k; i++) dv().setFloat32(XF + 4 * i, normal() * (rand() < 0.05 ? 20 : 1), true);
    K[convert](XF, X, k);
    u8().fill(0xa5, OUT, OUT_REF + 4 * rows);
    K[`matmul_${name}`](W, X, OUT, k, rowStart, rowEnd, 1, xStride, rows);
    K[`matmul_${name}_ref`](W, X, OUT_REF, k, rowStart, rowEnd, 1, xStride, rows);
    const a = new Float32Array(memory.buffer, OUT, rows), r = new Float32Array(memory.buffer, OUT_REF, rows);
    let compared = 0;
    for (let i = rowStart; i < rowEnd; i++, compared++) {
      expect(Number.isFinite(r[i]), `${name} row ${i}: reference finite`).toBe(true);
      expect(Object.is(a[i], r[i]), `${build} matmul_${name} row ${i}: ${a[i]}, _ref ${r[i]}`).toBe(true);
    }
    expect(compared).toBe(rowEnd - rowStart);
  });
});

describe("a token's outputs do not depend on the tokens beside it", () => {
  // The engine batches the decode tokens of several requests into one matmul (and prefill chunks
  // beside them), so the tile a token lands in depends on timing; its greedy output may not. Every
  // quantized matmul, both builds, with a scratch and without: column t of an nTok-token call equals
  // the one-token call on token t alone, bit for bit.
  const cases = (["simd128", "relaxed-simd"] as const).flatMap((build) => PROBED.map((spec) => [build, spec[0]] as const));

  it.for(cases)("%s matmul_%s: nTok 2..19 against one token at a time, rows 3..38 of 41", async ([build, name], ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const [, block, bytes, convert, xBytes, halves] = PROBED.find(([suffix]) => suffix === name)!;
    const memory = createSharedMemory(64);
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as TestKernels;
    const rand = rng(991 + bytes), normal = gaussian(rand);
    const rows = 41, rowStart = 3, rowEnd = 38, k = block === 32 ? 320 : 768, nTokMax = 19;
    const nb = k / block, xStride = nb * xBytes + 6, outStride = rows + 3;
    const u8 = () => new Uint8Array(memory.buffer);
    const dv = () => new DataView(memory.buffer);
    const after = (p: number, n: number) => Math.ceil((p + n) / 64) * 64 + 64;
    const W = 65536, XF = after(W, rows * nb * bytes), X = after(XF, 4 * k * nTokMax);
    const OUT = after(X, xStride * nTokMax), ONE = after(OUT, 4 * outStride * nTokMax), SCRATCH = after(ONE, 4 * outStride);
    for (let i = 0; i < rows * nb * bytes; i++) u8()[W + i] = (rand() * 256) | 0;
    for (let b = 0; b < rows * nb; b++) {
      const p = W + b * bytes;
      if (name === "q8_0") for (let j = 2; j < 34; j++) if (u8()[p + j] === 0x80) u8()[p + j] = 0x81; // ggml never writes -128
      for (const h of halves) dv().setUint16(p + h, scaleHalf(rand), true);
    }
    for (let i = 0; i < k * nTokMax; i++) dv().setFloat32(XF + 4 * i, normal() * (rand() < 0.05 ? 20 : 1), true);
    for (let t = 0; t < nTokMax; t++) K[convert](XF + 4 * k * t, X + xStride * t, k);
    let compared = 0;
    for (const scratch of [0, SCRATCH]) {
      const alone: Float32Array[] = [];
      for (let t = 0; t < nTokMax; t++) {
        K[`matmul_${name}`](W, X + xStride * t, ONE, k, rowStart, rowEnd, 1, xStride, outStride, scratch);
        alone.push(new Float32Array(memory.buffer, ONE, outStride).slice());
      }
      for (let nTok = 2; nTok <= nTokMax; nTok++) {
        u8().fill(0xa5, OUT, OUT + 4 * outStride * nTok);
        K[`matmul_${name}`](W, X, OUT, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
        const out = new Float32Array(memory.buffer, OUT, outStride * nTok);
        for (let t = 0; t < nTok; t++) {
          for (let r = rowStart; r < rowEnd; r++, compared++) {
            const a = out[t * outStride + r], b = alone[t][r];
            if (!Object.is(a, b)) throw new Error(`${build} matmul_${name} scratch=${scratch !== 0} nTok=${nTok} token ${t} row ${r}: ${a}, alone ${b}`);
          }
        }
      }
    }
    expect(compared).toBe(2 * (rowEnd - rowStart) * ((nTokMax * (nTokMax + 1)) / 2 - 1));
  });

  // the dense types: k = 323 (not a multiple of eight: the scalar tail), 41 rows (four quarters and one left)
  const DENSE = [["f32", 4, null], ["f16", 2, "convert_f32_f16"], ["bf16", 2, "convert_f32_bf16"]] as const;
  const dense = (["simd128", "relaxed-simd"] as const).flatMap((build) => DENSE.map((spec) => [build, spec[0]] as const));

  it.for(dense)("%s matmul_%s: nTok 2..19 against one token at a time, k = 323", async ([build, name], ctx) => {
    if (build === "relaxed-simd") requireRelaxedSimd(ctx);
    const [, size, convert] = DENSE.find(([n]) => n === name)!;
    const memory = createSharedMemory(64);
    const K = await instantiateKernels(memory, await compileKernelBuild(build)) as TestKernels;
    const rand = rng(313 + size), normal = gaussian(rand);
    const rows = 41, rowStart = 0, rowEnd = 41, k = 323, nTokMax = 19;
    const xStride = k * size + 6, outStride = rows + 3;
    const dv = () => new DataView(memory.buffer);
    const after = (p: number, n: number) => Math.ceil((p + n) / 64) * 64 + 64;
    const WF = 65536, W = after(WF, 4 * rows * k), XF = after(W, rows * k * size), X = after(XF, 4 * k * nTokMax);
    const OUT = after(X, xStride * nTokMax), ONE = after(OUT, 4 * outStride * nTokMax);
    for (let i = 0; i < rows * k; i++) dv().setFloat32(WF + 4 * i, normal(), true);
    for (let i = 0; i < k * nTokMax; i++) dv().setFloat32(XF + 4 * i, normal() * (rand() < 0.05 ? 20 : 1), true);
    const put = (src: number, dst: number, n: number) => {
      if (convert) K[convert](src, dst, n);
      else new Uint8Array(memory.buffer, dst, 4 * n).set(new Uint8Array(memory.buffer, src, 4 * n));
    };
    put(WF, W, rows * k);
    for (let t = 0; t < nTokMax; t++) put(XF + 4 * k * t, X + xStride * t, k);
    const alone: Float32Array[] = [];
    for (let t = 0; t < nTokMax; t++) {
      K[`matmul_${name}`](W, X + xStride * t, ONE, k, rowStart, rowEnd, 1, xStride, outStride, 0);
      alone.push(new Float32Array(memory.buffer, ONE, outStride).slice());
    }
    let compared = 0;
    for (let nTok = 2; nTok <= nTokMax; nTok++) {
      new Uint8Array(memory.buffer, OUT, 4 * outStride * nTok).fill(0xa5);
      K[`matmul_${name}`](W, X, OUT, k, rowStart, rowEnd, nTok, xStride, outStride, 0);
      const out = new Float32Array(memory.buffer, OUT, outStride * nTok);
      for (let t = 0; t < nTok; t++) {
        for (let r = rowStart; r < rowEnd; r++, compared++) {
          const a = out[t * outStride + r], b = alone[t][r];
          if (!Object.is(a, b)) throw new Error(`${build} matmul_${name} nTok=${nTok} token ${t} row ${r}: ${a}, alone ${b}`);
        }
      }
    }
    expect(compared).toBe((rowEnd - rowStart) * ((nTokMax * (nTokMax + 1)) / 2 - 1));
  });
});
