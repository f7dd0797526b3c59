// The engine worker (browsers): the page's main thread may not block in Atomics.wait, so the engine
// lives here, in a dedicated worker, and the page talks to it through comlink (browser/qwasm.ts).
// When this worker is cross-origin isolated it starts the compute workers itself (nested workers,
// from compute-worker.js beside this bundle); otherwise the model runs here on one thread.
// Bundled to dist/browser/engine-worker.js.
import * as Comlink from "comlink";
import { createEngine, preflightEngine, type EngineOptions, type QwasmEngine } from "../engine/engine";
import type { CompletionStream } from "../engine/types";
import { QwasmError } from "../platform/errors";
import { defaultThreads } from "../compute/model/model";
import { canUseWorkers } from "../platform/workers";
import { openGGUF } from "../weights/gguf/reader";
import { modelPartUrls, openModelHeader, openModelUrl, type ModelHeader, type OpenedModel } from "./model-cache";
import type {
  ModelSource, BrowserEngineInfo, CompletionRequest, EngineStatsSnapshot, EngineWorkerApi, LoadProgress, StreamControl, StreamMessage,
  WorkerLoadOptions,
} from "./protocol";
import { toWireError } from "./wire";

let engine: QwasmEngine | undefined;
let loading = false;

/** How many compute threads this worker can run, and why, in words for the page. */
async function chooseThreads(requested: number | undefined): Promise<{ threads: number; reason: string }> {
  const cores = await defaultThreads();
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  if (!isolated) {
    return {
      threads: 1,
      reason: "one thread: the page is not cross-origin isolated, so it cannot share memory with compute workers " +
        "(serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)",
    };
  }
  if (!canUseWorkers()) return { threads: 1, reason: "one thread: this browser cannot start workers from a worker" };
  if (requested !== undefined) {
    return { threads: requested, reason: `${requested} thread${requested === 1 ? "" : "s"} as requested (${cores} cores available)` };
  }
  return { threads: cores, reason: `${cores} thread${cores === 1 ? "" : "s"}, one per core (cross-origin isolated)` };
}

/** Model and tokenizer errors mean the file itself is bad: such a file is not kept in the cache. */
function isFileError(e: unknown): boolean {
  return e instanceof QwasmError && /^(GGUF_|MODEL_|TOKENIZER_)/.test(e.code);
}

/** Posts progress to the page at most every 50 ms (each call is a message). */
function throttled(onProgress?: (p: LoadProgress) => void): ((p: LoadProgress) => void) | undefined {
  if (!onProgress) return undefined;
  let last = -Infinity;
  return (p) => {
    const now = performance.now();
    if (now - last < 50 && p.loadedBytes !== p.totalBytes) return;
    last = now;
    Promise.resolve(onProgress(p)).catch(() => {});
  };
}

/** The files of a model: one URL or Blob, or the parts of a split model (one part's URL names them all). */
function filesOf(source: ModelSource): (string | Blob)[] {
  if (Array.isArray(source)) {
    if (source.length === 0) throw new QwasmError("INVALID_ARGUMENT", "loadEngine: the list of parts is empty");
    return [...source];
  }
  return typeof source === "string" ? modelPartUrls(source) : [source as Blob];
}

/**
 * The preflight of a model from URLs: every file's header only (Range requests, or the cached copy),
 * planned as createEngine will plan it, against this page's memory. A model the page cannot hold is
 * refused here (INSUFFICIENT_MEMORY, with the numbers) before anything is downloaded or stored.
 * Returns which URLs have a fresh cached copy. Blobs are read by the load's own preflight (at offsets:
 * only their headers before the refusal).
 */
async function preflightUrls(files: readonly (string | Blob)[], options: EngineOptions, cache: boolean | undefined): Promise<boolean[]> {
  if (files.every((f) => typeof f !== "string")) return files.map(() => false);
  const settled = await Promise.allSettled(files.map((f): Promise<ModelHeader | undefined> =>
    typeof f === "string" ? openModelHeader(f, { cache }) : Promise.resolve(undefined)));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  const heads = settled.map((r) => (r.status === "fulfilled" ? r.value : undefined));
  const sources = files.map((f, i) => heads[i]?.source ?? f);
  if (failed) {
    await Promise.all(sources.map((s) => (s instanceof Response ? s.body?.cancel().catch(() => {}) : undefined)));
    throw failed.reason;
  }
  try {
    // From 256 KiB, doubling: a part without the vocabulary has a header of a few KiB.
    const file = await openGGUF(sources.length === 1 ? sources[0] : sources, { firstReadBytes: 256 * 1024 });
    try {
      await preflightEngine(file, options);
    } finally {
      await file.close().catch(() => {});
    }
  } catch (e) {
    // A cached copy whose header is broken is not kept (as a file that fails to load).
    if (isFileError(e)) await Promise.all(heads.map((h) => (h?.from === "cache" ? h.discard().catch(() => {}) : undefined)));
    throw e;
  }
  return heads.map((h) => h?.from === "cache");
}

