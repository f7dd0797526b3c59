// `qwasm inspect`: text and JSON reports of a GGUF header.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { main } from "../../cli/commands/inspect";
import { writeGGUFFile } from "../../weights/gguf/writer";
import { fixturePath, skipWithoutFixtures } from "../fixtures";
import { rawGGUF, smallModel } from "./helpers";

const tmp = mkdtempSync(join(tmpdir(), "qwasm-inspect-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function run(argv: string[], hooks = {}): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
  try {
    const code = await main(argv, { print: (text: string) => { out += text + "\n"; }, ...hooks });
    return { code, out, err: error.mock.calls.map((c) => c.join(" ")).join("\n") };
  } finally {
    error.mockRestore();
  }
}

describe("qwasm inspect", () => {
  it("prints metadata, tensors and totals", async () => {
    const path = join(tmp, "small.gguf");
    await writeGGUFFile(path, smallModel());
    const { code, out } = await run([path]);
    expect(code).toBe(0);
    expect(out).toContain("GGUF v3");
    expect(out).toMatch(/general\.architecture\s+STRING\s+"qwen2"/);
    expect(out).toMatch(/test\.f32\s+FLOAT32\s+0\.000001\n/);
    expect(out).toMatch(/test\.u64\s+UINT64\s+9223372036854775813\n/);
    expect(out).toMatch(/test\.strings\s+ARRAY\s+\[STRING × 4\] "a", "", "ĠĠ", "<\|im_end\|>"/);
    expect(out).toMatch(/b\.q4_0\s+Q4_0\s+32 x 2\s+36\n/);
    expect(out).toContain("totals: 3 tensors, 92 elements, 100 bytes of tensor data");
  });

  it("prints one JSON object with --json, and an extra section from the hook", async () => {
    const path = join(tmp, "small-json.gguf");
    await writeGGUFFile(path, smallModel());
    const { code, out } = await run([path, "--json"], {
      describeConfig: () => ({ title: "config", text: ["hidden 256"], json: { hidden: 256 } }),
    });
    expect(code).toBe(0);
    const report = JSON.parse(out);
    expect(report.version).toBe(3);
    expect(report.config).toEqual({ hidden: 256 });
    expect(report.metadata["test.u64"]).toEqual({ type: "UINT64", value: "9223372036854775813" });
    expect(report.metadata["test.i32s"]).toEqual({ type: "ARRAY", itemType: "INT32", length: 3, items: [1, -2, 3] });
    expect(report.tensors[1]).toEqual({ name: "b.q4_0", type: "Q4_0", typeId: 2, dims: [32, 2], offset: 32, bytes: 36 });
    expect(report.totals.byType.F32).toEqual({ tensors: 1, elements: 4, bytes: 16 });
  });

  it("summarizes long arrays unless --full", async (ctx) => {
    skipWithoutFixtures(ctx);
    const path = fixturePath("mini", "Q4_K_M.gguf");
    const { out } = await run([path, "--json"]);
    const tokens = JSON.parse(out).metadata["tokenizer.ggml.tokens"];
    expect(tokens).toMatchObject({ type: "ARRAY", itemType: "STRING", length: 4099, truncated: true });
    expect(tokens.items.length).toBe(8);
    const full = JSON.parse((await run([path, "--json", "--full"])).out).metadata["tokenizer.ggml.tokens"];
    expect(full.items.length).toBe(4099);
    const text = (await run([path])).out;
    expect(text).toMatch(/tokenizer\.ggml\.tokens\s+ARRAY\s+\[STRING × 4099\] "!", .*, …\n/);
    expect(text).toMatch(/blk\.1\.ffn_down\.weight\s+Q6_K\s+768 x 256\s+161280\n/);
  });

  it("says what is wrong with a bad file or bad arguments", async () => {
    expect((await run([])).code).toBe(2);
    expect((await run(["--help"])).out).toContain("usage: qwasm inspect");
    const missing = await run([join(tmp, "missing.gguf")]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/missing\.gguf.*ENOENT/);
    const bad = join(tmp, "bad.gguf");
    writeFileSync(bad, rawGGUF({ version: 1 }));
    const refused = await run([bad]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/GGUF version 1 is not supported/);
  });
});
