// qwasm quantize against llama-quantize (../shared/fixtures, see its README): quantizing a fixture set's
// F32.gguf gives, for every file llama-quantize made from it, the same file: the same metadata and
// tensor table (types, order, shapes) and the same tensor data. The data is compared block by block;
// the target, and what these fixtures give, is every block identical. Were an f32 ordering detail to
// change a few blocks, the test says how many and still requires >= 99.9% identical blocks, each
// differing block no farther from the F32 weights than llama-quantize's.
import { readFileSync } from "node:fs";
import { expect, test } from "vitest";
import { describeFixtures, fixturePath } from "../fixtures";
import { parseGGUFBytes, type GGUFFile } from "../../weights/gguf/reader";
import { quantTraits } from "../../weights/quant/index";
import { quantizeGGUF, type QuantizeOptions } from "../../tools/quantize";

function parse(bytes: Uint8Array): GGUFFile {
  return parseGGUFBytes(bytes);
}

function readFile(...parts: string[]): Uint8Array {
  const b = readFileSync(fixturePath(...parts));
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

async function quantizeToBytes(input: Uint8Array, options: QuantizeOptions): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await quantizeGGUF(input, (chunk) => { chunks.push(chunk.slice()); }, options);
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

interface BlockTally { blocks: number; differing: number; worse: number }

/** Compares one quantized tensor block by block; a differing block must not be farther from `x` than llama's. */
function compareBlocks(type: number, got: Uint8Array, want: Uint8Array, x: Float32Array | undefined): BlockTally {
  const traits = quantTraits(type);
  const blocks = want.length / traits.typeSize;
  let differing = 0;
  let worse = 0;
  for (let b = 0; b < blocks; b++) {
    const o = b * traits.typeSize;
    if (sameBytes(got.subarray(o, o + traits.typeSize), want.subarray(o, o + traits.typeSize))) continue;
    differing++;
    if (!x) { worse++; continue; }
    const ref = x.subarray(b * traits.blockSize, (b + 1) * traits.blockSize);
    const err = (q: Uint8Array) => {
      const y = traits.dequantize(q.subarray(o, o + traits.typeSize), traits.blockSize);
      let e = 0;
      for (let i = 0; i < y.length; i++) e += (y[i] - ref[i]) ** 2;
      return e;
    };
    if (err(got) > err(want) * (1 + 1e-6)) worse++;
  }
  return { blocks, differing, worse };
}

/** Everything in `got` must be what llama-quantize wrote in `want`; returns the block tally. */
function compareFiles(label: string, got: Uint8Array, want: Uint8Array, input: Uint8Array): BlockTally {
  const source = parse(input);
  const g = parse(got);
  const w = parse(want);
  expect([...g.metadata], `${label}: metadata`).toEqual([...w.metadata]);
  expect(g.tensors, `${label}: tensor table`).toEqual(w.tensors);
  expect(got.length, `${label}: file size`).toBe(want.length);
  expect(sameBytes(got.subarray(0, g.dataOffset), want.subarray(0, w.dataOffset)), `${label}: header bytes`).toBe(true);
  const tally: BlockTally = { blocks: 0, differing: 0, worse: 0 };
  for (const t of w.tensors) {
    const gotData = got.subarray(g.dataOffset + t.offset, g.dataOffset + t.offset + t.nbytes);
    const wantData = want.subarray(w.dataOffset + t.offset, w.dataOffset + t.offset + t.nbytes);
    const one = compareBlocks(t.type, gotData, wantData, sourceF32(source, input, t.name));
    tally.blocks += one.blocks;
    tally.differing += one.differing;
    tally.worse += one.worse;
  }
  return tally;
}

/** The F32 values of a tensor of the input (undefined for another type). */
function sourceF32(source: GGUFFile, input: Uint8Array, name: string): Float32Array | undefined {
  const t = source.tensor(name)!;
  if (quantTraits(t.type).name !== "F32") return undefined;
  return new Float32Array(input.slice(source.dataOffset + t.offset, source.dataOffset + t.offset + t.nbytes).buffer);
}

// [fixture set, file, type, pure]: every llama-quantize output in the sets (see their READMEs).
const CASES: [string, string, string, boolean][] = [
  ["mini", "Q4_0-pure", "Q4_0", true], ["mini", "Q4_1-pure", "Q4_1", true], ["mini", "Q5_0-pure", "Q5_0", true],
  ["mini", "Q5_1-pure", "Q5_1", true], ["mini", "Q8_0-pure", "Q8_0", true], ["mini", "Q2_K-pure", "Q2_K", true],
  ["mini", "Q3_K-pure", "Q3_K", true], ["mini", "Q4_K-pure", "Q4_K", true], ["mini", "Q5_K-pure", "Q5_K", true],
  ["mini", "Q6_K-pure", "Q6_K", true], ["mini", "IQ4_NL-pure", "IQ4_NL", true],
  ["mini", "Q4_0", "Q4_0", false], ["mini", "Q4_K_M", "Q4_K_M", false],
  ["moe", "Q4_0-pure", "Q4_0", true], ["moe", "Q6_K-pure", "Q6_K", true], ["moe", "Q8_0-pure", "Q8_0", true],
  ["moe", "Q4_K_M", "Q4_K_M", false],
  ["yarn", "Q8_0-pure", "Q8_0", true], ["yarn", "Q4_K_M", "Q4_K_M", false],
];

describeFixtures("qwasm quantize reproduces llama-quantize", () => {
  for (const [set, file, type, pure] of CASES) {
    test(`${set}/F32.gguf -> ${type}${pure ? " --pure" : ""} = ${set}/${file}.gguf`, async () => {
      const input = readFile(set, "F32.gguf");
      const want = readFile(set, `${file}.gguf`);
      const got = await quantizeToBytes(input, { type, pure });
      const tally = compareFiles(`${set}/${file}`, got, want, input);
      expect(tally.blocks).toBeGreaterThan(10_000);
      if (tally.differing > 0) {
        console.warn(`${set}/${file}: ${tally.differing} of ${tally.blocks} blocks differ from llama-quantize's (${tally.worse} with a larger error)`);
      }
      expect(tally.differing, "blocks that differ").toBeLessThanOrEqual(tally.blocks * 0.001);
      expect(tally.worse, "differing blocks farther from the F32 weights than llama-quantize's").toBe(0);
      // what these fixtures actually give: the whole file, byte for byte
      expect(sameBytes(got, want), "byte-identical file").toBe(true);
    });
  }

  // F16/BF16 were written by gguf-py from the same f32 draws (RNE): the ftypes F16 and BF16 convert
  // every matrix (norms and biases stay F32), so each matrix equals the fixture's.
  for (const type of ["F16", "BF16"]) {
    test(`mini/F32.gguf -> ${type}: every matrix as in ${type}.gguf`, async () => {
      const got = parse(await quantizeToBytes(readFile("mini", "F32.gguf"), { type }));
      const want = parse(readFile("mini", `${type}.gguf`));
      let matrices = 0;
      for (const t of want.tensors) {
        const g = got.tensor(t.name)!;
        expect([g.type, g.dims], t.name).toEqual([t.type, t.dims]);
        expect(sameBytes(await got.readTensor(g), await want.readTensor(t)), t.name).toBe(true);
        if (t.dims.length === 2) matrices++;
      }
      expect(matrices).toBe(15);
      expect(got.metadata.getU32("general.file_type")).toBe(type === "F16" ? 1 : 32);
    });
  }

  test("an F16 input quantizes as its f32 values do", async () => {
    // F16.gguf's values widened to f32 are exact, so quantizing F16.gguf equals quantizing those values
    const f16 = parse(readFile("mini", "F16.gguf"));
    const got = parse(await quantizeToBytes(readFile("mini", "F16.gguf"), { type: "Q4_K_M" }));
    const t = got.tensor("blk.1.ffn_down.weight")!;
    expect(quantTraits(t.type).name).toBe("Q6_K");
    const src = quantTraits("F16").dequantize(await f16.readTensor("blk.1.ffn_down.weight"), 768 * 256);
    expect(sameBytes(await got.readTensor(t), quantTraits("Q6_K").quantize!(src))).toBe(true);
  });
});
