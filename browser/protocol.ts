// The browser's worker protocol, in one file of types: what the page asks the engine worker through
// comlink (load, tokenize, stats, dispose: the control plane), and the messages of the MessagePort that
// each completion gets of its own (deltas out, an abort in).
import type { KVType } from "../compute/model/forward";
import type { ChatMessage, CompletionResult, Delta, EngineInfo, RequestOptions } from "../engine/types";
import type { ErrorCode } from "../platform/errors";

/** A model as the worker gets it: an absolute URL, a Blob/File, or the parts of a split model. */
export type ModelSource = string | Blob | readonly (string | Blob)[];

/** Where loading stands: bytes of the file read so far (streamed into the model as they arrive). */
export interface LoadProgress {
  /** "download": from the network; "cache": from the Cache API; "file": from a File or Blob. */
  phase: "download" | "cache" | "file";
  loadedBytes: number;
  /** The file size, when known (Content-Length, the cache entry, the Blob). */
  totalBytes?: number;
}

/** What the engine worker is told to load with (the page's options, less what cannot be posted). */
export interface WorkerLoadOptions {
  /** Compute threads; default: the cores available when the page is cross-origin isolated, else 1. */
  threads?: number;
  /** Tokens the KV cache holds; default min(the file's context length, 4096). */
  contextLength?: number;
  /** Requests computed together; default 1 (a page usually runs one chat at a time). */
  maxSequences?: number;
  /** KV cache element type; default f32. */
  kvType?: KVType;
  /** Most bytes of one WebAssembly memory (default and at most 4 GiB); a bigger model is placed over
   *  several (each counts against the tab's limit, about 16 GiB in Chrome on desktop). */
  maxShardBytes?: number;
  /** Keep a model loaded from a URL in the Cache API and load it from there next time; default true. */
  cache?: boolean;
}

export interface BrowserEngineInfo extends EngineInfo {
  /** Whether the engine worker is cross-origin isolated (SharedArrayBuffer, hence compute workers). */
  crossOriginIsolated: boolean;
  /** Why `threads` is what it is, in words the page can show. */
  threadsReason: string;
  /** navigator.hardwareConcurrency in the worker. */
  hardwareConcurrency: number;
  /** Where the bytes came from. */
  source: "network" | "cache" | "file";
  /** Parts of a split model (absent for one file). */
  parts?: number;
  /** File size in bytes (all parts together), when known. */
  fileBytes?: number;
  /** Set when a download could not be kept in the Cache API (quota, private mode); loading still worked. */
  cacheError?: string;
}

/**
 * The engine's counters at one moment (a plain-data copy of EngineStats' numbers): tokens, and the
 * forward steps and the engine's own time between them, timed inside the engine worker. The
 * difference of two snapshots covers what ran between them; a step still computing is not in
 * either (a step is counted when it returns, a gap when the next step starts).
 */
export interface EngineStatsSnapshot {
  /** Forward steps that returned (prefill chunks and decode steps alike), and their seconds in
   *  forward.runInPlace (the kernels, the compute workers' hand-off; the logits are read in place). */
  steps: number;
  stepSeconds: number;
  /** The engine's own time from a step's return to the next step's start, when the scheduler went
   *  straight on (sampling, detokenizer, stop check, the stream's delta to the page, scheduler):
   *  the gaps counted and their seconds. */
  stepGaps: number;
  stepGapSeconds: number;
  /** Tokens generated, counted as they are sampled. */
  generationTokens: number;
  /** Prompt tokens of requests that finished with a result. */
  promptTokens: number;
}

/** One completion request, posted with the port its stream runs over. */
export type CompletionRequest = (
  | { kind: "chat"; messages: ChatMessage[] }
  | { kind: "generate"; prompt: string }
) & {
  options: Omit<RequestOptions, "signal">;
  /** The page's signal had fired already: the request finishes at once with finishReason "abort". */
  aborted?: boolean;
};

/** Engine worker → page, on a completion's port. The last message is "done" or "error". */
export type StreamMessage =
  | { type: "delta"; delta: Delta }
  | { type: "done"; result: CompletionResult }
  | { type: "error"; error: WireError };

/** Page → engine worker, on a completion's port. */
export type StreamControl = { type: "abort" };

/** An error as it crosses the boundary (structured clone drops an Error's `code`). */
export interface WireError {
  wireError: true;
  name: string;
  code?: ErrorCode;
  message: string;
}

/** The engine worker's comlink API. */
export interface EngineWorkerApi {
  /**
   * Loads a model from a URL (absolute) or a Blob, or a split model from its parts (URLs and/or
   * Blobs, any order; one part's URL finds the others by name); `onProgress` is a comlink proxy.
   */
  load(source: ModelSource, options: WorkerLoadOptions, onProgress?: (p: LoadProgress) => void): Promise<BrowserEngineInfo>;
  /** Starts a completion whose stream runs over `port` (transferred). */
  complete(request: CompletionRequest, port: MessagePort): void;
  tokenize(text: string, options?: { special?: boolean }): number[];
  detokenize(ids: number[]): string;
  /** The engine's counters now (EngineStatsSnapshot). */
  stats(): EngineStatsSnapshot;
  dispose(): Promise<void>;
}