async function load(source: ModelSource, options: WorkerLoadOptions, onProgress?: (p: LoadProgress) => void): Promise<BrowserEngineInfo> {
  if (engine || loading) throw new QwasmError("INVALID_ARGUMENT", "this engine worker has a model already; start another with loadEngine");
  if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 1)) {
    throw new QwasmError("INVALID_ARGUMENT", `threads must be a positive integer, got ${options.threads}`);
  }
  loading = true;
  const progress = throttled(onProgress);
  const { threads, reason } = await chooseThreads(options.threads);
  const opened: OpenedModel[] = [];
  let downloading: string | undefined;
  try {
    const files = filesOf(source);
    const engineOptions = {
      threads, contextLength: options.contextLength, kvType: options.kvType, maxSequences: options.maxSequences ?? 1,
      maxShardBytes: options.maxShardBytes,
    };
    // Progress over all files: URLs count their bytes as they arrive; Blobs count tensor bytes copied
    // (a Blob is read at offsets; the header is a small part of the file).
    const loadedOf = files.map(() => 0);
    const sizes = files.map((f) => (typeof f === "string" ? undefined : f.size));
    const report = (phase: LoadProgress["phase"]) => {
      if (!progress) return;
      const known = sizes.every((s) => s !== undefined);
      progress({ phase, loadedBytes: loadedOf.reduce((a, b) => a + b, 0), totalBytes: known ? sizes.reduce((a, b) => a! + b!, 0) : undefined });
    };
    const cached = await preflightUrls(files, engineOptions, options.cache);
    const inputs: (ReadableStream<Uint8Array> | Blob)[] = [];
    for (let i = 0; i < files.length; i++) {
      const file = files[i];
      if (typeof file !== "string") {
        inputs.push(file);
        continue;
      }
      downloading = file;
      const model = await openModelUrl(file, {
        cache: options.cache,
        // Parts are read one after the other: store each before reading it (see model-cache.ts).
        storeFirst: files.length > 1,
        cachedIsFresh: cached[i],
        // One file: its bytes as they arrive (from the network or the cache). Parts: the downloads
        // here, then the tensor bytes copied from the cache (below).
        onProgress: progress && ((p) => {
          if (files.length > 1 && p.phase !== "download") return;
          loadedOf[i] = p.loadedBytes;
          sizes[i] ??= p.totalBytes;
          report(p.phase);
        }),
      });
      opened.push(model);
      sizes[i] ??= model.size;
      inputs.push(model.stream);
    }
    downloading = undefined;
    const onlyBlobs = opened.length === 0;
    const copyPhase = onlyBlobs ? "file" : files.length > 1 ? "cache" : undefined;
    const created = await createEngine(inputs.length === 1 ? inputs[0] : inputs, {
      ...engineOptions,
      onProgress: copyPhase && progress ? ((p) => progress({ phase: copyPhase, loadedBytes: p.loadedBytes, totalBytes: p.totalBytes })) : undefined,
    });
    engine = created;
    const cacheErrors = (await Promise.all(opened.map((o) => o.stored))).filter((e) => e !== undefined);
    const fileSizes = files.map((f, i) => (typeof f === "string" ? sizes[i] : f.size));
    return {
      ...created.info,
      crossOriginIsolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
      threadsReason: created.info.threads === threads ? reason : `${created.info.threads} thread(s): workers are unavailable here`,
      hardwareConcurrency: await defaultThreads(),
      source: onlyBlobs ? "file" : opened.every((o) => o.from === "cache") ? "cache" : "network",
      fileBytes: fileSizes.every((s) => s !== undefined) ? fileSizes.reduce((a, b) => a! + b!, 0) : undefined,
      ...(files.length > 1 ? { parts: files.length } : {}),
      ...(cacheErrors.length > 0 ? { cacheError: cacheErrors[0] } : {}),
    };
  } catch (e) {
    if (isFileError(e)) await Promise.all(opened.map((o) => o.discard().catch(() => {})));
    // fetch and its body stream fail with a bare TypeError ("network error"): say what was being read.
    const url = downloading ?? (typeof source === "string" ? source : undefined);
    if (url !== undefined && e instanceof TypeError) {
      throw toWireError(new QwasmError("INVALID_ARGUMENT", `downloading ${url} failed: ${e.message}`));
    }
    throw toWireError(e);
  } finally {
    loading = false;
  }
}

function loaded(): QwasmEngine {
  if (!engine) throw toWireError(new QwasmError("INVALID_ARGUMENT", "no model is loaded in this engine worker"));
  return engine;
}

/** Runs one completion and streams it over its own port; an "abort" message on the port cancels it. */
function complete(request: CompletionRequest, port: MessagePort): void {
  const post = (m: StreamMessage) => port.postMessage(m);
  const abort = new AbortController();
  if (request.aborted) abort.abort();
  port.onmessage = (e: MessageEvent<StreamControl>) => { if (e.data?.type === "abort") abort.abort(); };
  let stream: CompletionStream;
  try {
    const e = loaded();
    const options = { ...request.options, signal: abort.signal };
    stream = request.kind === "chat" ? e.chat(request.messages, options) : e.generate(request.prompt, options);
  } catch (e) {
    post({ type: "error", error: toWireError(e) });
    port.close();
    return;
  }
  void (async () => {
    try {
      for await (const delta of stream) post({ type: "delta", delta });
      post({ type: "done", result: await stream.result });
    } catch (e) {
      post({ type: "error", error: toWireError(e) });
    } finally {
      port.close();
    }
  })();
}

const api: EngineWorkerApi = {
  load,
  complete,
  tokenize(text, options) {
    try { return loaded().tokenize(text, options); } catch (e) { throw toWireError(e); }
  },
  detokenize(ids) {
    try { return loaded().detokenize(ids); } catch (e) { throw toWireError(e); }
  },
  stats(): EngineStatsSnapshot {
    let s;
    try { s = loaded().stats; } catch (e) { throw toWireError(e); }
    return {
      steps: s.steps, stepSeconds: s.stepSeconds, stepGaps: s.stepGaps, stepGapSeconds: s.stepGapSeconds,
      generationTokens: s.generationTokens, promptTokens: s.promptTokens,
    };
  },
  async dispose() {
    const e = engine;
    engine = undefined;
    await e?.dispose();
  },
};

Comlink.expose(api);
