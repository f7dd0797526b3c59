// Models downloaded from a URL, kept in the Cache API so that the next visit loads them without the
// network. An entry is keyed by the URL and records the file size; it is used when the server
// announces the same size, or cannot be reached. The download is streamed into the model and into
// the cache at once; the cache entry becomes visible only once the whole body arrived with the
// announced size (Cache.put commits nothing when the body stream fails), so an interrupted download
// never leaves a broken entry.
//
// A split model (gguf-split's NAME-00001-of-00003.gguf, ...) is cached part by part, each under its
// own URL. Its parts are read one after the other, so a part that is downloaded while an earlier one
// is still being read would pile up in memory behind a tee: parts are therefore stored in the cache
// first (`storeFirst`) and read from there.
import { QwasmError } from "../platform/errors";
import { parseSplitName, splitSiblingNames } from "../weights/gguf/split";
import type { LoadProgress } from "./protocol";

export const MODEL_CACHE_NAME = "qwasm-models-v1";
const SIZE_HEADER = "x-qwasm-size";
/** How long a freshness check (HEAD) may take before the cached copy is used anyway. */
const HEAD_TIMEOUT_MS = 5000;

export interface OpenedModel {
  /** The file's bytes, counted into `onProgress` as they are read. */
  stream: ReadableStream<Uint8Array>;
  size?: number;
  from: "network" | "cache";
  /**
   * Settles once the download is in the cache: resolves to undefined when stored (or nothing was
   * to be stored), to a message when it could not be (quota, private mode). Never rejects.
   */
  stored: Promise<string | undefined>;
  /** Drops what was stored for this URL (a file that failed to load is not kept). */
  discard(): Promise<void>;
}

export interface OpenModelOptions {
  /** Use and fill the cache; default true. */
  cache?: boolean;
  /**
   * Download the whole file into the cache before returning a stream of it (from the cache), instead
   * of streaming it to the model and the cache at once; used for the parts of a split model. Without
   * a usable cache this is a plain download.
   */
  storeFirst?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: LoadProgress) => void;
}

function cacheStorage(): CacheStorage | undefined {
  return typeof caches === "undefined" ? undefined : caches;
}

async function openCache(): Promise<Cache | undefined> {
  // Opaque origins and some private modes refuse the Cache API: then there is no cache.
  try {
    return await cacheStorage()?.open(MODEL_CACHE_NAME);
  } catch {
    return undefined;
  }
}

/** The size the server announces for `url` (HEAD), or undefined when it cannot be asked. */
async function announcedSize(url: string, signal?: AbortSignal): Promise<number | undefined> {
  const timeout = AbortSignal.timeout(HEAD_TIMEOUT_MS);
  try {
    const response = await fetch(url, { method: "HEAD", signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    return response.ok ? declaredLength(response) : undefined;
  } catch (e) {
    if (signal?.aborted) throw e;
    return undefined;
  }
}

/** Content-Length counts encoded bytes; only an unencoded body has the file's size. */
function declaredLength(response: Response): number | undefined {
  const encoding = response.headers.get("content-encoding");
  const length = Number(response.headers.get("content-length") ?? NaN);
  return Number.isSafeInteger(length) && (!encoding || encoding === "identity") ? length : undefined;
}

/** Passes the bytes through, reporting how many went by (at most every 50 ms, and at the end). */
function counted(body: ReadableStream<Uint8Array>, phase: LoadProgress["phase"], totalBytes: number | undefined,
  onProgress?: (p: LoadProgress) => void): ReadableStream<Uint8Array> {
  if (!onProgress) return body;
  let loadedBytes = 0;
  let last = 0;
  return body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      loadedBytes += chunk.length;
      const now = performance.now();
      if (now - last >= 50 || loadedBytes === totalBytes) {
        last = now;
        onProgress({ phase, loadedBytes, totalBytes });
      }
      controller.enqueue(chunk);
    },
    flush() {
      onProgress({ phase, loadedBytes, totalBytes });
    },
  }));
}

/** Fails the stream at its end when it delivered other than `size` bytes (so Cache.put stores nothing). */
function exactly(body: ReadableStream<Uint8Array>, size: number | undefined, url: string): ReadableStream<Uint8Array> {
  let bytes = 0;
  return body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      bytes += chunk.length;
      controller.enqueue(chunk);
    },
    flush() {
      if (size !== undefined && bytes !== size) {
        throw new QwasmError("INVALID_ARGUMENT", `the download of ${url} ended after ${bytes} of ${size} bytes`);
      }
    },
  }));
}

function cacheHeaders(size: number | undefined): Record<string, string> {
  const headers: Record<string, string> = { "content-type": "application/octet-stream" };
  if (size !== undefined) {
    headers["content-length"] = String(size);
    headers[SIZE_HEADER] = String(size);
  }
  return headers;
}

