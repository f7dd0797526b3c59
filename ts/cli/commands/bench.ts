// qwasm bench: load time, prefill and decode speed, time to first token and memory of one model.
import { tokenReadBytes } from "../../model/moe";
import { QwasmError } from "../../errors";
import { prefill } from "../../model/model";
import { createEngine } from "../../engine/engine";
import { createKernelMemory, instantiateKernels, kernelBuild } from "../../kernels/module";
import { progressBar } from "../load";
import { argmax } from "../../sampler/sampler";
import { kvTypeOption, numberOption, parseArgs } from "../args";
import { loadForCli } from "../load";
import { resolveModelPath } from "../default-model";

export const help = `qwasm bench [MODEL] [--threads N] [--prompt-tokens 128] [--gen-tokens 64] [--repeat 1]
            [--kv-type f32|f16|q8_0] [--batch B] [--prefix-reuse] [--json]

Measures one model: load time, prefill tokens/s (the prompt in one step of up to 512 tokens),
decode tokens/s (greedy, one token per step), time to first token (prefill + first sample) and
peak memory (the WebAssembly memory and the process's resident set). The prompt is random regular
token ids (speed does not depend on the values). MODEL defaults to the built-in synthetic model.
With --repeat R, prefill and decode run R times on a fresh cache and the best run is reported.

--batch B runs B concurrent requests through the engine (continuous batching) and reports the
total decode tokens/s of all streams, the decode tokens/s of one stream alone in the same engine,
and the compute ceiling: the tokens/s the threads would reach if every cycle went to the matmuls'
dot products at the peak rate of the kernels' dot_peak loop (measured on this machine). --prefix-reuse runs two requests that share a prompt of
--prompt-tokens tokens (a system prompt) and reports the time to first token of each: the second
reuses the first one's KV pages.`;

export interface BenchResult {
  model: string;
  threads: number;
  kernels: string;
  promptTokens: number;
  genTokens: number;
  loadSeconds: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  /** Weight bytes one decoded token reads (a MoE token: attention, router, shared expert, its K
   *  experts, LM head) times decode tokens/s. */
  decodeWeightGBps: number;
  timeToFirstTokenMs: number;
  wasmMemoryBytes: number;
  peakRssBytes: number;
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["json", "prefix-reuse"]);
  if (args.options.has("batch")) return batchBench(args);
  if (args.options.has("prefix-reuse")) return prefixBench(args);
  const modelPath = await resolveModelPath(args.positionals[0]);
  const promptTokens = numberOption(args, "prompt-tokens", 128)!;
  const genTokens = numberOption(args, "gen-tokens", 64)!;
  const repeat = numberOption(args, "repeat", 1)!;
  for (const [name, v] of [["prompt-tokens", promptTokens], ["gen-tokens", genTokens], ["repeat", repeat]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new QwasmError("INVALID_ARGUMENT", `--${name} must be a positive integer`);
  }
  let peakRss = process.memoryUsage().rss;
  const sampleRss = () => { peakRss = Math.max(peakRss, process.memoryUsage().rss); };
  const { model, loadMs } = await loadForCli(modelPath, {
    threads: numberOption(args, "threads"),
    contextLength: promptTokens + genTokens,
    kvType: kvTypeOption(args),
    maxTokens: Math.min(promptTokens, 512),
  });
  sampleRss();
  const vocab = model.config.vocabSize;
  let seed = 12345;
  const prompt = Array.from({ length: promptTokens }, () => (seed = (seed * 1103515245 + 12345) >>> 0) % Math.min(vocab, 150000));

  let best = { prefillMs: Infinity, ttftMs: Infinity, decodeMs: Infinity };
  for (let r = 0; r < repeat; r++) {
    const t0 = performance.now();
    const logits = await prefill(model.forward, prompt);
    let token = argmax(logits);
    const t1 = performance.now();
    for (let i = 1; i < genTokens; i++) {
      token = argmax(await model.forward.step([token], promptTokens + i - 1));
    }
    const t2 = performance.now();
    sampleRss();
    best = {
      prefillMs: Math.min(best.prefillMs, t1 - t0),
      ttftMs: Math.min(best.ttftMs, t1 - t0),
      decodeMs: Math.min(best.decodeMs, t2 - t1),
    };
  }
  const result: BenchResult = {
    model: modelPath,
    threads: model.forward.threads,
    kernels: await kernelBuild(),
    promptTokens,
    genTokens,
    loadSeconds: loadMs / 1000,
    prefillTokensPerSecond: (1000 * promptTokens) / best.prefillMs,
    decodeTokensPerSecond: genTokens > 1 ? (1000 * (genTokens - 1)) / best.decodeMs : 0,
    decodeWeightGBps: genTokens > 1 ? tokenReadBytes(model.config, model.tensors).total * (genTokens - 1) / (1e6 * best.decodeMs) : 0,
    timeToFirstTokenMs: best.ttftMs,
    wasmMemoryBytes: model.arena.memory.buffer.byteLength,
    peakRssBytes: peakRss,
  };
  await model.dispose();
  if (args.options.has("json")) {
    process.stdout.write(JSON.stringify(result) + "\n");
  } else {
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    process.stdout.write([
      `model            ${result.model}`,
      `threads          ${result.threads}`,
      `kernels          ${result.kernels}`,
      `load             ${result.loadSeconds.toFixed(2)} s`,
      `prefill          ${result.prefillTokensPerSecond.toFixed(1)} tokens/s (${promptTokens} tokens)`,
      `decode           ${result.decodeTokensPerSecond.toFixed(2)} tokens/s (${genTokens} tokens), ` +
        `${result.decodeWeightGBps.toFixed(2)} GB/s of the weights a token reads`,
      `first token      ${result.timeToFirstTokenMs.toFixed(0)} ms`,
      `wasm memory      ${mib(result.wasmMemoryBytes)}`,
      `peak RSS         ${mib(result.peakRssBytes)}`,
    ].join("\n") + "\n");
  }
  return 0;
}

