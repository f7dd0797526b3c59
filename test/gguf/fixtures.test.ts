// The llama.cpp-made files in ../shared/fixtures/mini (see its README): every one opens with the
// tensor types, metadata and sizes the README lists, reads the same from bytes, a path and a stream,
// and is written back byte for byte by the writer.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { GGUFError } from "../../platform/errors";
import { GGUFValueType } from "../../weights/gguf/metadata";
import { openGGUF, parseGGUFBytes, type GGUFFile } from "../../weights/gguf/reader";
import { GGMLType, typeInfo, type GGMLTypeName } from "../../weights/gguf/types";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { describeFixtures, FIXTURES_DIR } from "../fixtures";
import { chunkedStream, rng } from "./helpers";

const MINI = join(FIXTURES_DIR, "mini");

// README section 2: file -> [general.file_type, token_embd type, matmul weight type, size in bytes]
const FILES: Record<string, [number, GGMLTypeName, GGMLTypeName, number]> = {
  "F32": [0, "F32", "F32", 10622848],
  "F16": [1, "F16", "F16", 5378432],
  "BF16": [32, "BF16", "BF16", 5378432],
  "Q8_0-pure": [7, "Q8_0", "Q8_0", 2920128],
  "Q4_0-pure": [2, "Q4_0", "Q4_0", 1609024],
  "Q4_1-pure": [3, "Q4_1", "Q4_1", 1772896],
  "Q5_0-pure": [8, "Q5_0", "Q5_0", 1936800],
  "Q5_1-pure": [9, "Q5_1", "Q5_1", 2100672],
  "Q2_K-pure": [10, "Q2_K", "Q2_K", 994432],
  "Q3_K-pure": [12, "Q3_K", "Q3_K", 1260768],
  "Q4_K-pure": [15, "Q4_K", "Q4_K", 1609024],
  "Q5_K-pure": [17, "Q5_K", "Q5_K", 1936800],
  "Q6_K-pure": [18, "Q6_K", "Q6_K", 2285056],
  "IQ4_NL-pure": [25, "IQ4_NL", "IQ4_NL", 1609024],
  "Q4_0": [2, "Q6_K", "Q4_0", 1879552],
  "Q4_K_M": [15, "Q6_K", "Q4_K", 1938688],
};

const LAYER_TENSORS: Record<string, number[]> = {
  "attn_norm.weight": [256], "attn_q.weight": [256, 256], "attn_q.bias": [256],
  "attn_k.weight": [256, 128], "attn_k.bias": [128], "attn_v.weight": [256, 128], "attn_v.bias": [128],
  "attn_output.weight": [256, 256], "ffn_norm.weight": [256],
  "ffn_gate.weight": [256, 768], "ffn_up.weight": [256, 768], "ffn_down.weight": [768, 256],
};

function expectedTensors(file: string): Map<string, { dims: number[]; type: number }> {
  const [, embd, weights] = FILES[file];
  const out = new Map<string, { dims: number[]; type: number }>();
  out.set("token_embd.weight", { dims: [256, 4099], type: GGMLType[embd] });
  out.set("output_norm.weight", { dims: [256], type: GGMLType.F32 });
  for (const layer of [0, 1]) {
    for (const [suffix, dims] of Object.entries(LAYER_TENSORS)) {
      const name = `blk.${layer}.${suffix}`;
      let type: number = dims.length === 1 ? GGMLType.F32 : GGMLType[weights];
      // llama-quantize's Q4_K_M mix gives the last layer's attn_v and ffn_down more bits.
      if (file === "Q4_K_M" && layer === 1 && (suffix === "attn_v.weight" || suffix === "ffn_down.weight")) type = GGMLType.Q6_K;
      out.set(name, { dims, type });
    }
  }
  return out;
}

async function tensorData(file: GGUFFile): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  await file.readTensorData((t) => {
    const dest = new Uint8Array(t.nbytes);
    out.set(t.name, dest);
    return dest;
  });
  return out;
}

