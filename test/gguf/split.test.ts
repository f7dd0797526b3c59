// Split GGUF (llama.cpp's gguf-split layout): the writer's parts, opening a split model from the first
// path, a list of paths, URLs and Blobs with logits bit-identical to the unsplit file, and one test per
// rule that refuses a bad set of parts.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2 } from "../../compute/model/model";
import { QwasmError } from "../../platform/errors";
import { readQwen2Vocabulary, synthQwen2, type Qwen2Vocabulary } from "../../tools/synth";
import { GGUFValueType, kv } from "../../weights/gguf/metadata";
import { openGGUF, parseGGUFBytes, type GGUFFile } from "../../weights/gguf/reader";
import type { GGUFPartSource, GGUFSource } from "../../weights/gguf/source";
import { parseSplitName, splitPartName, SplitGGUFError } from "../../weights/gguf/split";
import {
  splitGGUF, writeGGUFBytes, writeGGUFFile, writeGGUFSplitBytes, writeGGUFSplitFiles, type GGUFToWrite,
} from "../../weights/gguf/writer";
import { smallModel } from "./helpers";

const tmp = mkdtempSync(join(tmpdir(), "qwasm-split-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let vocabulary: Qwen2Vocabulary;
let model: GGUFToWrite;
let whole: string;
let parts: string[];
const TOKENS = [100, 11, 300, 0, 42, 7, 512, 250];

beforeAll(async () => {
  vocabulary = await readQwen2Vocabulary();
  model = synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 3 });
  whole = join(tmp, "tiny.gguf");
  await writeGGUFFile(whole, model);
  parts = (await writeGGUFSplitFiles(join(tmp, "tiny"), model, { parts: 3 })).map((p) => p.path);
});

async function logitsOf(source: GGUFSource | GGUFFile): Promise<Float32Array> {
  const m = await loadQwen2(source, { threads: 1, contextLength: 64, maxTokens: 16 });
  try {
    return (await m.forward.step(TOKENS, 0, true)).slice();
  } finally {
    await m.dispose();
  }
}

async function tensorBytes(file: GGUFFile): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  await file.readTensorData((t) => {
    const dest = new Uint8Array(t.nbytes);
    out.set(t.name, dest);
    return dest;
  });
  return out;
}

