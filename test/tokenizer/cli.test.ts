// The tokenize, detokenize and bench-tokenizer commands, run in-process with stdout captured.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import * as benchTokenizer from "../../cli/commands/bench-tokenizer";
import * as detokenize from "../../cli/commands/detokenize";
import * as tokenize from "../../cli/commands/tokenize";
import { QwasmError } from "../../platform/errors";
import { describeFixtures, fixturePath } from "../fixtures";
import { QWEN_TOKENIZER_JSON_PATH, miniTokenizer, qwen2TokenizerJSON } from "./qwen-vocab";

async function run(command: { main(argv: string[]): Promise<number> }, argv: string[], stdin?: string[]): Promise<string> {
  let out = "";
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
    return true;
  });
  if (stdin) vi.spyOn(process, "stdin", "get").mockReturnValue(Readable.from(stdin.map((s) => Buffer.from(s))) as never);
  try {
    expect(await command.main(argv)).toBe(0);
  } finally {
    write.mockRestore();
  }
  return out;
}

afterEach(() => vi.restoreAllMocks());

// A small tokenizer.json (the mini vocabulary: 4096 tokens, 3840 merges, 3 specials) keeps each
// command's load quick.
function miniTokenizerJSON(): string {
  const json = qwen2TokenizerJSON();
  const vocab = Object.fromEntries(Object.entries(json.model.vocab).filter(([, id]) => id < 4096));
  const added = json.added_tokens!.map((t) => ({ ...t, id: t.id - 151643 + 4096 }));
  const file = join(mkdtempSync(join(tmpdir(), "qwasm-tokenizer-")), "tokenizer.json");
  writeFileSync(file, JSON.stringify({ ...json, added_tokens: added, model: { ...json.model, vocab, merges: json.model.merges.slice(0, 3840) } }));
  return file;
}

describe("qwasm tokenize / detokenize with a tokenizer.json", () => {
  const model = miniTokenizerJSON();
  const mini = miniTokenizer();
  const ids = (text: string, special = false) => JSON.stringify(mini.encode(text, { special }));

  it("tokenizes --text, with and without --special", async () => {
    expect(await run(tokenize, [model, "--text", "Hello world"])).toBe("[39,301,385,1879]\n");
    expect(await run(tokenize, [model, "--text", "<|im_start|>hi", "--special"])).toBe("[4097,71,72]\n");
    expect(await run(tokenize, [model, "--text", "<|im_start|>hi"])).toBe(ids("<|im_start|>hi") + "\n");
    expect(ids("<|im_start|>hi")).not.toContain("4097");
  });

  it("tokenizes --file", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "qwasm-tokenize-")), "input.txt");
    writeFileSync(file, "Hello world\n");
    expect(await run(tokenize, [model, "--file", file])).toBe("[39,301,385,1879,198]\n");
  });

  it("tokenizes JSON lines from stdin (split across chunks)", async () => {
    const out = await run(tokenize, [model, "--jsonl"], ['"Hello world"\n"<|im_', 'end|>"\r\n\n"\\u00e4"']);
    expect(out).toBe(`${ids("Hello world")}\n${ids("<|im_end|>")}\n${ids("ä")}\n`);
  });

  it("detokenizes --ids and JSON lines", async () => {
    expect(await run(detokenize, [model, "--ids", "39,301,385,1879,4098"])).toBe("Hello world<|im_end|>\n");
    expect(await run(detokenize, [model, "--ids", "[39, 301, 385, 4098]", "--skip-special"])).toBe("Hello\n");
    expect(await run(detokenize, [model, "--jsonl"], ["[39,301,385]\n[1879,0]\n"])).toBe('"Hello"\n" world!"\n');
  });

  it("rejects bad arguments", async () => {
    await expect(tokenize.main([model])).rejects.toThrow(QwasmError);
    await expect(tokenize.main([model, "--text", "a", "--jsonl"])).rejects.toThrow(/exactly one/);
    await expect(detokenize.main([model, "--ids", "1,x"])).rejects.toThrow(/not a list of token ids/);
    await expect(detokenize.main([model, "--ids", "4099"])).rejects.toThrow(/outside the vocabulary/);
  });
});

describeFixtures("qwasm tokenize with a GGUF model", () => {
  it("reads the tokenizer from the mini fixture's header", async () => {
    const model = fixturePath("mini", "Q4_0.gguf");
    expect(await run(tokenize, [model, "--text", "<|im_start|>user\nhi<|im_end|>", "--special"])).toBe("[4097,872,198,71,72,4098]\n");
    expect(await run(detokenize, [model, "--ids", "39,301,385,1879"])).toBe("Hello world\n");
  });
});

describe("qwasm bench-tokenizer", () => {
  it("prints MB/s", async () => {
    const out = await run(benchTokenizer, [QWEN_TOKENIZER_JSON_PATH, "--bytes", "20000", "--passes", "1", "--json"]);
    const result = JSON.parse(out);
    expect(result.bytes).toBeGreaterThanOrEqual(20000);
    expect(result.coldMBps).toBeGreaterThan(0);
    expect(result.tokens).toBeGreaterThan(1000);
  });
});
