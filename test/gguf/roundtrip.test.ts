// The writer and the reader against each other on a small file with every value type, from bytes,
// from a file, from streams cut into random chunks; lazily produced data; the writer's refusals.
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { QwasmError } from "../../platform/errors";
import { GGUFValueType, kv, type GGUFEntry } from "../../weights/gguf/metadata";
import { openGGUF, parseGGUFBytes, type GGUFFile, type GGUFReadProgress } from "../../weights/gguf/reader";
import { GGMLType } from "../../weights/gguf/types";
import { layoutGGUF, writeGGUF, writeGGUFBytes, writeGGUFFile, type GGUFToWrite } from "../../weights/gguf/writer";
import { chunkedStream, rng, smallModel, smallModelBytes } from "./helpers";

const tmp = mkdtempSync(join(tmpdir(), "qwasm-gguf-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function allTensorBytes(file: GGUFFile): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  await file.readTensorData((t) => {
    const dest = new Uint8Array(t.nbytes);
    out.set(t.name, dest);
    return dest;
  });
  return out;
}

async function expectedTensorBytes(model: GGUFToWrite): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const t of model.tensors) {
    const produced = typeof t.data === "function" ? await t.data() : t.data;
    const chunks = produced instanceof Uint8Array ? [produced] : [...(produced as Iterable<Uint8Array>)];
    const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) { bytes.set(c, at); at += c.length; }
    out.set(t.name, bytes);
  }
  return out;
}

