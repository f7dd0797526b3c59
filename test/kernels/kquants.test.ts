// K-quant kernels (Q2_K Q3_K Q4_K Q5_K Q6_K against Q8_K activations): the SIMD matmul against the
// scalar reference on random blocks, the reference against an f64 dot of the dequantized operands,
// quantize_q8_K against its scalar twin, and the dequantizers against the TypeScript ones.
import { beforeAll, describe, expect, it } from "vitest";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { quantizeQ8_KActivations } from "../../weights/quant/activations";
import { dequantizeRow, vecDot } from "../../weights/quant/index";
import { dequantize_q2_K } from "../../weights/quant/q2_k";
import { dequantize_q3_K } from "../../weights/quant/q3_k";
import { dequantize_q4_K } from "../../weights/quant/q4_k";
import { dequantize_q5_K } from "../../weights/quant/q5_k";
import { dequantize_q6_K } from "../../weights/quant/q6_k";
import { describeFixtures, readFixture } from "../fixtures";
import { gaussian, KernelHarness, rng } from "./harness";

interface KType {
  name: string; // kernel suffix
  ggml: string; // ggml type name
  id: number; // ggml type id
  typeSize: number;
  halfOffsets: number[]; // where the block's f16 d (and dmin) live
}

const KTYPES: KType[] = [
  { name: "q2_k", ggml: "Q2_K", id: 10, typeSize: 84, halfOffsets: [80, 82] },
  { name: "q3_k", ggml: "Q3_K", id: 11, typeSize: 110, halfOffsets: [108] },
  { name: "q4_k", ggml: "Q4_K", id: 12, typeSize: 144, halfOffsets: [0, 2] },
  { name: "q5_k", ggml: "Q5_K", id: 13, typeSize: 176, halfOffsets: [0, 2] },
  { name: "q6_k", ggml: "Q6_K", id: 14, typeSize: 210, halfOffsets: [208] },
];

/** The TypeScript dequantizers (weights/quant), the independent decoders the kernels are checked against. */
const TS_DEQUANTIZE: Record<string, (b: Uint8Array, n: number) => Float32Array> = {
  q2_k: dequantize_q2_K, q3_k: dequantize_q3_K, q4_k: dequantize_q4_K, q5_k: dequantize_q5_K, q6_k: dequantize_q6_K,
};

const QK_K = 256;
const Q8K_BYTES = 292;

let H: KernelHarness;
const call = (name: string, ...args: number[]) => H.call(name, ...args);

