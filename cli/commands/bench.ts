// qwasm bench: load time, end-to-end prefill and decode speed through the engine, time to first
// token, the forward pass alone, the engine's own cost per token, the sampler, and memory.
import { QwasmError } from "../../platform/errors";
import { prefill } from "../../compute/model/model";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import type { Delta, RequestOptions } from "../../engine/types";
import { createKernelMemory, instantiateKernels, kernelBuild } from "../../compute/kernels/module";
import { progressBar } from "../load";
import { Sampler, argmax, type SamplingOptions } from "../../engine/sampler/sampler";
import { kvTypeOption, maxShardBytesOption, numberOption, parseArgs, stringOption } from "../args";
import { resolveModelPath } from "../default-model";
import { tokenReadBytes } from "../../compute/model/moe";
import { constraintOptions } from "./run";
import { compileJsonSchema, tokenTrie } from "../../engine/constrain";

export const help = `qwasm bench [MODEL] [--threads N] [--oversubscribe] [--prompt-tokens 128] [--gen-tokens 64] [--repeat 1]
            [--kv-type f32|f16|q8_0] [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
            [--batch B] [--prefix-reuse] [--json-schema FILE] [--max-shard-mb N] [--engine-only] [--json]

Measures one model, end to end through the engine (what engine.generate streams: scheduler,
forward steps, sampler, detokenizer, stop-string check), after one warm-up request that is not
counted: time to first token (from the request to the first streamed delta), prefill tokens/s (the
prompt over that time) and decode tokens/s (the tokens after the first, from the first delta to
the last). Greedy unless --temperature (with --top-k/--top-p/--min-p/--seed) says otherwise. Then
the forward pass alone (forward.stepInPlace and an argmax, no engine) as a separate line, the engine's own
cost per decode step (timed inside the engine; and the engine's decode minus the forward-only decode), the sampler's time per token at temperature 0.7 / top-p 0.9
on the last step's logits, load time and peak memory (the WebAssembly memory and the process's
resident set). The prompt is random regular token ids (speed does not depend on the values), a
fresh one per request so that no prefix is reused. MODEL defaults to the built-in synthetic model.
With --repeat R, every figure is the best of R runs.

--json-schema FILE adds one line: decode tokens/s of requests constrained to the schema
(responseFormat json_schema, same sampling, each followed by an unconstrained one, best of
--repeat), against the unconstrained decode; the time to compile the schema (JSON Schema → GBNF →
grammar, no cache); and the time to build the vocabulary's token trie (once per tokenizer).

--engine-only keeps to the end-to-end figures, for prompts whose prefill takes minutes (32768 tokens):
the warm-up request is the first 512 prompt tokens (every kernel the timed request runs, JIT-compiled;
a full-length warm-up would double the time), and the forward-only and sampler lines are left out.

--batch B runs B concurrent requests through the engine (continuous batching) and reports the
total decode tokens/s of all streams while all B are decoding (only tokens streamed inside that
window count), the decode tokens/s of one stream alone in the same engine, and the compute ceiling:
the tokens/s the threads would reach if every cycle went to the matmuls' dot products at the peak
rate of the kernels' dot_peak loop (measured on this machine). --prefix-reuse runs two requests
that share a prompt of --prompt-tokens tokens (a system prompt) and reports the time to first token
of each: the second reuses the first one's KV pages. --max-shard-mb N places the model over
WebAssembly memories of at most N MiB (default 4096; to measure what sharding costs).`;

