// The paged-KV attention kernels (attention_paged_*) against the contiguous ones (attention_*): the
// same K/V rows, placed in pages of a pool in order or in a random permutation, must give
// bit-identical outputs (assembly/ops/attention.ts explains why they can). And kv_store_paged
// against a plain TypeScript implementation built on the scalar converters in weights/quant.
import { beforeAll, describe, expect, it } from "vitest";
import { convertF32ToF16, quantizeQ8_0Activations } from "../../weights/quant/activations";
import { gaussian, KernelHarness, rng } from "./harness";

let H: KernelHarness;

beforeAll(async () => {
  H = await KernelHarness.createTest(256);
});

type CacheType = "f32" | "f16" | "q8_0";
const TYPES: CacheType[] = ["f32", "f16", "q8_0"];
const KV_TYPE: Record<CacheType, number> = { f32: 0, f16: 1, q8_0: 2 };

interface Case { nTok: number; pos0: number; nHeads: number; nKVHeads: number; headDim: number }

function normals(n: number, rand: () => number, sigma = 1): Float32Array {
  const g = gaussian(rand);
  return Float32Array.from({ length: n }, () => sigma * g());
}

/** One K or V row (all KV heads of one position) in the cache's format, by the TS converters. */
function encodeRow(type: CacheType, row: Float32Array): Uint8Array {
  if (type === "f32") return new Uint8Array(row.buffer.slice(row.byteOffset, row.byteOffset + row.byteLength));
  if (type === "f16") return convertF32ToF16(row);
  return quantizeQ8_0Activations(row); // blocks of 32 never straddle two heads (headDim % 32 == 0)
}

function rowBytes(type: CacheType, floats: number): number {
  return type === "f32" ? 4 * floats : type === "f16" ? 2 * floats : (floats / 32) * 34;
}

/** A random permutation of 0..n-1 (Fisher-Yates). */
function permutation(n: number, rand: () => number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

const OUT_CANARY = 12345;

/** Everything one case needs in memory: q, the contiguous cache, its encoded rows. */
function setupCase(type: CacheType, c: Case, seed: number) {
  const rand = rng(seed);
  const nPos = c.pos0 + c.nTok;
  const kvFloats = c.nKVHeads * c.headDim;
  const qStride = c.nHeads * c.headDim + 8;
  const kvRowBytes = rowBytes(type, kvFloats) + (type === "f32" ? 12 : 6); // padded rows
  const qVals = normals(c.nTok * qStride, rand, 2.5);
  const kRows: Uint8Array[] = [], vRows: Uint8Array[] = [];
  const kVals = normals(nPos * kvFloats, rand), vVals = normals(nPos * kvFloats, rand);
  for (let j = 0; j < nPos; j++) {
    kRows.push(encodeRow(type, kVals.subarray(j * kvFloats, (j + 1) * kvFloats)));
    vRows.push(encodeRow(type, vVals.subarray(j * kvFloats, (j + 1) * kvFloats)));
  }
  const kC = H.fresh(nPos * kvRowBytes, 0x7f, 16);
  const vC = H.fresh(nPos * kvRowBytes, 0x7f, 16);
  for (let j = 0; j < nPos; j++) {
    H.u8(kC + j * kvRowBytes, kRows[j].length).set(kRows[j]);
    H.u8(vC + j * kvRowBytes, vRows[j].length).set(vRows[j]);
  }
  return { rand, nPos, qStride, kvRowBytes, qVals, kRows, vRows, kC, vC };
}

type Setup = ReturnType<typeof setupCase>;

/** The rows placed in a pool of pages through a block table (identity or a random permutation). */
function setupPages(s: Setup, pageSize: number, shuffle: boolean) {
  const nPages = Math.ceil(s.nPos / pageSize);
  const poolPages = nPages + 3; // pages this sequence does not own stay garbage (0x7f bytes)
  const order = shuffle ? permutation(poolPages, s.rand).slice(0, nPages) : Array.from({ length: nPages }, (_, i) => i);
  const table = H.put(Int32Array.from(order), 4);
  const kPool = H.fresh(poolPages * pageSize * s.kvRowBytes, 0x7f, 16);
  const vPool = H.fresh(poolPages * pageSize * s.kvRowBytes, 0x7f, 16);
  for (let j = 0; j < s.nPos; j++) {
    const at = (order[Math.floor(j / pageSize)] * pageSize + (j % pageSize)) * s.kvRowBytes;
    H.u8(kPool + at, s.kRows[j].length).set(s.kRows[j]);
    H.u8(vPool + at, s.vRows[j].length).set(s.vRows[j]);
  }
  return { table, kPool, vPool, order };
}

function putQ(s: Setup, c: Case): number {
  const q = H.alloc(c.nTok * s.qStride * 4, 16);
  H.f32(q, c.nTok * s.qStride).set(s.qVals);
  return q;
}

function freshOut(s: Setup, c: Case): number {
  const out = H.alloc(c.nTok * s.qStride * 4, 16);
  H.f32(out, c.nTok * s.qStride).fill(OUT_CANARY);
  return out;
}

const scaleOf = (c: Case) => Math.fround(1 / Math.sqrt(c.headDim));

function runContiguous(type: CacheType, c: Case, s: Setup, ranges: [number, number][]): Float32Array {
  const q = putQ(s, c);
  const out = freshOut(s, c);
  const scratch = H.alloc((c.headDim + s.nPos) * 4, 16);
  for (const [h0, h1] of ranges) {
    H.call(`attention_${type}`, q, s.kC, s.vC, out, scratch, c.nTok, c.pos0, c.nHeads, c.nKVHeads, c.headDim,
      s.qStride, s.kvRowBytes, scaleOf(c), h0, h1);
  }
  return H.getF32(out, c.nTok * s.qStride);
}

function runPaged(type: CacheType, c: Case, s: Setup, p: ReturnType<typeof setupPages>, pageSize: number,
  ranges: [number, number][], inPlace = false): Float32Array {
  const q = putQ(s, c);
  const out = inPlace ? q : freshOut(s, c);
  // the paged kernels take the query heads of one KV head together: their queries and score rows
  const scratch = H.alloc((c.nHeads / c.nKVHeads) * (c.headDim + s.nPos) * 4, 16);
  for (const [h0, h1] of ranges) {
    H.call(`attention_paged_${type}`, q, p.kPool, p.vPool, p.table, pageSize, out, scratch, c.nTok, c.pos0,
      c.nHeads, c.nKVHeads, c.headDim, s.qStride, s.kvRowBytes, scaleOf(c), h0, h1);
  }
  return H.getF32(out, c.nTok * s.qStride);
}

/** Number of float32 words whose bits differ, and the largest |a - b| among them. */
function bitDiff(a: Float32Array, b: Float32Array): { words: number; maxAbs: number } {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let words = 0, maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    if (ua[i] !== ub[i]) {
      words++;
      const d = Math.abs(a[i] - b[i]);
      maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
    }
  }
  return { words, maxAbs };
}