/** f32 -> f16 bits (round to nearest even), for the small scales written into random blocks. */
function f16Bits(x: number): number {
  const f = new Float32Array([x]);
  const w = new Uint32Array(f.buffer)[0];
  const sign = (w >>> 16) & 0x8000;
  const e = ((w >>> 23) & 0xff) - 112;
  const mant = w & 0x7fffff;
  if (e <= 0 || e >= 31) throw new Error("f16Bits: only normal halves here");
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** Random bytes are valid K-quant blocks once the f16 scales are sane: small random values. */
function randomBlocks(t: KType, nBlocks: number, r: () => number): Uint8Array {
  const b = new Uint8Array(nBlocks * t.typeSize);
  for (let i = 0; i < b.length; i++) b[i] = (r() * 256) | 0;
  for (let i = 0; i < nBlocks; i++) {
    for (const o of t.halfOffsets) {
      const v = (0.001 + 0.02 * r()) * (r() < 0.3 ? -1 : 1);
      const h = f16Bits(v);
      b[i * t.typeSize + o] = h & 0xff;
      b[i * t.typeSize + o + 1] = h >> 8;
    }
  }
  return b;
}

/** Gaussian activations with a few large outliers, as hidden states have. */
function randomActivations(n: number, r: () => number): Float32Array {
  const g = gaussian(r);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = g() * (i % 97 === 0 ? 8 : 1);
  return x;
}

/** Q8_K bytes of x through the kernel's quantize_q8_K. */
function quantizeQ8K(x: Float32Array): Uint8Array {
  const bytes = (x.length / QK_K) * Q8K_BYTES;
  const src = H.put(x), dst = H.alloc(bytes);
  call("quantize_q8_K", src, dst, x.length);
  return H.getBytes(dst, bytes);
}

/** The f64 values a Q8_K row stands for: d * q. */
function dequantQ8K(q: Uint8Array): Float64Array {
  const nb = q.length / Q8K_BYTES;
  const dv = new DataView(q.buffer, q.byteOffset, q.byteLength);
  const out = new Float64Array(nb * QK_K);
  for (let b = 0; b < nb; b++) {
    const d = dv.getFloat32(b * Q8K_BYTES, true);
    for (let j = 0; j < QK_K; j++) out[b * QK_K + j] = d * dv.getInt8(b * Q8K_BYTES + 4 + j);
  }
  return out;
}

function dequantW(t: KType, w: Uint8Array, n: number): Float32Array {
  const src = H.put(w, 1), dst = H.alloc(4 * n);
  call(`dequantize_${t.name}`, src, dst, n);
  return H.getF32(dst, n);
}

// ---- the matmul harness ---------------------------------------------------------------------------

interface Case { rows: number; k: number; rowStart: number; rowEnd: number; nTok: number; xPad: number; outPad: number }

/** Runs matmul_T and matmul_T_ref on the same random operands; returns both outputs, the operands'
 * bytes and their dequantized values. */
function runCase(t: KType, c: Case, seed: number) {
  H.reset();
  const r = rng(seed);
  const nb = c.k / QK_K;
  const wBytes = randomBlocks(t, c.rows * nb, r);
  const xRow = nb * Q8K_BYTES;
  const xStride = xRow + c.xPad;
  const outStride = c.rows + c.outPad;
  const xs: Uint8Array[] = [];
  for (let tk = 0; tk < c.nTok; tk++) xs.push(quantizeQ8K(randomActivations(c.k, r)));
  H.alloc(1, 1);
  const w = H.put(wBytes, 1); // odd placement: the kernels must not assume alignment
  const x = H.alloc(c.nTok * xStride, 1);
  for (let tk = 0; tk < c.nTok; tk++) H.u8(x + tk * xStride, xRow).set(xs[tk]);
  const outFloats = c.nTok * outStride;
  const outSimd = H.alloc(4 * outFloats, 4), outRef = H.alloc(4 * outFloats, 4);
  H.f32(outSimd, outFloats).fill(-12345);
  H.f32(outRef, outFloats).fill(-12345);
  call(`matmul_${t.name}`, w, x, outSimd, c.k, c.rowStart, c.rowEnd, c.nTok, xStride, outStride);
  call(`matmul_${t.name}_ref`, w, x, outRef, c.k, c.rowStart, c.rowEnd, c.nTok, xStride, outStride);
  const simd = H.getF32(outSimd, outFloats);
  const ref = H.getF32(outRef, outFloats);
  const wf = dequantW(t, wBytes, c.rows * c.k);
  const xf = xs.map(dequantQ8K);
  return { simd, ref, wf, xf, outStride, wBytes, xs };
}

beforeAll(async () => {
  H = await KernelHarness.create(64);
});

/** Activations with the cases quantization must get right, block by block; the last three blocks
 * hold non-finite or vanishing values (ggml-defined results that a TypeScript port need not share). */
function awkwardActivations(): Float32Array {
  const r = rng(7);
  const x = randomActivations(256 * 12, r);
  x.fill(0, 256, 512); // block 1: all zero
  x[512 + 10] = 500; x[512 + 200] = -500; // block 2: |max| tie, the first (positive) one wins
  x[768 + 3] = -500; x[768 + 100] = 500; // block 3: the same, negative first
  x[1024 + 77] = 1e30; // block 4: one huge value
  x.fill(0.5, 1280, 1536); // block 5: constant
  for (let i = 1536; i < 1792; i++) x[i] = (i % 101) - 49.5; // block 6: max 127 below, so iscale = -1
  x[1536 + 7] = 127; //                                        and every q is a tie, rounded to even
  x[2304 + 5] = NaN; // block 9: NaN (never the max; quantized to 0)
  x[2560 + 9] = Infinity; // block 10: an infinite max
  for (let i = 2816; i < 3072; i++) x[i] = (r() - 0.5) * 1e-38; // block 11: 127/max overflows
  return x;
}

describe("quantize_q8_K", () => {
  it("SIMD equals the scalar reference bitwise (ties, zero blocks, tiny, huge, NaN and inf)", () => {
    const x = awkwardActivations();
    const n = x.length;
    H.reset();
    const bytes = (n / 256) * Q8K_BYTES;
    const src = H.put(x, 4), a = H.fresh(bytes, 0xaa, 4), b = H.fresh(bytes, 0x55, 4);
    call("quantize_q8_K", src, a, n);
    call("quantize_q8_K_ref", src, b, n);
    const qa = H.getBytes(a, bytes), qb = H.getBytes(b, bytes);
    let diff = 0;
    for (let i = 0; i < qa.length; i++) if (qa[i] !== qb[i]) diff++;
    console.log(`quantize_q8_K: ${n / 256} blocks, ${diff} bytes differ from quantize_q8_K_ref`);
    expect(diff).toBe(0);
    const dv = new DataView(qa.buffer);
    expect(dv.getFloat32(Q8K_BYTES, true)).toBe(0); // the zero block
    expect(dv.getInt8(2 * Q8K_BYTES + 4 + 10)).toBe(-127); // first of the tie is the max: iscale < 0
    expect(dv.getInt8(2 * Q8K_BYTES + 4 + 200)).toBe(127);
    expect(dv.getInt8(3 * Q8K_BYTES + 4 + 3)).toBe(-127);
    expect(dv.getFloat32(3 * Q8K_BYTES, true)).toBeGreaterThan(0);
    expect(dv.getFloat32(6 * Q8K_BYTES, true)).toBe(-1); // block 6: d = 1/iscale
    expect([dv.getInt8(6 * Q8K_BYTES + 4), dv.getInt8(6 * Q8K_BYTES + 5)]).toEqual([28, 28]); // 28.5, 27.5
  });

  it("matches the TypeScript Q8_K quantizer (weights/quant/activations.ts) bitwise", () => {
    const x = awkwardActivations().subarray(0, 256 * 9); // the finite, non-vanishing blocks
    const ours = quantizeQ8K(x);
    const theirs = quantizeQ8_KActivations(x);
    expect(theirs.length).toBe(9 * Q8K_BYTES);
    expect(Buffer.from(ours).equals(Buffer.from(theirs))).toBe(true);
  });
});

const CASES: Case[] = [];
for (const k of [256, 512, 768, 2816]) {
  for (const nTok of [1, 2, 3, 4, 5, 7, 9]) {
    CASES.push({ rows: 7, k, rowStart: 2, rowEnd: 7, nTok, xPad: nTok > 1 ? 36 : 0, outPad: 3 });
  }
}
// more rows than one pass of the many-token tiles (16), an odd count
CASES.push({ rows: 40, k: 512, rowStart: 3, rowEnd: 38, nTok: 11, xPad: 8, outPad: 5 });
// long rows: the kernels take tokens in cache-sized groups (12 here), so 14 tokens span two
CASES.push({ rows: 4, k: 16384, rowStart: 1, rowEnd: 4, nTok: 14, xPad: 4, outPad: 1 });

describe.each(KTYPES)("$ggml", (t) => {
  it("matmul (SIMD) equals matmul_ref within 1e-5 of the row's magnitude; untouched outside the rows", () => {
    let worst = 0;
    let worstAt = "";
    for (const [ci, c] of CASES.entries()) {
      const { simd, ref, wf, xf, outStride } = runCase(t, c, 1000 + ci);
      for (let tk = 0; tk < c.nTok; tk++) {
        for (let row = 0; row < outStride; row++) {
          const i = tk * outStride + row;
          if (row < c.rowStart || row >= c.rowEnd) {
            expect(simd[i]).toBe(-12345);
            expect(ref[i]).toBe(-12345);
            continue;
          }
          let mag = 0;
          for (let j = 0; j < c.k; j++) mag += Math.abs(wf[row * c.k + j] * xf[tk][j]);
          const rel = Math.abs(simd[i] - ref[i]) / mag;
          if (!(rel <= worst)) { worst = rel; worstAt = `k=${c.k} nTok=${c.nTok} token ${tk} row ${row}`; }
        }
      }
    }
    console.log(`${t.ggml}: matmul vs matmul_ref, largest |diff|/sum|w*x| = ${worst.toExponential(2)} (${worstAt})`);
    expect(worst).toBeLessThan(1e-5);
  });

  it("matmul_ref equals the f64 dot of the dequantized operands within f32 rounding", () => {
    let worst = 0;
    for (const [ci, c] of CASES.filter((c) => c.nTok <= 3).entries()) {
      const { ref, wf, xf, outStride } = runCase(t, c, 5000 + ci);
      for (let tk = 0; tk < c.nTok; tk++) {
        for (let row = c.rowStart; row < c.rowEnd; row++) {
          let dot = 0, mag = 0;
          for (let j = 0; j < c.k; j++) {
            dot += wf[row * c.k + j] * xf[tk][j];
            mag += Math.abs(wf[row * c.k + j] * xf[tk][j]);
          }
          worst = Math.max(worst, Math.abs(ref[tk * outStride + row] - dot) / mag);
        }
      }
    }
    console.log(`${t.ggml}: matmul_ref vs f64 dot(dequantize(w), dequantize(x)), largest |diff|/sum|w*x| = ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(2e-6);
  });

  it(`dequantize equals the TypeScript dequantizer (weights/quant/${t.name}.ts) bitwise`, () => {
    const deq = TS_DEQUANTIZE[t.name];
    H.reset();
    const nb = 40;
    const w = randomBlocks(t, nb, rng(77));
    const ours = dequantW(t, w, nb * QK_K);
    const theirs = deq(w, nb * QK_K);
    let diff = 0;
    expect(theirs.length).toBe(nb * QK_K);
    for (let i = 0; i < ours.length; i++) if (!Object.is(ours[i], theirs[i])) diff++;
    expect(diff).toBe(0);
  });
});

describe("extreme blocks (no i16 overflow)", () => {
  it.each(KTYPES)("$ggml: saturated bytes and q8 = ±127 everywhere: matmul = matmul_ref = f64 dot", (t) => {
    const k = 512, rows = 6, nb = k / QK_K;
    for (const sign of [1, -1]) {
      H.reset();
      // rows of constant bytes: every weight and scale at an end of its range
      const w = new Uint8Array(rows * nb * t.typeSize);
      [0x00, 0xff, 0x80, 0x7f, 0x55, 0xaa].forEach((fill, row) => w.fill(fill, row * nb * t.typeSize, (row + 1) * nb * t.typeSize));
      for (let b = 0; b < rows * nb; b++) {
        for (const o of t.halfOffsets) { w[b * t.typeSize + o] = 0x00; w[b * t.typeSize + o + 1] = 0x3c; } // 1.0
      }
      const x = new Float32Array(k).map((_, i) => sign * (i % 3 === 2 ? -1 : 1)); // q8 = ∓127
      const xq = quantizeQ8K(x);
      const wp = H.put(w, 1), xp = H.put(xq, 1), simd = H.alloc(4 * rows, 4), ref = H.alloc(4 * rows, 4);
      call(`matmul_${t.name}`, wp, xp, simd, k, 0, rows, 1, xq.length, rows);
      call(`matmul_${t.name}_ref`, wp, xp, ref, k, 0, rows, 1, xq.length, rows);
      const four = H.alloc(4 * rows * 4, 4);
      const x4 = H.alloc(4 * xq.length, 1);
      for (let tk = 0; tk < 4; tk++) H.u8(x4 + tk * xq.length, xq.length).set(xq);
      call(`matmul_${t.name}`, wp, x4, four, k, 0, rows, 4, xq.length, rows);
      const wf = dequantW(t, w, rows * k), xf = dequantQ8K(xq);
      const a = H.getF32(simd, rows), b = H.getF32(ref, rows), c = H.getF32(four, 4 * rows);
      for (let r = 0; r < rows; r++) {
        let dot = 0, mag = 0;
        for (let j = 0; j < k; j++) { dot += wf[r * k + j] * xf[j]; mag += Math.abs(wf[r * k + j] * xf[j]); }
        const tol = 1e-6 * mag + 1e-30;
        expect(Math.abs(b[r] - dot), `${t.ggml} row ${r} ref`).toBeLessThanOrEqual(tol);
        expect(Math.abs(a[r] - dot), `${t.ggml} row ${r} simd`).toBeLessThanOrEqual(tol);
        for (let tk = 0; tk < 4; tk++) expect(Math.abs(c[tk * rows + r] - dot), `${t.ggml} row ${r} tile`).toBeLessThanOrEqual(tol);
      }
    }
  });
});

describe("against the TypeScript scalar dot products (weights/quant)", () => {
  it.each(KTYPES)("$ggml: matmul_ref = vecDot within f32 rounding", (t) => {
    const c = { rows: 5, k: 2816, rowStart: 0, rowEnd: 5, nTok: 2, xPad: 0, outPad: 0 };
    const { ref, wf, xf, outStride, wBytes, xs } = runCase(t, c, 99);
    const rowBytes = (c.k / QK_K) * t.typeSize;
    for (let tk = 0; tk < c.nTok; tk++) {
      for (let r = 0; r < c.rows; r++) {
        let mag = 0;
        for (let j = 0; j < c.k; j++) mag += Math.abs(wf[r * c.k + j] * xf[tk][j]);
        const theirs = vecDot(t.ggml, wBytes.subarray(r * rowBytes, (r + 1) * rowBytes), xs[tk], c.k);
        expect(Math.abs(ref[tk * outStride + r] - theirs) / mag).toBeLessThan(2e-6);
      }
    }
  });
});

// Largest relative RMS error of dequantize(T) against F32.gguf (1.5 times the largest measured over
// the mini files' tensors, noted beside it).
const FIXTURE_BOUNDS: Record<string, number> = {
  Q2_K: 0.45, // 0.297
  Q3_K: 0.23, // 0.152
  Q4_K: 0.11, // 0.0719
  Q5_K: 0.055, // 0.0364
  Q6_K: 0.027, // 0.0179
};
const FIXTURE_FILES = ["Q2_K-pure", "Q3_K-pure", "Q4_K-pure", "Q5_K-pure", "Q6_K-pure", "Q4_0", "Q4_K_M"];

describeFixtures("K-quant tensors of the llama.cpp fixtures (mini)", () => {
  const open = (name: string) => parseGGUFBytes(readFixture("mini", `${name}.gguf`));
  for (const file of FIXTURE_FILES) {
    it(`${file}.gguf: dequantize = TypeScript decoder and ≈ F32.gguf; matmul = matmul_ref on the real rows`, async () => {
      const f32 = open("F32");
      const g = open(file);
      const tensors = g.tensors.filter((info) => KTYPES.some((t) => t.id === info.type));
      expect(tensors.length).toBeGreaterThan(0);
      let worstRel = 0, worstName = "";
      for (const info of tensors) {
        const t = KTYPES.find((x) => x.id === info.type)!;
        H.reset();
        const [k, rows] = info.dims;
        const n = k * rows;
        const bytes = Uint8Array.from(await g.readTensor(info));
        const ours = dequantW(t, bytes, n);
        const theirs = dequantizeRow(t.ggml, bytes, n);
        let diff = 0;
        for (let i = 0; i < n; i++) if (!Object.is(ours[i], theirs[i])) diff++;
        expect(diff, `${file} ${info.name}: values that differ from the TypeScript decoder`).toBe(0);
        const ref = new Float32Array(Uint8Array.from(await f32.readTensor(info.name)).buffer);
        let se = 0, ss = 0;
        for (let i = 0; i < n; i++) { se += (ours[i] - ref[i]) ** 2; ss += ref[i] ** 2; }
        const rel = Math.sqrt(se / ss);
        if (rel > worstRel) { worstRel = rel; worstName = `${info.name} (${t.ggml})`; }
        expect(rel, `${file} ${info.name}: relative RMS error vs F32`).toBeLessThan(FIXTURE_BOUNDS[t.ggml]);
        // the SIMD matmul against the reference on the real rows, three tokens
        const r = rng(5);
        const xq = [0, 1, 2].map(() => quantizeQ8K(randomActivations(k, r)));
        const w = H.put(bytes, 1), x = H.alloc(3 * xq[0].length, 1);
        xq.forEach((q, i) => H.u8(x + i * q.length, q.length).set(q));
        const a = H.alloc(12 * rows, 4), b = H.alloc(12 * rows, 4);
        call(`matmul_${t.name}`, w, x, a, k, 0, rows, 3, xq[0].length, rows);
        call(`matmul_${t.name}_ref`, w, x, b, k, 0, rows, 3, xq[0].length, rows);
        const sa = H.getF32(a, 3 * rows), sb = H.getF32(b, 3 * rows);
        const xf = xq.map(dequantQ8K);
        let worst = 0;
        for (let tk = 0; tk < 3; tk++) {
          for (let row = 0; row < rows; row++) {
            let mag = 0;
            for (let j = 0; j < k; j++) mag += Math.abs(ours[row * k + j] * xf[tk][j]);
            worst = Math.max(worst, Math.abs(sa[tk * rows + row] - sb[tk * rows + row]) / mag);
          }
        }
        expect(worst, `${file} ${info.name}: matmul vs matmul_ref, |diff| / sum|w*x|`).toBeLessThan(1e-5);
      }
      console.log(`${file}: ${tensors.length} K-quant tensors, largest relative RMS error vs F32 ${worstRel.toExponential(2)} (${worstName})`);
    });
  }
});
