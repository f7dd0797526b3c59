// The command line and split GGUF: `qwasm synth --split N|--split-max-mb M|--split-max-tensors N`
// writes gguf-split's parts, `qwasm inspect` shows them, `qwasm logits` on the first part prints
// the same logits as on the unsplit file.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main as inspectMain } from "../../cli/commands/inspect";
import { main as logitsMain } from "../../cli/commands/logits";
import { main as synthMain } from "../../cli/commands/synth";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { openGGUF } from "../../weights/gguf/reader";
import { splitGGUF, writeGGUFBytes } from "../../weights/gguf/writer";

const tmp = mkdtempSync(join(tmpdir(), "qwasm-split-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs a command's main with console output captured. */
async function run(main: (argv: string[]) => Promise<number>, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
  const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
  const write = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
  try {
    const code = await main(argv);
    const out = [...log.mock.calls.map((c) => c.join(" ")), ...write.mock.calls.map((c) => String(c[0]))].join("\n");
    return { code, out, err: error.mock.calls.map((c) => c.join(" ")).join("\n") };
  } finally {
    log.mockRestore();
    error.mockRestore();
    write.mockRestore();
  }
}

const parts = ["tiny-00001-of-00003.gguf", "tiny-00002-of-00003.gguf", "tiny-00003-of-00003.gguf"];

describe("qwasm synth --split, inspect and logits on the parts", () => {
  beforeAll(async () => {
    expect((await run(synthMain, [join(tmp, "tiny.gguf"), "--type", "q4_0", "--seed", "5"])).code).toBe(0);
    const split = await run(synthMain, [join(tmp, "tiny.gguf"), "--type", "q4_0", "--seed", "5", "--split", "3"]);
    expect(split.code).toBe(0);
    expect(split.out).toContain("(3 parts)");
  });

  it("writes the parts the library's splitter makes, byte for byte", async () => {
    const vocabulary = await readQwen2Vocabulary();
    const model = synthQwen2({ shape: "tiny", vocabulary, type: "Q4_0", seed: 5, name: "Qwen2 synthetic tiny" });
    const expected = splitGGUF(model, { parts: 3 });
    expect(expected.length).toBe(3);
    for (let no = 0; no < 3; no++) {
      const bytes = await writeGGUFBytes(expected[no]);
      expect(Buffer.from(readFileSync(join(tmp, parts[no]))).equals(Buffer.from(bytes))).toBe(true);
    }
  });

  it("--split-max-tensors and --split-max-mb cut as asked; two ways at once are refused", async () => {
    const byTensors = await run(synthMain, [join(tmp, "t.gguf"), "--split-max-tensors", "10"]);
    expect(byTensors.code).toBe(0);
    const file = await openGGUF(join(tmp, "t-00001-of-00003.gguf"));
    expect(file.parts.map((p) => p.tensors.length)).toEqual([10, 10, 6]);
    await file.close();
    const byMb = await run(synthMain, [join(tmp, "m.gguf"), "--split-max-mb", "1"]);
    expect(byMb.code).toBe(0);
    expect(byMb.out).toMatch(/m-00001-of-0000\d\.gguf \(\d parts\)/);
    const both = await run(synthMain, [join(tmp, "x.gguf"), "--split", "2", "--split-max-mb", "1"]);
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/--split and --split-max-mb contradict each other/);
  });

  it("inspect lists the parts and which part holds each tensor (text and JSON)", async () => {
    const text = await run(inspectMain, [join(tmp, parts[0])]);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/split in 3 parts/);
    expect(text.out).toMatch(/parts \(3\):/);
    for (const p of parts) expect(text.out).toContain(p);
    expect(text.out).toMatch(/output_norm\.weight\s+F32\s+64\s+256\s+3\n/);
    const json = JSON.parse((await run(inspectMain, [join(tmp, parts[1]), "--json"])).out);
    expect(json.parts.map((p: { no: number }) => p.no)).toEqual([0, 1, 2]);
    expect(json.parts.reduce((s: number, p: { tensors: number }) => s + p.tensors, 0)).toBe(json.tensors.length);
    expect(json.tensors.at(-1).part).toBe(2);
  });

  it("qwasm logits on the first part's path writes the unsplit file's logits, bit for bit", async () => {
    const args = (out: string) => ["--ids", "1,200,33,4,500,6", "--threads", "1", "--out", join(tmp, out)];
    expect((await run(logitsMain, [join(tmp, "tiny.gguf"), ...args("whole.f32")])).code).toBe(0);
    expect((await run(logitsMain, [join(tmp, parts[0]), ...args("split.f32")])).code).toBe(0);
    const whole = readFileSync(join(tmp, "whole.f32"));
    expect(whole.length).toBe(6 * 515 * 4);
    expect(readFileSync(join(tmp, "split.f32")).equals(whole)).toBe(true);
  });
});