const GEOMETRIES: Omit<Case, "nTok" | "pos0">[] = [
  { nHeads: 4, nKVHeads: 2, headDim: 64 },
  { nHeads: 4, nKVHeads: 2, headDim: 128 },
  { nHeads: 14, nKVHeads: 2, headDim: 64 },
  { nHeads: 14, nKVHeads: 2, headDim: 128 },
];
const PAGE_SIZES = [1, 5, 7, 16, 32];

describe("attention_paged_* (bit-identical to the contiguous kernels)", () => {
  // The paged f16 kernel converts a run of keys with the fast (finite-only) conversion unless the run
  // holds an inf or NaN: with some in K and in V, the pages that hold them must take the exact one.
  it("f16 with inf and NaN in the cache: the same bits as the contiguous kernel (exact conversion there)", () => {
    let runs = 0;
    for (const [nTok, pos0] of [[1, 40], [5, 3], [17, 0]]) {
      H.reset();
      const c: Case = { nHeads: 14, nKVHeads: 2, headDim: 64, nTok, pos0 };
      const s = setupCase("f16", c, 4242 + nTok);
      const patch = (rows: Uint8Array[], base: number, j: number, byte: number, half: number) => {
        rows[j][byte] = half & 0xff; rows[j][byte + 1] = half >> 8;
        H.u8(base + j * s.kvRowBytes, rows[j].length).set(rows[j]);
      };
      patch(s.kRows, s.kC, 1, 2 * 5, 0x7c00);            // K: +inf, KV head 0, dim 5
      patch(s.vRows, s.vC, s.nPos - 1, 2 * 70, 0xfc00);   // V: -inf, KV head 1, dim 6
      patch(s.vRows, s.vC, 0, 2 * 3, 0x7e00);             // V: NaN, KV head 0
      const ranges: [number, number][] = [[0, 3], [3, 14]];
      const want = runContiguous("f16", c, s, ranges);
      for (const pageSize of [1, 5, 16]) {
        const got = runPaged("f16", c, s, setupPages(s, pageSize, true), pageSize, ranges);
        expect(bitDiff(got, want).words, `${JSON.stringify(c)} pageSize=${pageSize}`).toBe(0);
        runs++;
      }
    }
    expect(runs).toBe(9);
  });

  for (const type of TYPES) {
    it(`${type}: nTok 1/5/17, pos0 0/3/40, pages of 1/5/7/16/32 in order and permuted, GQA 2 and 7, head dims 64 and 128`, () => {
      let runs = 0, mismatched = 0, worst = 0, seed = 1000;
      for (const g of GEOMETRIES) {
        for (const nTok of [1, 5, 17]) {
          for (const pos0 of [0, 3, 40]) {
            H.reset();
            const c: Case = { ...g, nTok, pos0 };
            const s = setupCase(type, c, seed++);
            const split = Math.min(3, c.nHeads - 1);
            const ranges: [number, number][] = [[0, split], [split, c.nHeads]];
            const want = runContiguous(type, c, s, ranges);
            for (const pageSize of PAGE_SIZES) {
              for (const shuffle of [false, true]) {
                const p = setupPages(s, pageSize, shuffle);
                const got = runPaged(type, c, s, p, pageSize, ranges);
                const d = bitDiff(got, want);
                runs++;
                if (d.words) mismatched++;
                worst = Math.max(worst, d.maxAbs);
                expect(d.words, `${JSON.stringify(c)} pageSize=${pageSize} shuffle=${shuffle} max |diff| ${d.maxAbs}`).toBe(0);
              }
            }
          }
        }
      }
      console.log(`attention_paged_${type}: ${runs} runs, ${mismatched} not bit-identical, max |diff| ${worst}`);
    });
  }

  it("a long decode (pos0 300) over permuted pages of 16, all types", () => {
    const c: Case = { nTok: 1, pos0: 300, nHeads: 14, nKVHeads: 2, headDim: 64 };
    for (const type of TYPES) {
      H.reset();
      const s = setupCase(type, c, 77);
      const want = runContiguous(type, c, s, [[0, c.nHeads]]);
      for (const pageSize of [16, 7]) {
        const p = setupPages(s, pageSize, true);
        const d = bitDiff(runPaged(type, c, s, p, pageSize, [[0, c.nHeads]]), want);
        expect(d.words, `${type} pageSize=${pageSize} max |diff| ${d.maxAbs}`).toBe(0);
      }
    }
  });

  it("a head range computes only those heads; the other heads and the row padding stay untouched", () => {
    const c: Case = { nTok: 5, pos0: 3, nHeads: 14, nKVHeads: 2, headDim: 64 };
    for (const type of TYPES) {
      H.reset();
      const s = setupCase(type, c, 5);
      const want = runContiguous(type, c, s, [[0, c.nHeads]]);
      const p = setupPages(s, 5, true);
      const got = runPaged(type, c, s, p, 5, [[5, 9]]);
      for (let t = 0; t < c.nTok; t++) {
        for (let i = 0; i < s.qStride; i++) {
          const at = t * s.qStride + i;
          const h = Math.floor(i / c.headDim);
          if (i < c.nHeads * c.headDim && h >= 5 && h < 9) {
            expect(Object.is(got[at], want[at]), `${type} t=${t} i=${i}`).toBe(true);
          } else {
            expect(got[at]).toBe(OUT_CANARY);
          }
        }
      }
    }
  });

  it("out may alias q", () => {
    const c: Case = { nTok: 5, pos0: 40, nHeads: 14, nKVHeads: 2, headDim: 128 };
    for (const type of TYPES) {
      H.reset();
      const s = setupCase(type, c, 9);
      const p = setupPages(s, 7, true);
      const separate = runPaged(type, c, s, p, 7, [[0, 6], [6, c.nHeads]]);
      const inPlace = runPaged(type, c, s, p, 7, [[0, 6], [6, c.nHeads]], true);
      for (let t = 0; t < c.nTok; t++) {
        const row = t * s.qStride;
        const a = inPlace.subarray(row, row + c.nHeads * c.headDim);
        const b = separate.subarray(row, row + c.nHeads * c.headDim);
        expect(bitDiff(a, b).words, type).toBe(0);
      }
    }
  });
});