function randomPrompt(n: number, vocab: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => (x = (x * 1103515245 + 12345) >>> 0) % Math.min(vocab, 150000));
}

function print(args: ReturnType<typeof parseArgs>, result: Record<string, unknown>, lines: string[]): void {
  process.stdout.write(args.options.has("json") ? JSON.stringify(result) + "\n" : lines.join("\n") + "\n");
}

/** B concurrent greedy streams through the engine: their total decode throughput, against one
 *  stream alone in the same engine and against the compute ceiling of the machine. */
async function batchBench(args: ReturnType<typeof parseArgs>): Promise<number> {
  const modelPath = await resolveModelPath(args.positionals[0]);
  const batch = numberOption(args, "batch")!;
  const promptTokens = numberOption(args, "prompt-tokens", 128)!;
  const genTokens = numberOption(args, "gen-tokens", 64)!;
  const repeat = numberOption(args, "repeat", 1)!;
  if (!Number.isInteger(batch) || batch < 1) throw new QwasmError("INVALID_ARGUMENT", "--batch must be a positive integer");
  if (!Number.isInteger(repeat) || repeat < 1) throw new QwasmError("INVALID_ARGUMENT", "--repeat must be a positive integer");
  if (!Number.isInteger(genTokens) || genTokens < 2) throw new QwasmError("INVALID_ARGUMENT", "--gen-tokens must be at least 2 with --batch");
  const engine = await createEngine(modelPath, {
    threads: numberOption(args, "threads"), maxSequences: batch, contextLength: promptTokens + genTokens, kvType: kvTypeOption(args),
    maxTokens: Math.max(batch, 64), onProgress: progressBar(),
  });
  try {
    const vocab = engine.model.config.vocabSize;
    // Decode throughput of n streams started together: the tokens after each stream's first, over
    // the time after the last stream's first token. Best of `repeat` runs.
    const decodeRate = async (n: number): Promise<number> => {
      let best = 0;
      for (let r = 0; r < repeat; r++) {
        const t0 = performance.now();
        const results = await Promise.all(Array.from({ length: n }, (_, i) =>
          engine.generateTokens(randomPrompt(promptTokens, vocab, 1000 + i), { maxTokens: genTokens, ignoreEos: true }).result));
        const elapsed = performance.now() - t0;
        const lastFirstToken = Math.max(...results.map((x) => x.timings.timeToFirstTokenMs));
        const decodeTokens = results.reduce((sum, x) => sum + x.usage.completionTokens - 1, 0);
        best = Math.max(best, (1000 * decodeTokens) / (elapsed - lastFirstToken));
      }
      return best;
    };
    const single = await decodeRate(1);
    const total = await decodeRate(batch);
    const threads = engine.info.threads;
    const kernels = await kernelBuild();
    // dot_peak measures SIMD128's densest multiply; the relaxed build's 8-bit dot goes past it.
    const simd128 = !kernels.startsWith("relaxed");
    const peak = simd128 ? await dotPeakPerThread() : null;
    const macs = matmulMacsPerToken(engine.model.config);
    const ceiling = peak === null ? null : (peak * threads) / macs;
    const result = {
      model: modelPath, threads, kernels, batch, promptTokens, genTokens,
      decodeTokensPerSecond: total,
      perStreamDecodeTokensPerSecond: total / batch,
      singleStreamDecodeTokensPerSecond: single,
      gainOverSingleStream: total / single,
      dotPeakMultiplyAddsPerSecondPerThread: peak,
      matmulMultiplyAddsPerToken: macs,
      ceilingDecodeTokensPerSecond: ceiling,
    };
    print(args, result, [
      `model            ${modelPath}`,
      `threads          ${threads}`,
      `kernels          ${result.kernels}`,
      `streams          ${batch} x (${promptTokens} prompt + ${genTokens} generated tokens)`,
      `decode           ${total.toFixed(2)} tokens/s in all (${(total / batch).toFixed(2)} per stream)`,
      `one stream       ${single.toFixed(2)} tokens/s alone: ${batch} streams give ${(total / single).toFixed(2)}x`,
      peak === null || ceiling === null
        ? `ceiling          measured for the SIMD128 build only (QWASM_RELAXED_SIMD=0)`
        : `ceiling          ${ceiling.toFixed(0)} tokens/s (${(ceiling / single).toFixed(2)}x one stream) if every thread ran ` +
          `${(peak / 1e9).toFixed(1)}e9 multiply-adds/s (the dot_i16x8 peak) on ${(macs / 1e6).toFixed(0)}e6 per token, and nothing else`,
    ]);
  } finally {
    await engine.dispose();
  }
  return 0;
}

