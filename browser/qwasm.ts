// qwasm in a web page: the engine runs in a dedicated module worker (the main thread may not block
// in Atomics.wait) and the page talks to it through comlink. The object loadEngine returns has the
// Engine interface, asynchronous where it crosses the worker boundary. Bundled to dist/browser/qwasm.js.
import * as Comlink from "comlink";
import type { ChatMessage, CompletionResult, CompletionStream, RequestOptions } from "../engine/types";
import { CompletionStreamImpl } from "../engine/stream";
import { QwasmError } from "../platform/errors";
import type {
  BrowserEngineInfo, CompletionRequest, EngineStatsSnapshot, EngineWorkerApi, LoadProgress, ModelSource, StreamControl, StreamMessage, WorkerLoadOptions,
} from "./protocol";
import { fromWireError, isWireError } from "./wire";

export type { BrowserEngineInfo, EngineStatsSnapshot, LoadProgress } from "./protocol";
export type { ChatMessage, CompletionResult, CompletionStream, Delta, RequestOptions } from "../engine/types";
export { QwasmError } from "../platform/errors";
export { cachedModels, deleteCachedModel, MODEL_CACHE_NAME } from "./model-cache";

export interface BrowserLoadOptions extends WorkerLoadOptions {
  /** Called as the file's bytes are read (a few times a second). */
  onProgress?: (p: LoadProgress) => void;
  /** Cancels loading: the engine worker is stopped. */
  signal?: AbortSignal;
  /** Where engine-worker.js is; default: beside this module. */
  workerUrl?: string | URL;
}

/**
 * The Engine interface across a worker boundary: the same calls, asynchronous where they must be.
 * The worker validates requests, so an invalid one (bad sampling values, a prompt past the context)
 * fails its stream with the QwasmError instead of throwing from chat/generate.
 */
export interface BrowserEngine {
  readonly info: BrowserEngineInfo;
  /** Chat completion with OpenAI-shaped messages rendered by the model's chat template. */
  chat(messages: ChatMessage[], options?: RequestOptions): CompletionStream;
  /** Completion of raw text (special tokens in it are not parsed). */
  generate(prompt: string, options?: RequestOptions): CompletionStream;
  tokenize(text: string, options?: { special?: boolean }): Promise<number[]>;
  detokenize(ids: number[]): Promise<string>;
  /**
   * The engine's counters now, from the worker: tokens, forward steps and their seconds, and the
   * engine's own time between steps (EngineStatsSnapshot). Subtract two snapshots for what ran in
   * between (a benchmark: the engine's cost per decode step).
   */
  stats(): Promise<EngineStatsSnapshot>;
  /** Stops the engine worker and its compute workers; streams still running fail with ABORTED. */
  dispose(): Promise<void>;
}

/** engine-worker.js beside this bundle, or in dist/browser/ when this module runs from source. */
function defaultWorkerUrl(): URL {
  const here = import.meta.url;
  return here.endsWith(".ts")
    ? new URL("../dist/browser/engine-worker.js", here)
    : new URL("./engine-worker.js", here);
}

/** Calls the worker, turning errors that crossed the boundary back into QwasmErrors. */
async function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw isWireError(e) ? fromWireError(e) : e;
  }
}

/** One file as the worker gets it: an absolute URL or the Blob. */
function part(source: string | URL | Blob): string | Blob {
  // A relative URL means relative to the page, not to the worker script.
  const input = typeof source === "string" || source instanceof URL ? new URL(source, location.href).href : source;
  if (typeof input !== "string" && !(input instanceof Blob)) {
    throw new QwasmError("INVALID_ARGUMENT", "loadEngine: expected a URL, a File or a Blob (or a list of them: the parts of a split model)");
  }
  return input;
}

/**
 * Starts an engine worker and loads a Qwen2 GGUF into it from a URL (streamed, kept in the Cache
 * API for the next visit) or a File/Blob. A split model (llama.cpp's gguf-split:
 * `NAME-00001-of-00003.gguf`, ...) loads from its first part's URL (the others are found by name) or
 * from a list of its parts (URLs, or the Files a user picked, in any order). Uses every core when the
 * page is cross-origin isolated, one thread otherwise; `info.threadsReason` says which and why.
 */
