// llama.cpp's own Qwen2 tokenizer vectors (../shared/fixtures/tokenizer): encoded with the full
// vocabulary, no special-token parsing, no BOS, every id must be identical.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURES_DIR, fixturesAvailable } from "../fixtures";
import { qwen2Tokenizer } from "./qwen-vocab";

const dir = join(FIXTURES_DIR, "tokenizer");

if (!fixturesAvailable) {
  console.warn(`SKIPPED llama.cpp tokenizer vectors: ${FIXTURES_DIR} is absent (see test/fixtures.ts)`);
}

describe.skipIf(!fixturesAvailable)("llama.cpp Qwen2 tokenizer vectors", () => {
  const load = () => {
    const inputs = readFileSync(join(dir, "ggml-vocab-qwen2.gguf.inp"), "utf8").split("\n__ggml_vocab_test__\n");
    inputs.pop(); // after the last separator
    const outputs = readFileSync(join(dir, "ggml-vocab-qwen2.gguf.out"), "utf8").split("\n");
    return inputs.map((text, i) => ({ text, ids: outputs[i].trim() === "" ? [] : outputs[i].trim().split(/\s+/).map(Number) }));
  };

  it("has the 46 vectors", () => {
    expect(load()).toHaveLength(46);
  });

  it("encodes every vector exactly as llama.cpp", () => {
    const tokenizer = qwen2Tokenizer();
    const failures: string[] = [];
    for (const [i, { text, ids }] of load().entries()) {
      const got = tokenizer.encode(text);
      if (JSON.stringify(got) !== JSON.stringify(ids)) {
        failures.push(`#${i} ${JSON.stringify(text)}\n  expected ${ids.join(" ")}\n  got      ${got.join(" ")}`);
      }
    }
    expect(failures.join("\n")).toBe("");
  });

  it("decodes every vector back to its text", () => {
    const tokenizer = qwen2Tokenizer();
    for (const { text, ids } of load()) expect(tokenizer.decode(ids)).toBe(text);
  });
});