export interface BenchResult {
  model: string;
  threads: number;
  kernels: string;
  promptTokens: number;
  genTokens: number;
  /** The sampling of the timed requests ({} = greedy). */
  sampling: SamplingOptions;
  loadSeconds: number;
  /** Engine, end to end: from the request to the first streamed delta. */
  timeToFirstTokenMs: number;
  /** Engine: prompt tokens over the time to first token. */
  prefillTokensPerSecond: number;
  /** Engine: tokens after the first over the time from the first streamed delta to the last. */
  decodeTokensPerSecond: number;
  engineDecodeMsPerToken: number;
  /** forward.step alone (the prompt in steps of up to the chunk size), plus an argmax. */
  forwardPrefillTokensPerSecond: number;
  /** forward.step of one token plus an argmax, one after another. */
  forwardDecodeTokensPerSecond: number;
  forwardDecodeMsPerToken: number;
  /** Weight bytes one decoded token reads (for a MoE model: attention, router, shared expert, its K
   *  experts' slabs, LM head; compute/model/moe.ts tokenReadBytes) times the forward-only decode rate. */
  forwardDecodeWeightGBps: number;
  /** The engine's own time per decode step, timed inside it (EngineStats.stepGaps: from a step's
   *  return to the next step's start: sampling, detokenizer, stop check, stream, scheduler), and that
   *  as a percentage of the engine's step (its own time + the forward step inside it); from the run
   *  with the fastest engine decode. */
  engineOwnMsPerStep: number;
  engineOwnPercent: number;
  /** The same over the decode steps of all --repeat runs together (every gap and step counted): a
   *  young-generation pause of V8 that lands in one run counts here even when that run is not the
   *  fastest. */
  engineOwnMsPerStepAllRuns: number;
  engineOwnPercentAllRuns: number;
  /** The mean forward step (forward.runInPlace) inside the engine while decoding, in that run. */
  engineStepMs: number;
  /** engineDecodeMsPerToken - forwardDecodeMsPerToken (separate runs: noisy on a shared machine),
   *  and that as a percentage of the engine's step. */
  engineOverheadMsPerToken: number;
  engineOverheadPercent: number;
  /** Sampler.sample at temperature 0.7 / top-p 0.9 on the last step's logits (vocabSize of them). */
  samplerMsPerToken: number;
  vocabSize: number;
  wasmMemoryBytes: number;
  /** WebAssembly memories (shards) the model is placed over. */
  wasmMemories: number;
  peakRssBytes: number;
  /** --json-schema: decode tokens/s constrained to the schema, its compile time, the trie's build time. */
  constrainedDecodeTokensPerSecond?: number;
  schemaCompileMs?: number;
  tokenTrieMs?: number;
}

/** --temperature, --top-k, --top-p, --min-p, --seed: the sampling of the timed requests. */
function samplingOptions(args: ReturnType<typeof parseArgs>): SamplingOptions {
  const options: SamplingOptions = {
    temperature: numberOption(args, "temperature"), topK: numberOption(args, "top-k"), topP: numberOption(args, "top-p"),
    minP: numberOption(args, "min-p"), seed: numberOption(args, "seed"),
  };
  for (const key of Object.keys(options) as (keyof SamplingOptions)[]) if (options[key] === undefined) delete options[key];
  new Sampler(options); // throws INVALID_ARGUMENT with the option's rule
  return options;
}

function positiveInteger(name: string, v: number, least = 1): number {
  if (!Number.isInteger(v) || v < least) throw new QwasmError("INVALID_ARGUMENT", `--${name} must be an integer >= ${least}, got ${v}`);
  return v;
}

/** Decode steps of the engine (EngineStats counts between two points): forward steps and the gaps
 *  between them, the engine's own time. */
interface StepTimes { steps: number; stepSeconds: number; gaps: number; gapSeconds: number }

/** The mean gap and step in ms, and the gap's share of a gap plus a step. */
function ownCost(c: StepTimes): { gapMs: number; stepMs: number; percent: number } {
  const gapMs = c.gaps > 0 ? (1000 * c.gapSeconds) / c.gaps : 0;
  const stepMs = c.steps > 0 ? (1000 * c.stepSeconds) / c.steps : 0;
  return { gapMs, stepMs, percent: gapMs + stepMs > 0 ? (100 * gapMs) / (gapMs + stepMs) : 0 };
}

/** One request, timed as its caller sees it: when each delta carrying tokens arrives; and, from
 *  the engine's stats after the first token, its decode steps: the mean forward step inside the
 *  engine and the engine's own time between steps (EngineStats.stepGaps), per gap. */