export async function loadEngine(source: string | URL | Blob | readonly (string | URL | Blob)[],
  options: BrowserLoadOptions = {}): Promise<BrowserEngine> {
  const { onProgress, signal, workerUrl, ...workerOptions } = options;
  signal?.throwIfAborted();
  const input: ModelSource = Array.isArray(source) ? source.map(part) : part(source as string | URL | Blob);
  const worker = new Worker(workerUrl ?? defaultWorkerUrl(), { type: "module", name: "qwasm-engine" });
  const remote = Comlink.wrap<EngineWorkerApi>(worker);
  const failed = new Promise<never>((_, reject) => {
    worker.addEventListener("error", (e) => {
      e.preventDefault();
      reject(new QwasmError("WORKER_FAILED", `the engine worker failed to start: ${e.message || "see the console"}` +
        " (is engine-worker.js served beside qwasm.js?)"));
    });
    signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
  failed.catch(() => {});
  const stop = () => {
    remote[Comlink.releaseProxy]();
    worker.terminate();
  };
  let info: BrowserEngineInfo;
  try {
    const progress = onProgress ? Comlink.proxy(onProgress) : undefined;
    info = await Promise.race([call(() => remote.load(input, workerOptions, progress)), failed]);
  } catch (e) {
    stop();
    throw e;
  }
  return new WorkerEngine(worker, remote, info, stop);
}

class WorkerEngine implements BrowserEngine {
  private readonly open = new Set<CompletionStreamImpl>();
  private disposed = false;

  constructor(
    private readonly worker: Worker,
    private readonly remote: Comlink.Remote<EngineWorkerApi>,
    readonly info: BrowserEngineInfo,
    private readonly stop: () => void,
  ) {
    worker.addEventListener("error", (e) => {
      this.failAll(new QwasmError("WORKER_FAILED", `the engine worker failed: ${e.message || "see the console"}`));
    });
  }

  chat(messages: ChatMessage[], options: RequestOptions = {}): CompletionStream {
    const { signal, ...rest } = options;
    return this.start({ kind: "chat", messages, options: rest, aborted: signal?.aborted }, signal);
  }

  generate(prompt: string, options: RequestOptions = {}): CompletionStream {
    const { signal, ...rest } = options;
    return this.start({ kind: "generate", prompt, options: rest, aborted: signal?.aborted }, signal);
  }

  tokenize(text: string, options?: { special?: boolean }): Promise<number[]> {
    return call(() => this.remote.tokenize(text, options));
  }

  detokenize(ids: number[]): Promise<string> {
    return call(() => this.remote.detokenize(ids));
  }

  stats(): Promise<EngineStatsSnapshot> {
    return call(() => this.remote.stats());
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.failAll(new QwasmError("ABORTED", "the engine was disposed"));
    // Let the worker stop its compute workers; terminating it would also end them, but less tidily.
    await Promise.race([this.remote.dispose().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000))]);
    this.stop();
  }

  /** One completion over a port of its own: deltas in, "abort" out when the signal fires. */
  private start(request: CompletionRequest, signal?: AbortSignal): CompletionStream {
    const stream = new CompletionStreamImpl();
    if (this.disposed) {
      stream.fail(new QwasmError("INVALID_ARGUMENT", "the engine was disposed"));
      return stream;
    }
    const { port1, port2 } = new MessageChannel();
    const onAbort = () => port1.postMessage({ type: "abort" } satisfies StreamControl);
    const end = () => {
      signal?.removeEventListener("abort", onAbort);
      this.open.delete(stream);
      port1.close();
    };
    port1.onmessage = (e: MessageEvent<StreamMessage>) => {
      const m = e.data;
      if (m.type === "delta") stream.push(m.delta);
      else if (m.type === "done") { stream.finish(m.result as CompletionResult); end(); }
      else { stream.fail(fromWireError(m.error)); end(); }
    };
    this.open.add(stream);
    signal?.addEventListener("abort", onAbort, { once: true });
    this.remote.complete(request, Comlink.transfer(port2, [port2])).catch((e: unknown) => {
      stream.fail(isWireError(e) ? fromWireError(e) : e);
      end();
    });
    return stream;
  }

  private failAll(error: Error): void {
    for (const stream of this.open) stream.fail(error);
    this.open.clear();
  }
}
