// `qwasm quantize` end to end, as a user runs it (the built CLI): a synthetic F32 model quantized to
// the mixes loads and runs through `qwasm logits` with logits close to the F32 model's; the flags
// reach the per-tensor types; `synth --type <mix>` writes what synth F32 + quantize writes; and every
// failure is one line with a code, leaving no output file behind.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { typeInfo } from "../../weights/gguf/types";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { cliBuilt, runCli } from "./helpers";

const tmp = mkdtempSync(join(tmpdir(), "qwasm-quantize-"));
const f32Model = join(tmp, "f32.gguf");
// tiny, widened so that rows fit the 256-blocks of the K-quants
const SHAPE = { ...QWEN2_PRESETS.tiny, hidden: 256, ffn: 512 };
const IDS = "1,20,300,4,55,6,70,8";

function tensorTypes(path: string): Map<string, string> {
  const b = readFileSync(path);
  return new Map(parseGGUFBytes(new Uint8Array(b.buffer, b.byteOffset, b.byteLength)).tensors.map((t) => [t.name, typeInfo(t.type)!.name]));
}

function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Largest |a - b| over the std of b. */
function maxRelative(a: Float32Array, b: Float32Array): number {
  let mean = 0;
  for (const v of b) mean += v;
  mean /= b.length;
  let variance = 0;
  let worst = 0;
  for (let i = 0; i < b.length; i++) {
    variance += (b[i] - mean) ** 2;
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
  }
  return worst / Math.sqrt(variance / b.length);
}

