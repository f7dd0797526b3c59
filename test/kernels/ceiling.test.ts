// scripts/ceiling/loops.ts, the loops behind scripts/bench-ceiling.mjs (the README's ceiling of a
// batched decode step), computes what it claims: the ideal many-token loop against a scalar
// TypeScript matmul on the same 8-bit data, and the relaxed peak loop against an emulation. A loop
// that did less work would overstate the ceiling.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { projectRoot } from "../fixtures";
import { requireRelaxedSimd } from "../kernel-build";
import { rng } from "./harness";

const work = mkdtempSync(join(tmpdir(), "qwasm-loops-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function loops(relaxed: boolean): Promise<{ exports: Record<string, (...a: number[]) => number>; memory: WebAssembly.Memory }> {
  const out = join(work, relaxed ? "r.wasm" : "s.wasm");
  execFileSync(process.execPath, [join(projectRoot, "node_modules", "assemblyscript", "bin", "asc.js"),
    join(projectRoot, "scripts", "ceiling", "loops.ts"), "-O3", "--runtime", "stub", "--noAssert", "--importMemory",
    "--sharedMemory", "--initialMemory", "1", "--maximumMemory", "65536", "--enable", "simd", "--enable", "threads",
    ...(relaxed ? ["--enable", "relaxed-simd"] : []), "-o", out]);
  const memory = new WebAssembly.Memory({ initial: 16, maximum: 65536, shared: true });
  const { instance } = await WebAssembly.instantiate(readFileSync(out), { env: { memory, abort: () => { throw new Error("abort"); } } });
  return { exports: instance.exports as never, memory };
}

describe.each([false, true])("scripts/ceiling/loops.ts (relaxed %s)", (relaxed) => {
  it("ideal(): every (row, token) cell is the scaled dot product of its 8-bit operands", async (ctx) => {
    if (relaxed) requireRelaxedSimd(ctx);
    const { exports: L, memory } = await loops(relaxed);
    const k = 384, rows = 5, nTok = 8, ng = k / 128, gb = L.group_bytes(), data = gb - 16;
    const rand = rng(relaxed ? 7 : 8);
    const dv = new DataView(memory.buffer);
    // value i of group g of row r: lane layout does not matter to a dot product, only pairing does
    const put = (base: number, count: number, weights: boolean) => {
      const vals: number[][] = [], scales: number[][] = [];
      for (let r = 0; r < count; r++) {
        const v: number[] = [], s: number[] = [];
        for (let g = 0; g < ng; g++) {
          const p = base + (r * ng + g) * gb;
          for (let i = 0; i < 128; i++) {
            const q = weights ? (rand() * 16) | 0 : ((rand() * 255) | 0) - 127;
            const stored = weights && !relaxed ? q - 8 : q;
            v.push(stored);
            if (relaxed) dv.setInt8(p + i, stored); else dv.setInt16(p + 2 * i, stored, true);
          }
          for (let j = 0; j < 4; j++) {
            const sc = Math.fround(0.001 + rand() * 0.01);
            s.push(sc);
            dv.setFloat32(p + data + 4 * j, sc, true);
          }
        }
        vals.push(v); scales.push(s);
      }
      return { vals, scales };
    };
    const W = 4096, X = W + rows * ng * gb, OUT = X + nTok * ng * gb;
    const w = put(W, rows, true), x = put(X, nTok, false);
    L.ideal(W, X, OUT, k, rows, nTok, ng * gb);
    const out = new Float32Array(memory.buffer, OUT, rows * nTok);
    // i32 lane j of group g holds the 32 values of block j: values 4c + j' ... by the loop's layout
    // (SIMD128: i16 pairs, relaxed: byte quads); the block of value i is (i >> 1) & 3 or (i >> 2) & 3.
    const blockOf = (i: number) => (relaxed ? (i >> 2) & 3 : (i >> 1) & 3);
    for (let t = 0; t < nTok; t++) {
      for (let r = 0; r < rows; r++) {
        let sum = 0;
        for (let g = 0; g < ng; g++) {
          const isum = [0, 0, 0, 0];
          for (let i = 0; i < 128; i++) isum[blockOf(i)] += w.vals[r][g * 128 + i] * x.vals[t][g * 128 + i];
          for (let j = 0; j < 4; j++) sum += isum[j] * w.scales[r][g * 4 + j] * x.scales[t][g * 4 + j];
        }
        expect(Math.abs(out[t * rows + r] - sum), `token ${t} row ${r}`).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(sum)));
      }
    }
  });

  it("relaxed_peak(): the relaxed build's dot products as emulated; -1 in the SIMD128 build", async (ctx) => {
    if (relaxed) requireRelaxedSimd(ctx);
    const { exports: L } = await loops(relaxed);
    if (!relaxed) expect(L.relaxed_peak(10)).toBe(-1);
    else for (const n of [0, 1, 5, 300]) {
      // i8 lanes all equal: relaxed_dot(a, b) = 2ab per i16 lane (no saturation: |2ab| <= 2*128*5),
      // the i16 sum of two such, then dot with ones = 2 * that per i32 lane; x steps by 5 (i8 wrap).
      let x = 3;
      const acc = [1, 2, 3, 4];
      for (let i = 0; i < n; i++) {
        const xu = 2 * x * 5, uu = 2 * 5 * 5;
        const i16 = (v: number) => (v << 16) >> 16;
        const adds = [2 * i16(xu + uu), 2 * i16(uu + xu), 2 * i16(xu + xu), 2 * i16(uu + uu)];
        for (let j = 0; j < 4; j++) acc[j] = (acc[j] + adds[j]) | 0;
        x = (x + 5) << 24 >> 24;
      }
      expect(L.relaxed_peak(n), `n = ${n}`).toBe(acc.reduce((s, a) => (s + a) | 0, 0));
    }
  });
});