/** Multiply-adds of the matmuls of one token's forward pass (attention scores excluded). */
function matmulMacsPerToken(c: { hidden: number; nLayers: number; nHeads: number; nKVHeads: number; headDim: number;
  headDimV: number; ffn: number; vocabSize: number }): number {
  const qDim = c.nHeads * c.headDim;
  const perLayer = c.hidden * (qDim + c.nKVHeads * c.headDim + c.nKVHeads * c.headDimV) + c.nHeads * c.headDimV * c.hidden +
    3 * c.hidden * c.ffn;
  return c.nLayers * perLayer + c.vocabSize * c.hidden;
}

/** Multiply-adds per second one thread issues in the kernels' dot_peak loop: best of five runs of
 *  at least 100 ms each. */
async function dotPeakPerThread(): Promise<number> {
  const k = await instantiateKernels(createKernelMemory(1));
  let n = 1 << 16;
  for (;;) { // rounds for about 100 ms
    const t0 = performance.now();
    k.dot_peak(n);
    if (performance.now() - t0 >= 100) break;
    n *= 2;
  }
  let best = 0;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    k.dot_peak(n);
    best = Math.max(best, (64 * n) / ((performance.now() - t0) / 1000));
  }
  return best;
}

/** Two requests with the same prompt prefix: the second's prefill reuses the first's KV pages. */
async function prefixBench(args: ReturnType<typeof parseArgs>): Promise<number> {
  const modelPath = await resolveModelPath(args.positionals[0]);
  const promptTokens = numberOption(args, "prompt-tokens", 512)!;
  const engine = await createEngine(modelPath, {
    threads: numberOption(args, "threads"), maxSequences: 1, contextLength: promptTokens + 32, kvType: kvTypeOption(args), onProgress: progressBar(),
  });
  try {
    const vocab = engine.model.config.vocabSize;
    const shared = randomPrompt(promptTokens, vocab, 77);
    const first = await engine.generateTokens([...shared, 11, 12, 13], { maxTokens: 1, ignoreEos: true });
    const second = await engine.generateTokens([...shared, 21, 22, 23], { maxTokens: 1, ignoreEos: true });
    const result = {
      model: modelPath, threads: engine.info.threads, sharedPromptTokens: promptTokens,
      firstTimeToFirstTokenMs: first.timings.timeToFirstTokenMs,
      secondTimeToFirstTokenMs: second.timings.timeToFirstTokenMs,
      secondCachedPromptTokens: second.usage.cachedPromptTokens,
    };
    print(args, result, [
      `model            ${modelPath}`,
      `threads          ${result.threads}`,
      `shared prefix    ${promptTokens} tokens (+3 different tokens each)`,
      `first request    ${result.firstTimeToFirstTokenMs.toFixed(0)} ms to first token (computes the whole prompt)`,
      `second request   ${result.secondTimeToFirstTokenMs.toFixed(0)} ms to first token (${result.secondCachedPromptTokens} prompt tokens reused)`,
    ]);
  } finally {
    await engine.dispose();
  }
  return 0;
}
