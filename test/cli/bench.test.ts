// qwasm bench's plumbing on a tiny synthetic model with tiny numbers: every figure is there, a
// number, and positive (speed itself is never asserted: benchmarks are commands, not tests).
import { afterAll, describe, expect, it, vi } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../cli/commands/bench";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";

const tmp = mkdtempSync(join(tmpdir(), "qwasm-bench-"));
const modelPath = join(tmp, "tiny.gguf");
writeFileSync(modelPath, await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 3 })));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs bench with `argv` and returns what it wrote to stdout. */
async function bench(argv: string[]): Promise<string> {
  let out = "";
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    expect(await main([modelPath, "--threads", "1", ...argv])).toBe(0);
  } finally {
    write.mockRestore();
  }
  return out;
}

function expectPositive(result: Record<string, unknown>, fields: string[]): void {
  for (const f of fields) {
    expect(typeof result[f], f).toBe("number");
    expect(result[f] as number, f).toBeGreaterThan(0);
  }
}

describe("qwasm bench", () => {
  it("--json gives the end-to-end, forward-only, engine-cost and sampler figures", async () => {
    const result = JSON.parse(await bench(["--prompt-tokens", "8", "--gen-tokens", "6", "--repeat", "2", "--json"]));
    expectPositive(result, [
      "loadSeconds", "timeToFirstTokenMs", "prefillTokensPerSecond", "decodeTokensPerSecond", "engineDecodeMsPerToken",
      "forwardPrefillTokensPerSecond", "forwardDecodeTokensPerSecond", "forwardDecodeMsPerToken", "samplerMsPerToken",
      "vocabSize", "wasmMemoryBytes", "peakRssBytes",
    ]);
    // The engine's own time between steps, timed inside it (on this tiny model the consumer sees
    // deltas in bursts, so it is not compared with the decode ms/token seen from outside).
    expectPositive(result, ["engineOwnMsPerStep", "engineOwnPercent", "engineOwnMsPerStepAllRuns", "engineOwnPercentAllRuns"]);
    // The difference of two runs: a number, of either sign on a busy machine.
    expect(Number.isFinite(result.engineOverheadMsPerToken)).toBe(true);
    expect(Number.isFinite(result.engineOverheadPercent)).toBe(true);
    expect(result).toMatchObject({ promptTokens: 8, genTokens: 6, threads: 1, sampling: {} });
  });

  it("prints one labelled line per figure, saying what it includes, and takes sampling options", async () => {
    const text = await bench(["--prompt-tokens", "8", "--gen-tokens", "4", "--temperature", "0.7", "--top-p", "0.9", "--seed", "5"]);
    for (const label of ["first token", "prefill", "decode", "forward only", "engine cost", "sampler"]) {
      expect(text, label).toMatch(new RegExp(`^${label} +[0-9a-z].*: `, "m"));
    }
    expect(text).toMatch(/temperature 0\.7, topP 0\.9, seed 5 sampling/);
  });

  it("--engine-only gives the end-to-end figures and leaves out the forward-only and sampler ones", async () => {
    const result = JSON.parse(await bench(["--prompt-tokens", "8", "--gen-tokens", "6", "--engine-only", "--json"]));
    expectPositive(result, ["timeToFirstTokenMs", "prefillTokensPerSecond", "decodeTokensPerSecond", "engineOwnMsPerStep"]);
    // One run: its steps are all the runs' steps, so the pooled figures are the run's own.
    expect(result.engineOwnMsPerStepAllRuns).toBeCloseTo(result.engineOwnMsPerStep, 9);
    expect(result.engineOwnPercentAllRuns).toBeCloseTo(result.engineOwnPercent, 9);
    for (const f of ["forwardPrefillTokensPerSecond", "forwardDecodeTokensPerSecond", "forwardDecodeWeightGBps", "samplerMsPerToken"]) {
      expect(result[f], f).toBe(0);
    }
    const text = await bench(["--prompt-tokens", "8", "--gen-tokens", "4", "--engine-only"]);
    for (const label of ["first token", "prefill", "decode", "engine cost"]) expect(text, label).toMatch(new RegExp(`^${label} +[0-9a-z].*: `, "m"));
    for (const label of ["forward only", "sampler"]) expect(text, label).not.toMatch(new RegExp(`^${label} `, "m"));
  });

  it("--batch counts the tokens of the window where all streams decode", async () => {
    const result = JSON.parse(await bench(["--batch", "2", "--prompt-tokens", "4", "--gen-tokens", "8", "--json"]));
    expectPositive(result, ["decodeTokensPerSecond", "perStreamDecodeTokensPerSecond", "singleStreamDecodeTokensPerSecond"]);
  });

  it("refuses bad numbers and sampling options with INVALID_ARGUMENT", async () => {
    for (const argv of [["--gen-tokens", "0"], ["--repeat", "1.5"], ["--temperature", "-1"], ["--top-p", "2"], ["--batch", "2", "--gen-tokens", "1"]]) {
      await expect(main([modelPath, ...argv]), argv.join(" ")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    }
  });
});
