// The 7B and 72B shapes: `synth --shape 7b|72b --layers N` gives the exact tensor shapes of the big
// model in every type synth writes; a 2-layer 7B-shape Q4_0 file (the real 152064 x 3584 untied
// embedding and LM head, ~0.9 GB) loads and generates, and the same file split in 3 parts by the
// project's writer loads from paths and from URLs with logits bit-identical to the unsplit file.
import { createReadStream, mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { main as synthMain } from "../../cli/commands/synth";
import { loadQwen2 } from "../../compute/model/model";
import { createEngine } from "../../engine/engine";
import { QWEN2_PRESETS, SYNTH_TYPES, readQwen2Vocabulary, synthQwen2, type Qwen2Vocabulary } from "../../tools/synth";
import { openGGUF } from "../../weights/gguf/reader";
import type { GGUFSource } from "../../weights/gguf/source";
import { layoutGGUF, writeGGUFSplitFiles } from "../../weights/gguf/writer";

let vocabulary: Qwen2Vocabulary;
beforeAll(async () => { vocabulary = await readQwen2Vocabulary(); });

const dims = (model: ReturnType<typeof synthQwen2>, name: string) => model.tensors.find((t) => t.name === name)!.dims;

describe("the 7b and 72b shapes", () => {
  test("72b: Qwen2-72B-Instruct's config, 72.7B parameters (label 73B, as convert_hf_to_gguf rounds), untied 152064 x 8192 embedding and LM head", () => {
    expect(QWEN2_PRESETS["72b"]).toMatchObject({ hidden: 8192, layers: 80, heads: 64, kvHeads: 8, ffn: 29568, vocabSize: 152064, tied: false, contextLength: 32768 });
    const full = synthQwen2({ shape: "72b", vocabulary, type: "Q4_0" });
    expect(full.tensors.length).toBe(80 * 12 + 3);
    expect(full.parameterCount / 1e9).toBeCloseTo(72.7, 1);
    expect(new Map(full.metadata).get("general.size_label")!.value).toBe("73B");
    const four = synthQwen2({ shape: { ...QWEN2_PRESETS["72b"], layers: 4 }, vocabulary, type: "Q4_0" });
    expect(four.tensors.length).toBe(4 * 12 + 3);
    expect(dims(four, "token_embd.weight")).toEqual([8192, 152064]);
    expect(dims(four, "output.weight")).toEqual([8192, 152064]);
    expect(dims(four, "blk.3.attn_q.weight")).toEqual([8192, 8192]);
    expect(dims(four, "blk.3.attn_k.weight")).toEqual([8192, 1024]);
    expect(dims(four, "blk.3.attn_v.bias")).toEqual([1024]);
    expect(dims(four, "blk.0.ffn_gate.weight")).toEqual([8192, 29568]);
    expect(dims(four, "blk.0.ffn_down.weight")).toEqual([29568, 8192]);
    expect(new Map(four.metadata).get("qwen2.block_count")!.value).toBe(4);
  });

  test("every type synth writes makes both shapes (sizes from the layout; nothing is generated)", () => {
    const sizes: Record<string, number> = {};
    for (const type of SYNTH_TYPES) {
      for (const shape of ["7b", "72b"] as const) {
        // a short vocabulary keeps this quick; the layers' shapes are the big model's
        const model = synthQwen2({ shape: { ...QWEN2_PRESETS[shape], layers: 2, vocab: 256 }, vocabulary, type });
        expect(dims(model, "blk.1.ffn_up.weight")).toEqual([QWEN2_PRESETS[shape].hidden, QWEN2_PRESETS[shape].ffn]);
        sizes[`${shape} ${type}`] = layoutGGUF(model).fileSize;
      }
    }
    expect(Object.keys(sizes).length).toBe(2 * SYNTH_TYPES.length);
    // the full 7b in Q4_0 (every matrix Q4_0, LM head included) is about 4.3 GB
    const q4 = layoutGGUF(synthQwen2({ shape: "7b", vocabulary, type: "Q4_0" })).fileSize;
    expect(q4).toBeGreaterThan(4.2e9);
    expect(q4).toBeLessThan(4.4e9);
    expect(sizes["7b Q8_0"]).toBeGreaterThan(sizes["7b Q4_0"]);
  });
});

describe("a 2-layer 7B-shape Q4_0 file", () => {
  const tmp = mkdtempSync(join(tmpdir(), "qwasm-7b-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const whole = join(tmp, "q7b.gguf");
  const PROMPT = [9707, 11, 1879, 0, 151644, 872, 198, 151645];
  const load = (source: GGUFSource) => loadQwen2(source, { threads: 1, contextLength: 64, maxTokens: 16 });

  async function lastLogits(source: GGUFSource): Promise<Float32Array> {
    const model = await load(source);
    try {
      return (await model.forward.step(PROMPT, 0)).slice();
    } finally {
      await model.dispose();
    }
  }

  let reference: Float32Array;
  beforeAll(async () => {
    const code = await synthMain([whole, "--shape", "7b", "--layers", "2", "--type", "q4_0", "--seed", "11"]);
    expect(code).toBe(0);
    reference = await lastLogits(whole);
  }, 1_200_000); // ~2 minutes on a quiet machine: 1.1 G weights generated and quantized

  test("loads and generates a few tokens", async () => {
    expect(statSync(whole).size).toBeGreaterThan(0.85e9);
    expect(reference.length).toBe(152064);
    expect(reference.every(Number.isFinite)).toBe(true);
    const engine = await createEngine(whole, { threads: 1, contextLength: 64, maxSequences: 1 });
    try {
      const result = await engine.generateTokens(PROMPT, { maxTokens: 4, ignoreEos: true });
      expect(result.tokens.length).toBe(4);
      // greedy: the first generated token is the argmax of the prompt's last logits
      let best = 0;
      for (let i = 1; i < reference.length; i++) if (reference[i] > reference[best]) best = i;
      expect(result.tokens[0]).toBe(best);
      for (const t of result.tokens) expect(t >= 0 && t < 152064).toBe(true);
    } finally {
      await engine.dispose();
    }
  }, 300_000);

  test("split in 3 parts by the writer: from paths and from URLs, logits bit-identical to the unsplit file", async () => {
    const file = await openGGUF(whole);
    let written;
    try {
      written = await writeGGUFSplitFiles(join(tmp, "q7b"), {
        metadata: file.metadata,
        tensors: file.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: () => file.readTensor(t) })),
      }, { parts: 3 });
    } finally {
      await file.close();
    }
    const paths = written.map((p) => p.path);
    expect(paths.map((p) => basename(p))).toEqual(["q7b-00001-of-00003.gguf", "q7b-00002-of-00003.gguf", "q7b-00003-of-00003.gguf"]);
    expect(await lastLogits(paths[0])).toEqual(reference);
    expect(await lastLogits([paths[2], paths[0], paths[1]])).toEqual(reference);

    const server = createServer((request, response) => {
      const path = join(tmp, basename(request.url ?? ""));
      let size: number;
      try {
        size = statSync(path).size;
      } catch {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { "content-length": size });
      createReadStream(path).pipe(response);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      expect(await lastLogits(`${base}/${basename(paths[0])}`)).toEqual(reference);
    } finally {
      server.close();
    }
  }, 600_000);
});
