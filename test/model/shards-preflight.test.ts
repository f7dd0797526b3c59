// The memory preflight (compute/model/preflight.ts, run by planModel): a model bigger than what the host
// has is refused from its header, in one line with the numbers and the way out, before any memory is
// allocated or any weight read. Host numbers are injected (LoadOptions.hostMemory); the real queries
// (platform/memory.ts) are checked for plausibility.
import { describe, expect, it } from "vitest";
import { layoutGGUF } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { loadQwen2 } from "../../compute/model/model";
import { createEngine, preflightEngine } from "../../engine/engine";
import { openGGUF } from "../../weights/gguf/reader";
import { browserHostMemory, hostMemory, parseAddressSpaceLimit, type HostMemory } from "../../platform/memory";
import { maxShardBytesOption, parseArgs } from "../../cli/args";
import { virtualFile } from "./helpers";

const vocabulary = await readQwen2Vocabulary();
const GiB = 2 ** 30;

/** A header-only file of `shape` in `type` (zeros for the weights), counting tensor reads. */
function headerOnly(shape: Parameters<typeof synthQwen2>[0]["shape"], type: "Q4_0" | "Q8_0", reads: { n: number }) {
  const layout = layoutGGUF(synthQwen2({ shape, vocabulary, type }));
  return virtualFile(layout.header, layout.fileSize, layout.dataOffset, () => reads.n++);
}

async function refusal(shape: Parameters<typeof synthQwen2>[0]["shape"], type: "Q4_0" | "Q8_0", host: HostMemory): Promise<string> {
  const reads = { n: 0 };
  const error = await loadQwen2(headerOnly(shape, type, reads), { threads: 1, hostMemory: host }).then(() => undefined, (e) => e);
  expect(error, "the load was not refused").toBeDefined();
  expect(error.code).toBe("INSUFFICIENT_MEMORY");
  expect(reads.n, "tensor bytes read before the refusal").toBe(0);
  expect(error.message).not.toContain("\n");
  return error.message;
}

describe("memory preflight", () => {
  it("refuses 7B Q4_0 on a host with 3 GiB free: the total over its memories, the free RAM, the way out", async () => {
    const message = await refusal("7b", "Q4_0", { available: 3 * GiB, total: 16 * GiB, source: "test" });
    expect(message).toMatch(/^the model needs 4\.\d\d GiB in 2 WebAssembly memories \(\d\.\d\d GiB \+ \d\.\d\d GiB\) \(weights 3\.99 GiB, KV cache 0\.\d\d GiB\), but this host has 3\.00 GiB free of 16\.00 GiB \(test\); a smaller quantization, fewer kvPages/);
  });

  it("refuses when the total RAM is short even with no free figure", async () => {
    expect(await refusal("7b", "Q8_0", { total: 8 * GiB, source: "test" })).toMatch(/weights 7\.\d\d GiB.*this host has 8\.00 GiB in all/);
  });

  it("refuses past ulimit -v: each memory reserves about 10 GiB of address space", async () => {
    const message = await refusal("7b", "Q4_0", { available: 64 * GiB, addressSpace: 16 * GiB, source: "test" });
    expect(message).toMatch(/reserves about 10\.00 GiB of address space, 20\.00 GiB for 2, but the address space is limited to 16\.00 GiB \(ulimit -v\)/);
  });

  it("refuses a 72B-shape Q4_0 (80 layers) in a desktop browser tab, and 7B Q4_0 on a phone", async () => {
    const desktop = browserHostMemory({ deviceMemory: 8, userAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/131" });
    expect(desktop.perPage).toBe(16 * GiB);
    expect(desktop.total).toBeUndefined(); // deviceMemory 8 means "8 GB or more"
    expect(await refusal("72b", "Q4_0", desktop)).toMatch(/weights 3\d\.\d\d GiB.*a page may use about 16\.00 GiB \(the desktop per-tab limit\)/);
    const phone = browserHostMemory({ deviceMemory: 4, userAgentData: { mobile: true } });
    expect(phone).toMatchObject({ total: 4 * GiB, perPage: 4 * GiB });
    expect(await refusal("7b", "Q4_0", phone)).toMatch(/a page may use about 4\.00 GiB \(navigator\.deviceMemory 4 GB, the mobile per-tab limit\)/);
  });

  it("lets a model through that the host has room for (72B shape, 4 layers, planned over 2 memories)", async () => {
    const reads = { n: 0 };
    // Planned only: a limit of 2 GiB per memory splits it; the load is stopped by a tiny host after the plan.
    const shape = { ...QWEN2_PRESETS["72b"], layers: 4 };
    const error = await loadQwen2(headerOnly(shape, "Q4_0", reads), { threads: 1, maxShardBytes: 2 * GiB, hostMemory: { available: GiB, source: "test" } })
      .then(() => undefined, (e) => e);
    expect(error?.message).toMatch(/in 2 WebAssembly memories/);
    expect(reads.n).toBe(0);
  });

  it("preflightEngine refuses from the header alone exactly as createEngine does (the same plan, the same options)", async () => {
    const host = (gib: number) => ({ available: gib * GiB, total: 16 * GiB, source: "test" });
    for (const options of [{ threads: 1, hostMemory: host(3) }, { threads: 1, maxSequences: 1, contextLength: 32768, kvType: "f16" as const, hostMemory: host(5) }]) {
      const reads = { n: 0 };
      const file = await openGGUF(headerOnly("7b", "Q4_0", reads));
      const early = await preflightEngine(file, options).then(() => undefined, (e) => e);
      await file.close();
      const late = await createEngine(headerOnly("7b", "Q4_0", reads), options).then(() => undefined, (e) => e);
      expect(early?.code, early?.message).toBe("INSUFFICIENT_MEMORY");
      expect(early.message).toBe(late?.message);
      expect(reads.n).toBe(0);
    }
    const file = await openGGUF(headerOnly("7b", "Q4_0", { n: 0 }));
    // The default context (4096) fits in those 5 GiB: the options are the engine's.
    const plan = await preflightEngine(file, { threads: 1, hostMemory: host(5) });
    await file.close();
    expect(plan.weightBytes).toBeGreaterThan(3.9 * GiB);
    expect(plan.bytes).toBeLessThan(5 * GiB);
  });

  it("parses ulimit -v from /proc/self/limits", () => {
    const limits = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units     \n` +
      `Max cpu time              unlimited            unlimited            seconds   \n` +
      `Max address space         ${soft}            unlimited            bytes     \n`;
    expect(parseAddressSpaceLimit(limits("unlimited"))).toBeUndefined();
    expect(parseAddressSpaceLimit(limits("17179869184"))).toBe(16 * GiB);
    expect(parseAddressSpaceLimit(undefined)).toBeUndefined();
  });

  it("asks this runtime for its memory (Node: os.freemem and os.totalmem)", async () => {
    const m = await hostMemory();
    expect(m.total).toBeGreaterThan(0);
    expect(m.available).toBeGreaterThan(0);
    expect(m.available!).toBeLessThanOrEqual(m.total!);
    expect(m.source).toMatch(/os\.freemem/);
  });

  it("--max-shard-mb: 1..4096 MiB", () => {
    const parse = (v: string) => maxShardBytesOption(parseArgs(["--max-shard-mb", v], [], "--max-shard-mb N"));
    expect(parse("64")).toBe(64 * 2 ** 20);
    expect(parse("4096")).toBe(4 * GiB);
    expect(() => parse("4097")).toThrow(/--max-shard-mb must be a whole number of MiB from 1 to 4096/);
    expect(() => parse("0")).toThrow(/--max-shard-mb/);
  });
});