describeFixtures("GGUF fixtures (../shared/fixtures/mini)", () => {
  it("has exactly the files the README lists", () => {
    const present = readdirSync(MINI).filter((f) => f.endsWith(".gguf")).map((f) => f.slice(0, -5)).sort();
    expect(present).toEqual(Object.keys(FILES).sort());
  });

  for (const [name, [fileType, , , size]] of Object.entries(FILES)) {
    it(`${name}.gguf: tensors, types, metadata and size`, async () => {
      const file = await openGGUF(join(MINI, `${name}.gguf`));
      try {
        expect(file.version).toBe(3);
        expect(file.fileSize).toBe(size);
        expect(file.alignment).toBe(32);
        const expected = expectedTensors(name);
        expect(file.tensors.length).toBe(26);
        for (const t of file.tensors) {
          expect(expected.get(t.name), t.name).toEqual({ dims: t.dims, type: t.type });
          const info = typeInfo(t.type)!;
          expect(t.nbytes).toBe((t.dims[0] / info.blockSize) * info.typeSize * (t.dims[1] ?? 1));
        }
        // Tensors are packed in table order with padding to the alignment, and fill the file.
        const last = [...file.tensors].sort((a, b) => a.offset - b.offset).at(-1)!;
        expect(file.dataOffset + last.offset + last.nbytes).toBeLessThanOrEqual(size);
        expect(Math.ceil((file.dataOffset + last.offset + last.nbytes) / 32) * 32).toBe(size);

        const m = file.metadata;
        expect(m.getString("general.architecture")).toBe("qwen2");
        expect(m.getString("general.type")).toBe("model");
        expect(m.getString("general.name")).toBe("Qwen2 synthetic mini");
        expect(m.getString("general.size_label")).toBe("2.6M");
        expect(m.getU32("general.file_type")).toBe(fileType);
        expect(m.getU32("general.quantization_version")).toBe(2);
        expect(m.getU32("qwen2.block_count")).toBe(2);
        expect(m.getU32("qwen2.context_length")).toBe(4096);
        expect(m.getU32("qwen2.embedding_length")).toBe(256);
        expect(m.getU32("qwen2.feed_forward_length")).toBe(768);
        expect(m.getU32("qwen2.attention.head_count")).toBe(4);
        expect(m.getU32("qwen2.attention.head_count_kv")).toBe(2);
        expect(m.getF32("qwen2.rope.freq_base")).toBe(1e6);
        expect(m.entry("qwen2.attention.layer_norm_rms_epsilon")).toEqual({ type: GGUFValueType.FLOAT32, value: Math.fround(1e-6) });
        expect(m.has("qwen2.rope.dimension_count")).toBe(false);
        expect(m.getString("tokenizer.ggml.model")).toBe("gpt2");
        expect(m.getString("tokenizer.ggml.pre")).toBe("qwen2");
        const tokens = m.getStringArray("tokenizer.ggml.tokens");
        expect(tokens.length).toBe(4099);
        expect(tokens.slice(4096)).toEqual(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
        const tokenType = m.getArray("tokenizer.ggml.token_type", GGUFValueType.INT32).items as Int32Array;
        expect(tokenType.length).toBe(4099);
        expect(tokenType.slice(0, 4096).every((t) => t === 1)).toBe(true);
        expect([...tokenType.slice(4096)]).toEqual([3, 3, 3]);
        expect(m.getStringArray("tokenizer.ggml.merges").length).toBe(3840);
        expect(m.getU32("tokenizer.ggml.eos_token_id")).toBe(4098);
        expect(m.getU32("tokenizer.ggml.padding_token_id")).toBe(4096);
        expect(m.getU32("tokenizer.ggml.bos_token_id")).toBe(4096);
        expect(m.getBool("tokenizer.ggml.add_bos_token")).toBe(false);
        expect(m.getString("tokenizer.chat_template")).toContain("<|im_start|>");
      } finally {
        await file.close();
      }
    });
  }

  it("every file reads the same from bytes, a path and a stream of random chunks", async () => {
    const random = rng(99);
    for (const name of Object.keys(FILES)) {
      const path = join(MINI, `${name}.gguf`);
      const bytes = new Uint8Array(readFileSync(path));
      const fromBytes = parseGGUFBytes(bytes);
      const fromPath = await openGGUF(path);
      const fromStream = await openGGUF(chunkedStream(bytes, random, 70000), { firstReadBytes: 4096 });
      for (const other of [fromPath, fromStream]) {
        expect(other.version).toBe(fromBytes.version);
        expect([...other.metadata]).toEqual([...fromBytes.metadata]);
        expect(other.tensors).toEqual(fromBytes.tensors);
        expect(other.dataOffset).toBe(fromBytes.dataOffset);
      }
      const data = await tensorData(fromBytes);
      for (const other of [fromPath, fromStream]) {
        const otherData = await tensorData(other);
        expect([...otherData.keys()]).toEqual([...data.keys()]);
        for (const [tensor, bytes] of data) expect(Buffer.compare(otherData.get(tensor)!, bytes), `${name} ${tensor}`).toBe(0);
      }
      await fromPath.close();
    }
  });

  it("the writer reproduces every file byte for byte", async () => {
    for (const name of Object.keys(FILES)) {
      const bytes = new Uint8Array(readFileSync(join(MINI, `${name}.gguf`)));
      const file = parseGGUFBytes(bytes);
      const written = await writeGGUFBytes({
        metadata: file.metadata,
        tensors: file.tensors.map((t) => ({ ...t, data: () => file.readTensor(t) })),
      });
      expect(written.length, name).toBe(bytes.length);
      expect(Buffer.compare(written, bytes), name).toBe(0);
    }
  });

  it("random bit flips in a real header: each file parses or throws a GGUFError", async () => {
    const original = new Uint8Array(readFileSync(join(MINI, "Q4_K_M.gguf")));
    const headerEnd = parseGGUFBytes(original).dataOffset;
    const random = rng(4242);
    for (let i = 0; i < 150; i++) {
      const bytes = original.slice();
      // Flips among the first kilobytes hit counts, keys, types and the first lengths.
      const region = random() < 0.5 ? 2048 : headerEnd;
      bytes[Math.floor(random() * region)] ^= 1 << Math.floor(random() * 8);
      try {
        parseGGUFBytes(bytes);
      } catch (e) {
        if (!(e instanceof GGUFError)) throw e;
      }
    }
  });
});
