// llama.cpp's own Qwen2 tokenizer vectors (../shared/fixtures/tokenizer): encoded with the full
// vocabulary, no special-token parsing, no BOS, every id must be identical.
import { expect, it } from "vitest";
import { describeFixtures, readFixture } from "../fixtures";
import { qwen2Tokenizer } from "./qwen-vocab";

describeFixtures("llama.cpp Qwen2 tokenizer vectors", () => {
  const load = () => {
    const inputs = readFixture("tokenizer", "ggml-vocab-qwen2.gguf.inp").toString("utf8").split("\n__ggml_vocab_test__\n");
    inputs.pop(); // after the last separator
    const outputs = readFixture("tokenizer", "ggml-vocab-qwen2.gguf.out").toString("utf8").split("\n");
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