function serve(root: string): Promise<{ server: Server; base: string }> {
  const server = createServer((request, response) => {
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(root, basename(new URL(request.url!, "http://x").pathname)));
    } catch {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-length": bytes.length });
    for (let at = 0; at < bytes.length; at += 65536) response.write(bytes.subarray(at, at + 65536));
    response.end();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () =>
    resolve({ server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

/** The error `promise` rejects with (it must reject). */
async function failure(promise: Promise<unknown>): Promise<QwasmError> {
  const e = await promise.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(QwasmError);
  return e as QwasmError;
}

describe("the writer's split files", () => {
  it("names parts like llama.cpp and reads the names back", () => {
    expect(splitPartName("/m/qwen2-72b-instruct-q4_k_m", 0, 2)).toBe("/m/qwen2-72b-instruct-q4_k_m-00001-of-00002.gguf");
    expect(parseSplitName("https://h/x/a-00003-of-00012.gguf?download=true")).toEqual({ prefix: "https://h/x/a", no: 2, count: 12 });
    expect(parseSplitName("a.gguf")).toBeUndefined();
  });

  it("puts all metadata in the first part, the split keys in every part, with gguf-split's types", () => {
    const split = splitGGUF(model, { maxTensors: 10 });
    const n = model.tensors.length;
    expect(split.length).toBe(Math.ceil(n / 10));
    expect(split.map((p) => p.tensors.length).reduce((a, b) => a + b)).toBe(n);
    split.forEach((part, no) => {
      const meta = new Map(part.metadata);
      expect(meta.get("split.no")).toEqual({ type: GGUFValueType.UINT16, value: no });
      expect(meta.get("split.count")).toEqual({ type: GGUFValueType.UINT16, value: split.length });
      expect(meta.get("split.tensors.count")).toEqual({ type: GGUFValueType.INT32, value: n });
      expect(meta.has("general.architecture")).toBe(no === 0);
      if (no > 0) expect(meta.size).toBe(3);
    });
    expect([...split[0].metadata].length).toBe([...model.metadata].length + 3);
  });

  it("cuts by bytes (padded tensor sizes) and into an exact number of parts", () => {
    const sizes = model.tensors.map((t) => Math.ceil(parseGGUFBytesLayout(t) / 32) * 32);
    const max = Math.max(...sizes);
    const byBytes = splitGGUF(model, { maxBytes: max + 1000 });
    for (const part of byBytes) {
      const bytes = part.tensors.reduce((s, t) => s + Math.ceil(parseGGUFBytesLayout(t) / 32) * 32, 0);
      expect(part.tensors.length === 1 || bytes <= max + 1000).toBe(true);
    }
    expect(byBytes.length).toBeGreaterThan(1);
    for (const count of [2, 3, 7]) expect(splitGGUF(model, { parts: count }).length).toBe(count);
    expect(() => splitGGUF(model, {})).toThrow(/one of maxBytes, maxTensors or parts/);
    expect(() => splitGGUF(model, { parts: 1000 })).toThrow(/at least 1000 tensors/);
  });

  it("writes parts that are each a whole GGUF file", async () => {
    const bytes = await writeGGUFSplitBytes(smallModel(), { maxTensors: 1 });
    expect(bytes.length).toBe(3);
    for (const b of bytes) expect(parseGGUFBytes(b).tensors.length).toBe(1);
    expect(parts.map((p) => basename(p))).toEqual(["tiny-00001-of-00003.gguf", "tiny-00002-of-00003.gguf", "tiny-00003-of-00003.gguf"]);
  });
});

function parseGGUFBytesLayout(t: GGUFToWrite["tensors"][number]): number {
  return synthBytes.get(t.name) ?? (() => { throw new Error(`unknown ${t.name}`); })();
}
const synthBytes = new Map<string, number>();
beforeAll(async () => {
  for (const t of parseGGUFBytes(await writeGGUFBytes(model)).tensors) synthBytes.set(t.name, t.nbytes);
});

describe("opening a split model", () => {
  let reference: Float32Array;
  let wholeBytes: Map<string, Uint8Array>;
  beforeAll(async () => {
    reference = await logitsOf(whole);
    const file = await openGGUF(whole);
    wholeBytes = await tensorBytes(file);
    await file.close();
  });

  it("from the first part's path: one tensor list, the first part's metadata, the parts listed", async () => {
    const file = await openGGUF(parts[0]);
    try {
      const unsplit = await openGGUF(whole);
      expect(file.tensors.map((t) => t.name)).toEqual(unsplit.tensors.map((t) => t.name));
      expect(file.metadata.getString("general.architecture")).toBe("qwen2");
      await unsplit.close();
      expect(file.parts.map((p) => [p.name, p.no])).toEqual(parts.map((p, i) => [p, i]));
      expect(file.parts.reduce((s, p) => s + p.tensors.length, 0)).toBe(file.tensors.length);
      expect(file.partOf("output_norm.weight").no).toBe(2);
      expect(await tensorBytes(file)).toEqual(wholeBytes);
      expect(await file.readTensor("token_embd.weight")).toEqual(wholeBytes.get("token_embd.weight"));
    } finally {
      await file.close();
    }
  });

  it("gives logits bit-identical to the unsplit file: first path, any part's path, a list of paths", async () => {
    expect(reference.length).toBe(TOKENS.length * 515);
    expect(await logitsOf(parts[0])).toEqual(reference);
    expect(await logitsOf(parts[2])).toEqual(reference);
    expect(await logitsOf([parts[1], parts[2], parts[0]])).toEqual(reference);
  });

  it("from URLs: the first part's URL (the others found by name) and a list of URLs", async () => {
    const { server, base } = await serve(tmp);
    try {
      const urls = parts.map((p) => `${base}/${basename(p)}`);
      expect(await logitsOf(urls[0])).toEqual(reference);
      expect(await logitsOf(new URL(urls[0]))).toEqual(reference);
      expect(await logitsOf([urls[2], urls[0], urls[1]])).toEqual(reference);
      const missing = await failure(openGGUF(`${base}/nothere-00001-of-00002.gguf`));
      expect(missing.code).toBe("HTTP_STATUS");
    } finally {
      server.close();
    }
  });

  it("as Blobs and Files in any order", async () => {
    const blobs = parts.map((p) => new Blob([readFileSync(p)]));
    expect(await logitsOf([blobs[2], blobs[1], blobs[0]])).toEqual(reference);
    const files = parts.map((p) => new File([readFileSync(p)], basename(p)));
    const file = await openGGUF([files[1], files[0], files[2]]);
    expect(file.parts.map((p) => p.name)).toEqual(parts.map((p) => basename(p)));
    expect(await logitsOf(file)).toEqual(reference);
    // One Blob alone cannot find its siblings.
    const e = await failure(openGGUF(blobs[0]));
    expect(e.message).toMatch(/part 1 of 3 of a split model: pass all its parts as a list/);
  });
});

describe("bad sets of parts are refused, naming the file", () => {
  /** Parts of `input` split by `options`, with `edit` applied to their metadata, written under `dir`. */
  async function writeParts(dir: string, input: GGUFToWrite, count: number,
    edit?: (no: number, meta: [string, ReturnType<typeof kv.u16>][]) => void): Promise<string[]> {
    mkdirSync(join(tmp, dir), { recursive: true });
    const split = splitGGUF(input, { parts: count });
    const out: string[] = [];
    for (let no = 0; no < split.length; no++) {
      const meta = [...split[no].metadata];
      edit?.(no, meta);
      const path = splitPartName(join(tmp, dir, "m"), no, split.length);
      writeFileSync(path, await writeGGUFBytes({ ...split[no], metadata: meta }));
      out.push(path);
    }
    return out;
  }
  const setKey = (meta: [string, ReturnType<typeof kv.u16>][], key: string, entry: ReturnType<typeof kv.u16>) => {
    meta[meta.findIndex(([k]) => k === key)] = [key, entry];
  };

  it("a missing part (by name, and in a list)", async () => {
    mkdirSync(join(tmp, "missing"));
    copyFileSync(parts[0], join(tmp, "missing", basename(parts[0])));
    copyFileSync(parts[2], join(tmp, "missing", basename(parts[2])));
    const e = await failure(openGGUF(join(tmp, "missing", basename(parts[0]))));
    expect(e).toBeInstanceOf(SplitGGUFError);
    expect(e.message).toMatch(/part 1 of 3 of a split model, but part 2 is missing: .*tiny-00002-of-00003\.gguf/);
    const listed = await failure(openGGUF([parts[0], parts[2]]));
    expect(listed.message).toMatch(/1 of the 3 parts is missing: tiny-00002-of-00003\.gguf/);
  });

  it("split.count that disagrees between parts", async () => {
    const other = await writeParts("count", model, 4);
    const e = await failure(openGGUF([parts[0], parts[1], other[2]]));
    expect(e.code).toBe("GGUF_INVALID");
    expect(e.message).toMatch(/says split.count 3, but .*m-00003-of-00004\.gguf says 4: they are not parts of one model/);
  });

  it("split.no doubled", async () => {
    const e = await failure(openGGUF([parts[0], parts[1], parts[1]]));
    expect(e.message).toMatch(/tiny-00002-of-00003\.gguf and .*tiny-00002-of-00003\.gguf are both part 2 of 3/);
  });

  it("split.no out of range", async () => {
    const bad = await writeParts("range", model, 3, (no, meta) => { if (no === 2) setKey(meta, "split.no", kv.u16(5)); });
    const blobs = bad.map((p) => new Blob([readFileSync(p)]));
    const e = await failure(openGGUF(blobs));
    expect(e.message).toMatch(/part 3 of the list has split.no 5, outside 0..2 of split.count 3/);
  });

  it("a file name that disagrees with split.no", async () => {
    const bad = await writeParts("renamed", model, 3);
    const swapped = join(tmp, "renamed", "m-00002-of-00003.gguf");
    writeFileSync(swapped, readFileSync(bad[2]));
    writeFileSync(bad[2], readFileSync(parts[1]));
    const e = await failure(openGGUF(bad[0]));
    expect(e.message).toMatch(/m-00002-of-00003\.gguf is named part 2 of 3, but its metadata says part 3 of 3/);
  });

  it("the file opened says another count in its name than in its metadata", async () => {
    mkdirSync(join(tmp, "count-name"));
    const renamed = join(tmp, "count-name", "tiny-00001-of-00002.gguf");
    copyFileSync(parts[0], renamed);
    const e = await failure(openGGUF(renamed));
    expect(e.message).toMatch(/tiny-00001-of-00002\.gguf is named part 1 of 2, but its metadata says part 1 of 3/);
  });

  it("parts of another model (a different name prefix)", async () => {
    mkdirSync(join(tmp, "other"));
    const renamed = join(tmp, "other", "qwen-00002-of-00003.gguf");
    copyFileSync(parts[1], renamed);
    const e = await failure(openGGUF([parts[0], renamed, parts[2]]));
    expect(e.message).toMatch(/have different names \("(qwen|tiny)" and "(tiny|qwen)"\): parts of different models/);
  });

  it("a tensor in two parts", async () => {
    const input = smallModel();
    const split = splitGGUF(input, { parts: 2 });
    const second = { ...split[1], tensors: [...split[1].tensors, split[0].tensors[0]] };
    const e = await failure(openGGUF([await writeGGUFBytes(split[0]), await writeGGUFBytes(second)]));
    expect(e.message).toMatch(/tensor a\.f32 is in both part 1 of the list and part 2 of the list/);
  });

  it("a tensor missing (the parts hold fewer than split.tensors.count)", async () => {
    const split = splitGGUF(smallModel(), { parts: 2 });
    const short = { ...split[1], tensors: split[1].tensors.slice(1) };
    const e = await failure(openGGUF([await writeGGUFBytes(split[0]), await writeGGUFBytes(short)]));
    expect(e.message).toMatch(/the 2 parts hold 2 tensors, but split.tensors.count is 3: 1 tensor is missing/);
  });

  it("split.tensors.count that disagrees between parts", async () => {
    const bad = await writeParts("tcount", model, 3, (no, meta) => { if (no === 1) setKey(meta, "split.tensors.count", kv.i32(7)); });
    const e = await failure(openGGUF(bad[0]));
    expect(e.message).toMatch(/says split.tensors.count \d+, but .*m-00002-of-00003\.gguf says 7/);
  });

  it("a whole file among parts", async () => {
    const e = await failure(openGGUF([parts[0], whole, parts[2]]));
    expect(e.message).toMatch(/tiny\.gguf is a whole GGUF file \(no split.count\), not a part of a split model/);
  });

  it("a split part without a name to find the others by", async () => {
    mkdirSync(join(tmp, "noname"));
    const path = join(tmp, "noname", "model.gguf");
    copyFileSync(parts[0], path);
    const e = await failure(openGGUF(path));
    expect(e.message).toMatch(/model\.gguf is part 1 of 3 of a split model, but its name does not end in -00001-of-00003\.gguf/);
  });

  it("a hostile part: the reader's checks apply to every part, and the message names it", async () => {
    mkdirSync(join(tmp, "hostile"));
    const copies = parts.map((p) => join(tmp, "hostile", basename(p)));
    parts.forEach((p, i) => copyFileSync(p, copies[i]));
    const bytes = readFileSync(parts[2]);
    writeFileSync(copies[2], bytes.subarray(0, bytes.length - 100)); // truncated: a tensor runs past the end
    const e = await failure(openGGUF(copies[0]));
    expect(e.code).toBe("GGUF_INVALID");
    expect(e.message).toMatch(/tiny-00003-of-00003\.gguf: GGUF data of .* lie past the end of the file/);
  });

  it("an empty list", async () => {
    const e = await failure(openGGUF([] as GGUFPartSource[]));
    expect(e.code).toBe("INVALID_ARGUMENT");
  });
});