describe("GGUF writer → reader round trip", () => {
  it("keeps every metadata value, its type and the key order", async () => {
    const model = smallModel();
    const file = parseGGUFBytes(await writeGGUFBytes(model));
    expect(file.version).toBe(3);
    expect([...file.metadata]).toEqual([...(model.metadata as [string, GGUFEntry][])]);
    expect(file.metadata.get("test.u64")).toBe(2n ** 63n + 5n);
    expect(file.metadata.get("test.u64.small")).toBe(12345);
    expect(file.metadata.get("test.i64")).toBe(-(2n ** 60n));
    expect(file.metadata.getF32("test.f32")).toBe(Math.fround(1e-6));
    expect(file.metadata.getStringArray("test.strings")).toEqual(["a", "", "ĠĠ", "<|im_end|>"]);
    expect(file.metadata.getArray("test.i32s").items).toEqual(Int32Array.from([1, -2, 3]));
    expect(file.metadata.getString("general.name")).toBe("tiny ünïcödé ✓");
  });

  it("keeps tensor infos and bytes, with aligned offsets", async () => {
    const model = smallModel();
    const bytes = await writeGGUFBytes(model);
    const file = parseGGUFBytes(bytes);
    expect(file.tensors.map(({ name, dims, type }) => ({ name, dims, type }))).toEqual(
      model.tensors.map(({ name, dims, type }) => ({ name, dims, type })));
    expect(file.tensors.map((t) => t.nbytes)).toEqual([16, 36, 48]);
    expect(file.tensors.map((t) => t.offset)).toEqual([0, 32, 96]);
    expect(file.dataOffset % 32).toBe(0);
    expect(bytes.length).toBe(file.dataOffset + 96 + 64);
    expect(await allTensorBytes(file)).toEqual(await expectedTensorBytes(model));
    expect(await file.readTensor("b.q4_0")).toEqual((await expectedTensorBytes(model)).get("b.q4_0"));
  });

  it("uses general.alignment", async () => {
    const model = smallModel();
    model.metadata = [["general.alignment", kv.u32(128)], ...(model.metadata as [string, GGUFEntry][])];
    const file = parseGGUFBytes(await writeGGUFBytes(model));
    expect(file.alignment).toBe(128);
    expect(file.dataOffset % 128).toBe(0);
    expect(file.tensors.map((t) => t.offset)).toEqual([0, 128, 256]);
    expect(await allTensorBytes(file)).toEqual(await expectedTensorBytes(smallModel()));
  });

  it("reads the same from bytes, a file path, a file URL, a Blob and streams in random chunks", async () => {
    const bytes = await smallModelBytes();
    const path = join(tmp, "small.gguf");
    await writeGGUFFile(path, smallModel());
    const reference = parseGGUFBytes(bytes);
    const referenceData = await allTensorBytes(reference);
    const random = rng(7);
    const sources = [
      path, new URL(`file://${path}`), new Blob([bytes as Uint8Array<ArrayBuffer>]),
      ...[1, 3, 17, 100, 5000].map((max) => chunkedStream(bytes, random, max)),
    ];
    // Read a few bytes first, so that the header is parsed in several attempts from a growing prefix.
    for (const [i, source] of sources.entries()) {
      const file = await openGGUF(source, { firstReadBytes: 1 + 13 * i });
      expect(file.version).toBe(reference.version);
      expect([...file.metadata]).toEqual([...reference.metadata]);
      expect(file.tensors).toEqual(reference.tensors);
      expect(file.dataOffset).toBe(reference.dataOffset);
      expect(await allTensorBytes(file)).toEqual(referenceData);
      await file.close();
    }
  });

  it("streams: skips tensors given no destination, reports progress, reads once", async () => {
    const bytes = await smallModelBytes();
    const headerEnd = parseGGUFBytes(bytes).dataOffset - 1;
    const file = await openGGUF(chunkedStream(bytes, rng(3), 10), { firstReadBytes: 40, maxHeaderBytes: headerEnd + 20 });
    expect(file.fileSize).toBeUndefined(); // the stream has not ended yet
    const got = new Map<string, Uint8Array>();
    const progress: GGUFReadProgress[] = [];
    await file.readTensorData((t) => {
      if (t.name === "b.q4_0") return null;
      const dest = new Uint8Array(t.nbytes);
      got.set(t.name, dest);
      return dest;
    }, (p) => progress.push(p));
    expect([...got.keys()]).toEqual(["a.f32", "c.f16"]);
    expect(got.get("c.f16")).toEqual((await expectedTensorBytes(smallModel())).get("c.f16"));
    expect(progress.at(-1)).toMatchObject({ loadedBytes: 100, totalBytes: 100, tensorsDone: 3, tensorCount: 3 });
    const loaded = progress.map((p) => p.loadedBytes);
    expect(loaded).toEqual([...loaded].sort((a, b) => a - b));
    await expect(file.readTensorData(() => null)).rejects.toThrow(/only once/);
    await expect(file.readTensor("a.f32")).rejects.toThrow(/readTensorData/);
  });

  it("reads from a URL (fetch), with the size from Content-Length", async () => {
    const bytes = await smallModelBytes();
    const server = createServer((request, response) => {
      if (request.url !== "/small.gguf") { response.writeHead(404).end(); return; }
      response.writeHead(200, { "content-length": bytes.length });
      // Several writes, so that the body arrives in more than one chunk.
      for (let at = 0; at < bytes.length; at += 100) response.write(bytes.subarray(at, at + 100));
      response.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const file = await openGGUF(`http://127.0.0.1:${port}/small.gguf`, { firstReadBytes: 64 });
      expect(file.fileSize).toBe(bytes.length);
      expect(await allTensorBytes(file)).toEqual(await allTensorBytes(parseGGUFBytes(bytes)));
      await expect(openGGUF(new URL(`http://127.0.0.1:${port}/missing.gguf`))).rejects.toThrow(/HTTP 404/);
    } finally {
      server.close();
    }
  });

  it("reads a local file's tensors straight into their destinations in shared memory, and copies what a file returns as new bytes", async () => {
    const bytes = await smallModelBytes();
    const path = join(tmp, "small-into.gguf");
    await writeGGUFFile(path, smallModel());
    const referenceData = await allTensorBytes(parseGGUFBytes(bytes));
    // a RandomAccessFile that ignores `into` (as a user's own may), and one that records whether it was given one
    let given = 0;
    const plain = { size: bytes.length, read: async (offset: number, length: number) => bytes.slice(offset, offset + length), close: async () => {} };
    const recording = { ...plain, read: async (offset: number, length: number, into?: Uint8Array) => {
      if (into) given++;
      return bytes.slice(offset, offset + length);
    } };
    for (const source of [path, plain, recording]) {
      const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
      const file = await openGGUF(source);
      const got = new Map<string, Uint8Array>();
      let at = 8; // the tensors side by side in the memory, after a guard
      const u8 = new Uint8Array(memory.buffer);
      u8.fill(0xa5);
      await file.readTensorData((t) => {
        const dest = new Uint8Array(memory.buffer, at, t.nbytes);
        at += t.nbytes;
        got.set(t.name, dest);
        return dest;
      });
      expect(new Map([...got].map(([k, v]) => [k, v.slice()])), String(typeof source)).toEqual(referenceData);
      expect(u8.subarray(0, 8).every((v) => v === 0xa5) && u8.subarray(at).every((v) => v === 0xa5), "nothing written outside the destinations").toBe(true);
      await file.close();
    }
    expect(given).toBe(3); // readTensorData offered each tensor's destination
  });

  it("refuses a destination of the wrong size", async () => {
    const file = parseGGUFBytes(await smallModelBytes());
    await expect(file.readTensorData(() => new Uint8Array(3))).rejects.toThrow(QwasmError);
  });

  it("streams lazily produced data to a sink in order, header first", async () => {
    const events: string[] = [];
    const model = smallModel();
    model.tensors = model.tensors.map((t) => ({
      ...t,
      data: async function* () {
        events.push(`produce ${t.name}`);
        const data = typeof t.data === "function" ? await t.data() : t.data;
        if (data instanceof Uint8Array) yield data;
        else yield* data as Iterable<Uint8Array>;
      },
    }));
    const chunks: Uint8Array[] = [];
    const layout = await writeGGUF(model, (chunk) => {
      events.push("sink");
      chunks.push(chunk.slice()); // the writer may reuse its buffers once the sink returns
    });
    expect(events[0]).toBe("produce a.f32");
    const whole = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) { whole.set(c, at); at += c.length; }
    expect(whole).toEqual(await smallModelBytes());
    expect(layout.fileSize).toBe(whole.length);
  });

  it("writes a file of lazily generated chunks to disk and reads it back from a path and a stream", async () => {
    // 2 tensors of 16 MiB each, produced 1 MiB at a time; byte i of tensor k is (i * 31 + k) & 0xff.
    const rows = 4096, cols = 1024; // F32: 16 MiB
    const chunkRows = 256;
    const fill = (k: number, start: number, chunk: Uint8Array) => {
      for (let i = 0; i < chunk.length; i++) chunk[i] = ((start + i) * 31 + k) & 0xff;
    };
    const tensors = [0, 1].map((k) => ({
      name: `big.${k}`, dims: [cols, rows], type: GGMLType.F32,
      data: function* () {
        const chunk = new Uint8Array(chunkRows * cols * 4); // reused: the sink has consumed it
        for (let r = 0; r < rows; r += chunkRows) {
          fill(k, r * cols * 4, chunk);
          yield chunk;
        }
      },
    }));
    const path = join(tmp, "big.gguf");
    let lastProgress = 0;
    const layout = await writeGGUFFile(path, { metadata: [["general.alignment", kv.u32(64)]], tensors },
      (written, total) => { lastProgress = written / total; });
    expect(lastProgress).toBe(1);
    const expected = [0, 1].map((k) => {
      const bytes = new Uint8Array(rows * cols * 4);
      fill(k, 0, bytes);
      return bytes;
    });
    const sources = [path, Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array>];
    for (const source of sources) {
      const file = await openGGUF(source);
      expect(file.tensors).toEqual(layout.tensors);
      expect(file.dataOffset % 64).toBe(0);
      const data = await allTensorBytes(file);
      expect(Buffer.compare(data.get("big.0")!, expected[0])).toBe(0);
      expect(Buffer.compare(data.get("big.1")!, expected[1])).toBe(0);
      await file.close();
    }
  });

  it("refuses what it cannot write", async () => {
    const base = smallModel();
    const cases: [string, GGUFToWrite][] = [
      ["u8 out of range", { ...base, metadata: [["x", { type: GGUFValueType.UINT8, value: 256 }]] }],
      ["string as u32", { ...base, metadata: [["x", { type: GGUFValueType.UINT32, value: "7" }]] }],
      ["duplicate key", { ...base, metadata: [["x", kv.u8(1)], ["x", kv.u8(2)]] }],
      ["alignment not a power of two", { ...base, metadata: [["general.alignment", kv.u32(48)]] }],
      ["duplicate tensor", { metadata: [], tensors: [base.tensors[0], base.tensors[0]] }],
      ["partial block", { metadata: [], tensors: [{ name: "t", dims: [16], type: GGMLType.Q4_0, data: new Uint8Array(9) }] }],
      ["removed type", { metadata: [], tensors: [{ name: "t", dims: [32], type: 4, data: new Uint8Array(20) }] }],
      ["5 dims", { metadata: [], tensors: [{ name: "t", dims: [1, 1, 1, 1, 1], type: GGMLType.F32, data: new Uint8Array(4) }] }],
    ];
    for (const [what, input] of cases) {
      expect(() => layoutGGUF(input), what).toThrow(QwasmError);
    }
    const wrongSize: GGUFToWrite = { metadata: [], tensors: [{ name: "t", dims: [4], type: GGMLType.F32, data: new Uint8Array(15) }] };
    await expect(writeGGUFBytes(wrongSize)).rejects.toThrow(/15 bytes, its dims and type need 16/);
    const tooMuch: GGUFToWrite = { metadata: [], tensors: [{ name: "t", dims: [4], type: GGMLType.F32, data: () => [new Uint8Array(8), new Uint8Array(12)] }] };
    await expect(writeGGUFBytes(tooMuch)).rejects.toThrow(/more than the 16 bytes/);
  });
});