beforeAll(async () => {
  writeFileSync(f32Model, await writeGGUFBytes(synthQwen2({ shape: SHAPE, vocabulary: await readQwen2Vocabulary(), seed: 5 })));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!cliBuilt)("qwasm quantize (built CLI; run `node scripts/build.mjs`)", () => {
  it("documents every option and is listed by qwasm --help", async () => {
    const help = await runCli(["quantize", "--help"]);
    expect(help.code).toBe(0);
    for (const option of ["--pure", "--output-type", "--token-embedding-type", "--allow-requantize", "--quiet"]) {
      expect(help.stdout, option).toContain(option);
    }
    for (const type of ["Q4_K_M", "Q5_K_S", "Q3_K_L", "Q2_K", "Q6_K", "IQ4_NL", "Q8_0", "imatrix"]) expect(help.stdout, type).toContain(type);
    const top = await runCli(["--help"]);
    expect(top.stdout).toMatch(/\n {2}quantize +quantize a GGUF as llama-quantize does/);
  });

  it("quantized models load and run through qwasm logits, close to the F32 model", async () => {
    const reference = join(tmp, "f32.logits");
    const ran = await runCli(["logits", f32Model, "--ids", IDS, "--out", reference]);
    expect(ran.code, ran.stderr).toBe(0);
    const want = readF32(reference);
    expect(want.length).toBe(8 * 515);
    // max |Δ|/std over all 8 positions, measured: Q8_0 0.10, Q6_K 0.22, Q5_K_S 0.37, Q4_K_M 0.65,
    // IQ4_NL 0.74, Q3_K_M 1.07, Q2_K 2.5 (a random model amplifies the activation rounding flips,
    // see ../shared/fixtures/README.md section 5); bounds at twice that, and fewer bits must err more
    const bounds: [string, number][] = [["Q8_0", 0.2], ["Q6_K", 0.45], ["Q5_K_S", 0.75], ["Q4_K_M", 1.3], ["Q3_K_M", 2.2], ["Q2_K", 5], ["IQ4_NL", 1.5]];
    const errors: number[] = [];
    for (const [type, bound] of bounds) {
      const out = join(tmp, `${type}.gguf`);
      const q = await runCli(["quantize", f32Model, out, type]);
      expect(q.code, q.stderr).toBe(0);
      expect(q.stderr).toContain(`${out}: ${type}`);
      const logits = join(tmp, `${type}.logits`);
      const r = await runCli(["logits", out, "--ids", IDS, "--out", logits]);
      expect(r.code, r.stderr).toBe(0);
      const got = readF32(logits);
      expect(got.length).toBe(want.length);
      expect(got.every(Number.isFinite)).toBe(true);
      const rel = maxRelative(got, want);
      expect(rel, type).toBeLessThan(bound);
      expect(rel, `${type}: suspiciously exact`).toBeGreaterThan(1e-4);
      errors.push(rel);
    }
    expect(errors.length).toBe(7);
    for (let i = 1; i < 6; i++) expect(errors[i], `${bounds[i][0]} vs ${bounds[i - 1][0]}`).toBeGreaterThan(errors[i - 1]);
  });

  it("--pure, --output-type and --token-embedding-type reach the tensor types", async () => {
    const pure = join(tmp, "pure.gguf");
    expect((await runCli(["quantize", f32Model, pure, "Q4_K", "--pure", "--quiet"])).code).toBe(0);
    const types = tensorTypes(pure);
    expect(types.get("token_embd.weight")).toBe("Q4_K");
    expect(types.get("blk.1.attn_v.weight")).toBe("Q4_K");
    expect(types.get("blk.1.attn_norm.weight")).toBe("F32");
    const mix = join(tmp, "mix.gguf");
    expect((await runCli(["quantize", f32Model, mix, "Q4_K_M", "--output-type", "q8_0", "--quiet"])).code).toBe(0);
    expect(tensorTypes(mix).get("token_embd.weight")).toBe("Q8_0"); // tied: the output tensor's type
    expect(tensorTypes(mix).get("blk.1.attn_v.weight")).toBe("Q6_K"); // use_more_bits in the last layer
    const embd = join(tmp, "embd.gguf");
    expect((await runCli(["quantize", f32Model, embd, "Q4_0", "--token-embedding-type", "F16", "--quiet"])).code).toBe(0);
    expect(tensorTypes(embd).get("token_embd.weight")).toBe("F16");
  });

  it("synth --type <mix> writes what synth F32 then quantize writes", async () => {
    const synthF32 = join(tmp, "s32.gguf");
    const synthMix = join(tmp, "smix.gguf");
    const quantized = join(tmp, "sq.gguf");
    const dims = ["--hidden", "256", "--ffn", "512", "--seed", "9"];
    expect((await runCli(["synth", synthF32, "--type", "F32", ...dims])).code).toBe(0);
    const s = await runCli(["synth", synthMix, "--type", "q4_k_m", ...dims]);
    expect(s.code, s.stderr).toBe(0);
    expect((await runCli(["quantize", synthF32, quantized, "Q4_K_M", "--quiet"])).code).toBe(0);
    expect(readFileSync(synthMix).equals(readFileSync(quantized))).toBe(true);
    expect(new Set(tensorTypes(synthMix).values())).toEqual(new Set(["F32", "Q4_K", "Q6_K"]));
    const bad = await runCli(["synth", join(tmp, "x.gguf"), "--type", "Q7_K"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("Q4_K_M");
  });

  it("fails with one line and a code, and leaves no output behind", async () => {
    const q8 = join(tmp, "q8.gguf");
    expect((await runCli(["quantize", f32Model, q8, "Q8_0", "--quiet"])).code).toBe(0);
    const out = join(tmp, "never.gguf");
    const cases: [string[], RegExp][] = [
      [["quantize", f32Model, out, "IQ2_XXS"], /^qwasm: IQ2_XXS needs an importance matrix .* \[INVALID_ARGUMENT\]\n$/],
      [["quantize", f32Model, out, "Q4_K_Z"], /^qwasm: unknown quantization type "Q4_K_Z"; supported: .* \[INVALID_ARGUMENT\]\n$/],
      [["quantize", join(tmp, "missing.gguf"), out, "Q4_0"], /^qwasm: cannot read .*missing\.gguf: no such file .*\[FILE_NOT_FOUND\]\n$/],
      [["quantize", f32Model, f32Model, "Q4_0"], /^qwasm: the output .* is the input.* \[INVALID_ARGUMENT\]\n$/],
      [["quantize", f32Model, out], /^qwasm: qwasm quantize needs IN\.gguf OUT\.gguf TYPE.* \[INVALID_ARGUMENT\]\n$/],
      [["quantize", f32Model, out, "Q4_0", "--output-type", "IQ1_S"], /^qwasm: --output-type IQ1_S: qwasm cannot write that tensor type .* \[INVALID_ARGUMENT\]\n$/],
      [["quantize", q8, out, "Q4_0"], /already Q8_0.*--allow-requantize.* \[INVALID_ARGUMENT\]\n$/],
      [["quantize", f32Model, join(tmp, "no-such-dir", "x.gguf"), "Q4_0"], /^qwasm: cannot write .*x\.gguf: the folder .*no-such-dir does not exist.* \[INVALID_ARGUMENT\]\n$/],
    ];
    for (const [argv, message] of cases) {
      const r = await runCli(argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.stderr, argv.join(" ")).toMatch(message);
      expect(existsSync(out) || existsSync(`${out}.partial`), argv.join(" ")).toBe(false);
    }
    expect(cases.length).toBe(8);
    // a NaN in the last tensor: the error comes after most of the file was written, which is removed
    const bytes = new Uint8Array(readFileSync(f32Model));
    const file = parseGGUFBytes(bytes);
    const t = file.tensor("blk.1.ffn_up.weight")!;
    new DataView(bytes.buffer).setFloat32(file.dataOffset + t.offset + 4 * 700, NaN, true);
    const nan = join(tmp, "nan.gguf");
    writeFileSync(nan, bytes);
    const r = await runCli(["quantize", nan, out, "Q4_K_M"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("qwasm: quantize: tensor blk.1.ffn_up.weight has a non-finite value (NaN) in row 2; it cannot be quantized [MODEL_INVALID]\n");
    expect(existsSync(out) || existsSync(`${out}.partial`)).toBe(false);
    // --allow-requantize accepts a quantized input
    const re = await runCli(["quantize", q8, out, "Q4_0", "--allow-requantize", "--quiet"]);
    expect(re.code, re.stderr).toBe(0);
    expect(tensorTypes(out).get("blk.0.attn_q.weight")).toBe("Q4_0");
  });
});