async function timedRequest(engine: QwasmEngine, prompt: number[], options: RequestOptions):
  Promise<{ firstTokenMs: number; decodeMs: number; decodeTokens: number; decode: StepTimes }> {
  const stats = engine.stats;
  let at = { steps: 0, stepSeconds: 0, gaps: 0, gapSeconds: 0 };
  const t0 = performance.now();
  const stream = engine.generateTokens(prompt, options);
  let first = -1;
  let last = -1;
  let decodeTokens = 0;
  for await (const delta of stream) {
    if (delta.tokens.length === 0) continue;
    const now = performance.now();
    if (first < 0) {
      first = now;
      at = { steps: stats.steps, stepSeconds: stats.stepSeconds, gaps: stats.stepGaps, gapSeconds: stats.stepGapSeconds };
    } else {
      decodeTokens += delta.tokens.length;
    }
    last = now;
  }
  await stream;
  return {
    firstTokenMs: first - t0, decodeMs: last - first, decodeTokens,
    decode: { steps: stats.steps - at.steps, stepSeconds: stats.stepSeconds - at.stepSeconds,
      gaps: stats.stepGaps - at.gaps, gapSeconds: stats.stepGapSeconds - at.gapSeconds },
  };
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["json", "prefix-reuse", "oversubscribe", "engine-only"], help);
  if (args.options.has("batch")) return batchBench(args);
  if (args.options.has("prefix-reuse")) return prefixBench(args);
  const modelPath = await resolveModelPath(args.positionals[0]);
  const promptTokens = positiveInteger("prompt-tokens", numberOption(args, "prompt-tokens", 128)!);
  const genTokens = positiveInteger("gen-tokens", numberOption(args, "gen-tokens", 64)!);
  const repeat = positiveInteger("repeat", numberOption(args, "repeat", 1)!);
  const sampling = samplingOptions(args);
  const schemaFile = stringOption(args, "json-schema");
  const constraint = await constraintOptions(schemaFile, undefined);
  let peakRss = process.memoryUsage().rss;
  const sampleRss = () => { peakRss = Math.max(peakRss, process.memoryUsage().rss); };
  const t0 = performance.now();
  const engine = await createEngine(modelPath, {
    threads: numberOption(args, "threads"), oversubscribe: args.options.has("oversubscribe"), maxSequences: 1, contextLength: promptTokens + genTokens,
    kvType: kvTypeOption(args), maxShardBytes: maxShardBytesOption(args), maxTokens: Math.min(promptTokens, 512), onProgress: progressBar(),
  });
  const loadMs = performance.now() - t0;
  try {
    sampleRss();
    const forward = engine.model.forward;
    const vocab = engine.model.config.vocabSize;
    const request: RequestOptions = { ...sampling, maxTokens: genTokens, ignoreEos: true };
    const engineOnly = args.options.has("engine-only");
    // Warm-up (not counted): the same shape, a few tokens (--engine-only: the first 512 prompt tokens).
    await timedRequest(engine, randomPrompt(engineOnly ? Math.min(promptTokens, 512) : promptTokens, vocab, 999),
      { ...request, maxTokens: Math.min(genTokens, 4) });

    const best = { firstTokenMs: Infinity, engineDecodeMs: Infinity, forwardPrefillMs: Infinity, forwardDecodeMs: Infinity, constrainedDecodeMs: Infinity };
    let fastest: StepTimes = { steps: 0, stepSeconds: 0, gaps: 0, gapSeconds: 0 };
    let trieMs = 0;
    if (schemaFile !== undefined) {
      const t = performance.now();
      tokenTrie(engine.tokenizer);
      trieMs = performance.now() - t;
    }
    let lastLogits: Float32Array = new Float32Array(0);
    const all: StepTimes = { steps: 0, stepSeconds: 0, gaps: 0, gapSeconds: 0 };
    for (let r = 0; r < repeat; r++) {
      const e = await timedRequest(engine, randomPrompt(promptTokens, vocab, 12345 + r), request);
      all.steps += e.decode.steps;
      all.stepSeconds += e.decode.stepSeconds;
      all.gaps += e.decode.gaps;
      all.gapSeconds += e.decode.gapSeconds;
      best.firstTokenMs = Math.min(best.firstTokenMs, e.firstTokenMs);
      if (e.decodeTokens > 0) {
        // The engine's share is taken from the run with the fastest decode, so both figures are one run's.
        if (e.decodeMs / e.decodeTokens < best.engineDecodeMs) {
          fastest = e.decode;
        }
        best.engineDecodeMs = Math.min(best.engineDecodeMs, e.decodeMs / e.decodeTokens);
      }
      if (schemaFile !== undefined) {
        // Right after the unconstrained request, so both see the same machine.
        const c = await timedRequest(engine, randomPrompt(promptTokens, vocab, 23456 + r), { ...request, ignoreEos: false, ...constraint });
        if (c.decodeTokens > 0) best.constrainedDecodeMs = Math.min(best.constrainedDecodeMs, c.decodeMs / c.decodeTokens);
      }
      if (engineOnly) continue;
      // The forward pass alone: forward.step writes the pages from 0 up, under the engine's feet;
      // harmless here, since no later prompt shares a prefix with an earlier one.
      const prompt = randomPrompt(promptTokens, vocab, 54321 + r);
      const f0 = performance.now();
      let logits = await prefill(forward, prompt);
      let token = argmax(logits);
      const f1 = performance.now();
      for (let i = 1; i < genTokens; i++) {
        // read in place, as the engine reads them (forward.step would copy 0.6 MB a step)
        logits = await forward.stepInPlace([token], promptTokens + i - 1);
        token = argmax(logits);
      }
      const f2 = performance.now();
      lastLogits = logits.slice();
      sampleRss();
      best.forwardPrefillMs = Math.min(best.forwardPrefillMs, f1 - f0);
      if (genTokens > 1) best.forwardDecodeMs = Math.min(best.forwardDecodeMs, (f2 - f1) / (genTokens - 1));
    }
    const decoded = genTokens > 1;
    const forwardDecoded = decoded && !engineOnly;
    const fastestCost = ownCost(fastest), allCost = ownCost(all);
    const overhead = forwardDecoded ? best.engineDecodeMs - best.forwardDecodeMs : 0;
    const result: BenchResult = {
      model: modelPath,
      threads: engine.info.threads,
      kernels: await kernelBuild(),
      promptTokens,
      genTokens,
      sampling,
      loadSeconds: loadMs / 1000,
      timeToFirstTokenMs: best.firstTokenMs,
      prefillTokensPerSecond: (1000 * promptTokens) / best.firstTokenMs,
      decodeTokensPerSecond: decoded ? 1000 / best.engineDecodeMs : 0,
      engineDecodeMsPerToken: decoded ? best.engineDecodeMs : 0,
      forwardPrefillTokensPerSecond: engineOnly ? 0 : (1000 * promptTokens) / best.forwardPrefillMs,
      forwardDecodeTokensPerSecond: forwardDecoded ? 1000 / best.forwardDecodeMs : 0,
      forwardDecodeMsPerToken: forwardDecoded ? best.forwardDecodeMs : 0,
      forwardDecodeWeightGBps: forwardDecoded ? tokenReadBytes(engine.model.config, engine.model.tensors).total / (1e6 * best.forwardDecodeMs) : 0,
      engineOwnMsPerStep: decoded ? fastestCost.gapMs : 0,
      engineOwnPercent: decoded ? fastestCost.percent : 0,
      engineStepMs: decoded ? fastestCost.stepMs : 0,
      engineOwnMsPerStepAllRuns: decoded ? allCost.gapMs : 0,
      engineOwnPercentAllRuns: decoded ? allCost.percent : 0,
      engineOverheadMsPerToken: overhead,
      engineOverheadPercent: forwardDecoded ? (100 * overhead) / best.engineDecodeMs : 0,
      samplerMsPerToken: engineOnly ? 0 : samplerTime(lastLogits),
      vocabSize: vocab,
      wasmMemoryBytes: engine.model.arenas.reduce((n, a) => n + a.memory.buffer.byteLength, 0),
      wasmMemories: engine.model.arenas.length,
      peakRssBytes: peakRss,
    };
    if (schemaFile !== undefined) {
      const schema = (constraint.responseFormat as { json_schema: { schema: object } }).json_schema.schema;
      const t = performance.now();
      compileJsonSchema(schema);
      result.schemaCompileMs = performance.now() - t;
      result.tokenTrieMs = trieMs;
      result.constrainedDecodeTokensPerSecond = best.constrainedDecodeMs < Infinity ? 1000 / best.constrainedDecodeMs : 0;
    }
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const samplingName = sampling.temperature ? Object.entries(sampling).map(([k, v]) => `${k} ${v}`).join(", ") : "greedy";
    print(args, result as unknown as Record<string, unknown>, [
      `model            ${result.model}`,
      `threads          ${result.threads}`,
      `kernels          ${result.kernels}`,
      `load             ${result.loadSeconds.toFixed(2)} s`,
      `first token      ${result.timeToFirstTokenMs.toFixed(1)} ms: engine, from the request to the first streamed delta ` +
        `(scheduling, prefill of ${promptTokens} tokens, sampling, detokenizing)`,
      `prefill          ${result.prefillTokensPerSecond.toFixed(1)} tokens/s: engine, ${promptTokens} prompt tokens over the time to first token`,
      `decode           ${result.decodeTokensPerSecond.toFixed(2)} tokens/s: engine, ${genTokens - 1} tokens from the first streamed ` +
        `delta to the last (forward steps, ${samplingName} sampling, detokenizer, stop check, scheduler, stream)`,
      ...(engineOnly ? [] : [`forward only     prefill ${result.forwardPrefillTokensPerSecond.toFixed(1)} tokens/s, decode ${result.forwardDecodeTokensPerSecond.toFixed(2)} ` +
        `tokens/s: forward.stepInPlace and an argmax, nothing else (kernels and worker hand-off); decode streams ` +
        `${result.forwardDecodeWeightGBps.toFixed(2)} GB/s of the weights a token reads`]),
      `engine cost      ${result.engineOwnMsPerStep.toFixed(3)} ms per decode step (${result.engineOwnPercent.toFixed(1)}% of it): ` +
        `the engine's own time from a step's return to the next step's start (sampling, detokenizer, stop check, stream, ` +
        `scheduler), timed inside it, beside ${result.engineStepMs.toFixed(2)} ms in the forward step` +
        (repeat > 1 ? ` (the fastest run's; all ${repeat} runs' steps together: ${result.engineOwnMsPerStepAllRuns.toFixed(3)} ms, ` +
          `${result.engineOwnPercentAllRuns.toFixed(1)}%)` : "") +
        (engineOnly ? "" : `; engine decode minus forward-only decode (separate runs): ` +
          `${result.engineOverheadMsPerToken.toFixed(3)} ms (${result.engineOverheadPercent.toFixed(1)}%)`),
      ...(engineOnly ? [] : [`sampler          ${result.samplerMsPerToken.toFixed(3)} ms/token: Sampler.sample at temperature 0.7, top-p 0.9 on ` +
        `${vocab} logits (the last forward step's), alone`]),
      `wasm memory      ${mib(result.wasmMemoryBytes)}${result.wasmMemories > 1 ? ` in ${result.wasmMemories} memories (shards)` : ""}`,
      `peak RSS         ${mib(result.peakRssBytes)}`,
      ...(schemaFile === undefined ? [] : [
        `json schema      decode ${result.constrainedDecodeTokensPerSecond!.toFixed(2)} tokens/s constrained to ${schemaFile} vs ` +
          `${result.decodeTokensPerSecond.toFixed(2)} unconstrained (${(result.constrainedDecodeTokensPerSecond! / result.decodeTokensPerSecond).toFixed(2)}x); ` +
          `schema compile ${result.schemaCompileMs!.toFixed(1)} ms; vocabulary trie ${result.tokenTrieMs!.toFixed(0)} ms (once per tokenizer)`,
      ]),
    ]);
  } finally {
    await engine.dispose();
  }
  return 0;
}