// ------------------------------------------------------------------------------------ kv_store_paged

/** kv_store_paged in plain TypeScript: each row encoded by the scalar converters, written at its page. */
function storeReference(pool: Uint8Array, src: Float32Array, table: number[], pageSize: number, pos0: number,
  nTok: number, rowFloats: number, kvRowBytes: number, type: CacheType): void {
  for (let t = 0; t < nTok; t++) {
    const j = pos0 + t;
    const at = (table[Math.floor(j / pageSize)] * pageSize + (j % pageSize)) * kvRowBytes;
    pool.set(encodeRow(type, src.subarray(t * rowFloats, (t + 1) * rowFloats)), at);
  }
}

describe("kv_store_paged", () => {
  it("writes rows through the block table exactly as the TypeScript converters do, and nothing else", () => {
    let cases = 0;
    for (const type of TYPES) {
      for (const rowFloats of [2 * 64, 2 * 128]) {
        for (const pageSize of [1, 5, 16, 32]) {
          for (const [pos0, nTok] of [[0, 1], [0, 17], [3, 5], [40, 17], [15, 2]]) {
            H.reset();
            const rand = rng(cases++ + 500);
            const kvRowBytes = rowBytes(type, rowFloats) + 10;
            const nPages = Math.ceil((pos0 + nTok) / pageSize);
            const poolPages = nPages + 2;
            const table = permutation(poolPages, rand).slice(0, nPages);
            const poolBytes = poolPages * pageSize * kvRowBytes;
            // rows with a few exact halves, ties and large values so that rounding is exercised
            const src = normals(nTok * rowFloats, rand, 3);
            for (let i = 0; i < src.length; i += 7) src[i] = Math.fround(Math.round(src[i] * 1024) / 1024 + 1 / 4096);
            const srcPtr = H.put(src, 16);
            const tablePtr = H.put(Int32Array.from(table), 4);
            const pool = H.fresh(poolBytes, 0x5a, 16);
            H.call("kv_store_paged", srcPtr, pool, tablePtr, pageSize, pos0, nTok, rowFloats, kvRowBytes, KV_TYPE[type]);
            const want = new Uint8Array(poolBytes).fill(0x5a);
            storeReference(want, src, table, pageSize, pos0, nTok, rowFloats, kvRowBytes, type);
            const got = H.getBytes(pool, poolBytes);
            let bad = 0;
            for (let i = 0; i < poolBytes; i++) if (got[i] !== want[i]) bad++;
            expect(bad, `${type} rowFloats=${rowFloats} pageSize=${pageSize} pos0=${pos0} nTok=${nTok}`).toBe(0);
          }
        }
      }
    }
    console.log(`kv_store_paged: ${cases} cases byte-identical to the TypeScript store`);
  });

  it("feeds attention_paged_*: storing a prefill then a decode token gives the contiguous kernel's output", () => {
    const c: Case = { nTok: 1, pos0: 20, nHeads: 14, nKVHeads: 2, headDim: 64 };
    const pageSize = 16;
    for (const type of TYPES) {
      H.reset();
      const s = setupCase(type, c, 31);
      const rand = rng(32);
      const kvFloats = c.nKVHeads * c.headDim;
      const nPages = Math.ceil(s.nPos / pageSize);
      const order = permutation(nPages + 2, rand).slice(0, nPages);
      const table = H.put(Int32Array.from(order), 4);
      const kPool = H.fresh((nPages + 2) * pageSize * s.kvRowBytes, 0x7f, 16);
      const vPool = H.fresh((nPages + 2) * pageSize * s.kvRowBytes, 0x7f, 16);
      // the same f32 values setupCase encoded: regenerate them from its seed
      const r2 = rng(31);
      normals(c.nTok * s.qStride, r2, 2.5);
      const kVals = normals(s.nPos * kvFloats, r2), vVals = normals(s.nPos * kvFloats, r2);
      const kSrc = H.put(kVals, 16), vSrc = H.put(vVals, 16);
      // positions 0..19 as a prefill, then position 20 as a decode step
      for (const [pool, srcPtr] of [[kPool, kSrc], [vPool, vSrc]]) {
        H.call("kv_store_paged", srcPtr, pool, table, pageSize, 0, c.pos0, kvFloats, s.kvRowBytes, KV_TYPE[type]);
        H.call("kv_store_paged", srcPtr + c.pos0 * kvFloats * 4, pool, table, pageSize, c.pos0, 1, kvFloats,
          s.kvRowBytes, KV_TYPE[type]);
      }
      const want = runContiguous(type, c, s, [[0, c.nHeads]]);
      const got = runPaged(type, c, s, { table, kPool, vPool, order }, pageSize, [[0, c.nHeads]]);
      expect(bitDiff(got, want).words, type).toBe(0);
    }
  });
});