/**
 * The URLs of all parts of a split model from the URL of one part (`NAME-00002-of-00003.gguf`), or
 * just `url` for a whole file.
 */
export function modelPartUrls(url: string): string[] {
  const parsed = parseSplitName(url);
  return parsed && parsed.count > 1 ? splitSiblingNames(url, parsed.count)! : [url];
}

/**
 * Opens a model URL: from the cache when it holds the URL with the size the server announces (or
 * the server cannot be reached), else from the network, filling the cache on the way.
 */
export async function openModelUrl(url: string, options: OpenModelOptions = {}): Promise<OpenedModel> {
  const cache = options.cache === false ? undefined : await openCache();
  const nothingStored = { stored: Promise.resolve(undefined), discard: async () => {} };
  if (cache) {
    const hit = await cache.match(url).catch(() => undefined);
    if (hit?.body) {
      const size = Number(hit.headers.get(SIZE_HEADER) ?? NaN);
      const cachedSize = Number.isSafeInteger(size) ? size : undefined;
      const remote = await announcedSize(url, options.signal);
      if (remote === undefined || remote === cachedSize) {
        return {
          stream: counted(hit.body, "cache", cachedSize, options.onProgress), size: cachedSize, from: "cache",
          stored: Promise.resolve(undefined), discard: async () => { await cache.delete(url); },
        };
      }
      // The file on the server changed: forget the old copy and download the new one.
      await hit.body.cancel().catch(() => {});
      await cache.delete(url);
    }
  }

  // Aborting the download (the caller's signal, or discard()) fails both branches of the body.
  const download = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, download.signal]) : download.signal;
  const response = await fetch(url, { signal });
  if (!response.ok) throw new QwasmError("INVALID_ARGUMENT", `fetching ${url} failed: HTTP ${response.status} ${response.statusText}`);
  if (!response.body) throw new QwasmError("INVALID_ARGUMENT", `fetching ${url}: the response has no body`);
  const size = declaredLength(response);
  if (!cache) return { stream: counted(response.body, "download", size, options.onProgress), size, from: "network", ...nothingStored };

  if (options.storeFirst) {
    const body = counted(response.body, "download", size, options.onProgress);
    const stored = await cache.put(url, new Response(exactly(body, size, url), { headers: cacheHeaders(size) })).then(
      () => undefined,
      (e: unknown) => (signal.aborted ? Promise.reject(e) : `the model was not kept in the browser cache (a private window, or too little storage?): ${e instanceof Error ? e.message : String(e)}`),
    );
    const hit = stored === undefined ? await cache.match(url).catch(() => undefined) : undefined;
    if (hit?.body) {
      return {
        stream: hit.body, size, from: "network", stored: Promise.resolve(undefined),
        discard: async () => { await cache.delete(url); },
      };
    }
    // Not stored (quota, private mode): download it again, straight to the model.
    const again = await fetch(url, { signal });
    if (!again.ok || !again.body) throw new QwasmError("INVALID_ARGUMENT", `fetching ${url} failed: HTTP ${again.status} ${again.statusText}`);
    return { stream: counted(again.body, "download", size, options.onProgress), size, from: "network", stored: Promise.resolve(stored), discard: async () => {} };
  }

  const [forModel, forCache] = response.body.tee();
  const stored = cache.put(url, new Response(exactly(forCache, size, url), { headers: cacheHeaders(size) })).then(
    () => undefined,
    (e: unknown) => `the model was not kept in the browser cache (a private window, or too little storage?): ${e instanceof Error ? e.message : String(e)}`,
  );
  return {
    stream: counted(forModel, "download", size, options.onProgress), size, from: "network", stored,
    discard: async () => {
      download.abort();
      await stored;
      await cache.delete(url);
    },
  };
}

/** The URLs of the models in the cache, with their sizes. */
export async function cachedModels(): Promise<{ url: string; size?: number }[]> {
  const cache = await openCache();
  if (!cache) return [];
  const out: { url: string; size?: number }[] = [];
  for (const request of await cache.keys()) {
    const response = await cache.match(request);
    const size = Number(response?.headers.get(SIZE_HEADER) ?? NaN);
    out.push({ url: request.url, size: Number.isSafeInteger(size) ? size : undefined });
    await response?.body?.cancel().catch(() => {});
  }
  return out;
}

/**
 * Removes one model (by URL; for a split model, any part's URL removes all its parts) or, without a
 * URL, every model from the cache.
 */
export async function deleteCachedModel(url?: string): Promise<boolean> {
  const storage = cacheStorage();
  if (!storage) return false;
  if (url === undefined) return storage.delete(MODEL_CACHE_NAME);
  const cache = await openCache();
  if (!cache) return false;
  let deleted = false;
  for (const part of modelPartUrls(new URL(url, globalThis.location?.href).href)) deleted = (await cache.delete(part)) || deleted;
  return deleted;
}
