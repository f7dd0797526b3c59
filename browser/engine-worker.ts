// The engine worker (browsers): the page's main thread may not block in Atomics.wait, so the engine
// lives here, in a dedicated worker, and the page talks to it through comlink (browser/qwasm.ts).
// When this worker is cross-origin isolated it starts the compute workers itself (nested workers,
// from compute-worker.js beside this bundle); otherwise the model runs here on one thread.
// Bundled to dist/browser/engine-worker.js.
import * as Comlink from "comlink";
import { createEngine, type QwasmEngine } from "../engine/engine";
import type { CompletionStream } from "../engine/types";
import { QwasmError } from "../platform/errors";
import { defaultThreads } from "../compute/model/model";
import { canUseWorkers } from "../platform/workers";
import { openModelUrl, type OpenedModel } from "./model-cache";
import type {
  BrowserEngineInfo, CompletionRequest, EngineWorkerApi, LoadProgress, StreamControl, StreamMessage, WorkerLoadOptions,
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

async function load(source: string | Blob, options: WorkerLoadOptions, onProgress?: (p: LoadProgress) => void): Promise<BrowserEngineInfo> {
  if (engine || loading) throw new QwasmError("INVALID_ARGUMENT", "this engine worker has a model already; start another with loadEngine");
  if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 1)) {
    throw new QwasmError("INVALID_ARGUMENT", `threads must be a positive integer, got ${options.threads}`);
  }
  loading = true;
  const progress = throttled(onProgress);
  const { threads, reason } = await chooseThreads(options.threads);
  let opened: OpenedModel | undefined;
  try {
    const engineOptions = {
      threads, contextLength: options.contextLength, kvType: options.kvType, maxSequences: options.maxSequences ?? 1,
      maxShardBytes: options.maxShardBytes,
    };
    let created: QwasmEngine;
    let fileBytes: number | undefined;
    if (typeof source === "string") {
      opened = await openModelUrl(source, { cache: options.cache, onProgress: progress });
      fileBytes = opened.size;
      created = await createEngine(opened.stream, engineOptions);
    } else {
      fileBytes = source.size;
      created = await createEngine(source, {
        ...engineOptions,
        // A Blob is read at offsets: report tensor bytes copied (the header is a small part of the file).
        onProgress: progress && ((p) => progress({ phase: "file", loadedBytes: p.loadedBytes, totalBytes: p.totalBytes })),
      });
    }
    engine = created;
    const cacheError = await opened?.stored;
    return {
      ...created.info,
      crossOriginIsolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
      threadsReason: created.info.threads === threads ? reason : `${created.info.threads} thread(s): workers are unavailable here`,
      hardwareConcurrency: await defaultThreads(),
      source: opened ? opened.from : "file",
      fileBytes,
      ...(cacheError ? { cacheError } : {}),
    };
  } catch (e) {
    if (opened && isFileError(e)) await opened.discard().catch(() => {});
    // fetch and its body stream fail with a bare TypeError ("network error"): say what was being read.
    if (typeof source === "string" && e instanceof TypeError) {
      throw toWireError(new QwasmError("INVALID_ARGUMENT", `downloading ${source} failed: ${e.message}`));
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
  async dispose() {
    const e = engine;
    engine = undefined;
    await e?.dispose();
  },
};

Comlink.expose(api);