/** Mean time of Sampler.sample at temperature 0.7 / top-p 0.9 on a row of logits (after a warm-up).
 *  The row is not modified (no bias, no penalties), so every draw sees the same logits. */
function samplerTime(logits: Float32Array): number {
  const sampler = new Sampler({ temperature: 0.7, topP: 0.9, seed: 1 });
  for (let i = 0; i < 20; i++) sampler.sample(logits);
  const draws = 200;
  const t0 = performance.now();
  for (let i = 0; i < draws; i++) sampler.sample(logits);
  return (performance.now() - t0) / draws;
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
  const batch = positiveInteger("batch", numberOption(args, "batch")!);
  const promptTokens = positiveInteger("prompt-tokens", numberOption(args, "prompt-tokens", 128)!);
  const genTokens = positiveInteger("gen-tokens", numberOption(args, "gen-tokens", 64)!, 2);
  const repeat = positiveInteger("repeat", numberOption(args, "repeat", 1)!);
  const sampling = samplingOptions(args);
  const engine = await createEngine(modelPath, {
    threads: numberOption(args, "threads"), oversubscribe: args.options.has("oversubscribe"), maxSequences: batch, contextLength: promptTokens + genTokens, kvType: kvTypeOption(args), maxShardBytes: maxShardBytesOption(args),
    maxTokens: Math.max(batch, 64), onProgress: progressBar(),
  });
  try {
    const vocab = engine.model.config.vocabSize;
    const request: RequestOptions = { ...sampling, maxTokens: genTokens, ignoreEos: true };
    // Decode throughput of n streams started together, over the window in which all n are decoding:
    // from the moment the last of them streams its first token to the moment the first of them
    // streams its last. Only tokens streamed inside that window count (the deltas of one step reach
    // their streams microseconds apart, so an edge may gain or lose part of one step's tokens).
    // Every request gets its own prompt: none reuses another's prefix. Best of `repeat` runs.
    let promptSeed = 1000;
    const decodeRate = async (n: number): Promise<number> => {
      let best = 0;
      for (let r = 0; r < repeat; r++) {
        const arrivals = await Promise.all(Array.from({ length: n }, () =>
          tokenArrivals(engine.generateTokens(randomPrompt(promptTokens, vocab, promptSeed++), request))));
        const start = Math.max(...arrivals.map((a) => a[0].at));
        const end = Math.min(...arrivals.map((a) => a[a.length - 1].at));
        let tokens = 0;
        for (const a of arrivals) for (const { at, count } of a) if (at > start && at <= end) tokens += count;
        if (!(end > start) || tokens === 0) {
          throw new QwasmError("INVALID_ARGUMENT", `the ${n} streams were never all decoding at once: raise --gen-tokens (now ${genTokens})`);
        }
        best = Math.max(best, (1000 * tokens) / (end - start));
      }
      return best;
    };
    await tokenArrivals(engine.generateTokens(randomPrompt(promptTokens, vocab, 999), { ...request, maxTokens: Math.min(genTokens, 4) })); // warm-up
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
      model: modelPath, threads, kernels, batch, promptTokens, genTokens, sampling,
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
      `decode           ${total.toFixed(2)} tokens/s in all (${(total / batch).toFixed(2)} per stream): engine, tokens streamed ` +
        `while all ${batch} streams were decoding`,
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

/** When each delta carrying tokens arrived, and how many it carried. */
async function tokenArrivals(stream: AsyncIterable<Delta>): Promise<{ at: number; count: number }[]> {
  const arrivals: { at: number; count: number }[] = [];
  for await (const delta of stream) if (delta.tokens.length > 0) arrivals.push({ at: performance.now(), count: delta.tokens.length });
  return arrivals;
}

/** Multiply-adds of the matmuls of one token's forward pass (attention scores excluded). */
function matmulMacsPerToken(c: { hidden: number; nLayers: number; nHeads: number; nKVHeads: number; headDim: number;
  headDimV: number; ffn: number; vocabSize: number; moe?: { nExperts: number; nExpertsUsed: number; expertFfn: number } }): number {
  const qDim = c.nHeads * c.headDim;
  // A MoE layer: the shared expert (ffn), the router and the K experts a token is routed to.
  const experts = c.moe ? c.hidden * c.moe.nExperts + 3 * c.hidden * c.moe.expertFfn * c.moe.nExpertsUsed : 0;
  const perLayer = c.hidden * (qDim + c.nKVHeads * c.headDim + c.nKVHeads * c.headDimV) + c.nHeads * c.headDimV * c.hidden +
    3 * c.hidden * c.ffn + experts;
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
    threads: numberOption(args, "threads"), oversubscribe: args.options.has("oversubscribe"), maxSequences: 1, contextLength: promptTokens + 32, kvType: kvTypeOption(args), maxShardBytes: maxShardBytesOption(args), onProgress: progressBar(),
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
