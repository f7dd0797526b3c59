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
//
// Before any of that, the engine worker reads only the GGUF header of every file (`openModelHeader`:
// from the cached copy when there is a fresh one, else with HTTP Range requests that grow until the
// header parses, or, from a server that ignores Range, the first bytes of the body and then a cancel)
// and holds the model's memory plan against the page's memory: a model the page cannot hold is
// refused (INSUFFICIENT_MEMORY) before it is downloaded or stored.
import { QwasmError } from "../platform/errors";
import type { RandomAccessFile } from "../platform/index";
import type { GGUFPartSource } from "../weights/gguf/source";
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
  /** The cached copy was found fresh just now (openModelHeader): use it without asking the server again. */
  cachedIsFresh?: boolean;
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
 * The cached copy of `url` when the server announces its size (HEAD), cannot be asked, or `trusted`
 * says it was just checked; a copy whose size the server no longer announces is deleted.
 */
async function freshCopy(cache: Cache, url: string, trusted: boolean, signal?: AbortSignal):
  Promise<{ body: ReadableStream<Uint8Array>; size?: number; response: Response } | undefined> {
  const hit = await cache.match(url).catch(() => undefined);
  if (!hit?.body) return undefined;
  const stored = Number(hit.headers.get(SIZE_HEADER) ?? NaN);
  const size = Number.isSafeInteger(stored) ? stored : undefined;
  const remote = trusted ? undefined : await announcedSize(url, signal);
  if (remote === undefined || remote === size) return { body: hit.body, size, response: hit };
  // The file on the server changed: forget the old copy (the caller downloads the new one).
  await hit.body.cancel().catch(() => {});
  await cache.delete(url);
  return undefined;
}

/** The first Range request asks for this much; the reader asks for more (doubling) until the header parses. */
const FIRST_RANGE_BYTES = 256 * 1024;

/** A model file's header bytes, for the preflight, and where they came from. */
export interface ModelHeader {
  /** What openGGUF reads the header from: the cached Response, a RandomAccessFile over Range requests
   *  (only the header's bytes are ever fetched), or a body streamed from the start (closing the
   *  GGUFFile cancels it). */
  source: GGUFPartSource;
  /** "cache": a fresh cached copy (pass `cachedIsFresh` to openModelUrl); "network": not cached. */
  from: "cache" | "network";
  /** Drops the cached copy (its header is broken). */
  discard(): Promise<void>;
}

/** "bytes START-END/TOTAL" of a 206 answer; TOTAL undefined when the server says "*". */
function contentRange(response: Response): { start: number; end: number; total?: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get("content-range")?.trim() ?? "");
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === "*" ? undefined : Number(m[3]) };
}

async function fetchForHeader(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    if ((e as { name?: unknown })?.name === "AbortError") throw e;
    throw new QwasmError("NETWORK", `reading the header of ${url} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/**
 * A file of `size` bytes of which only a prefix is fetched, with Range requests for the bytes not
 * fetched yet; the GGUF reader only asks for prefixes (the header), never for tensor data.
 */
function rangedFile(url: string, size: number, first: Uint8Array, signal?: AbortSignal): RandomAccessFile {
  let have = first;
  return {
    size,
    async read(offset, length) {
      const end = Math.min(size, offset + length);
      if (end > have.length) {
        const response = await fetchForHeader(url, { headers: { range: `bytes=${have.length}-${end - 1}` }, signal });
        // Without a readable Content-Range (cross-origin, not exposed), a 206 is the range asked for.
        const range = response.status === 206 ? contentRange(response) ?? { start: have.length, end: end - 1 } : undefined;
        if (!range || range.start !== have.length) {
          await response.body?.cancel().catch(() => {});
          throw new QwasmError("HTTP_STATUS", `reading the header of ${url}: asked for bytes ${have.length}-${end - 1}, ` +
            `the server answered HTTP ${response.status}${range ? ` with bytes ${range.start}-${range.end}` : ""}`);
        }
        const bytes = new Uint8Array(await response.arrayBuffer());
        const grown = new Uint8Array(have.length + bytes.length);
        grown.set(have);
        grown.set(bytes, have.length);
        have = grown;
      }
      return have.subarray(offset, Math.min(end, have.length));
    },
    close: async () => {},
  };
}

/**
 * The GGUF header of a model URL without downloading the model: from a fresh cached copy (no
 * network but the HEAD that checks it), else with HTTP Range requests (`bytes=0-262143`, then more
 * as the reader asks), or, when the server ignores Range (200 and the whole body), from the start of
 * that body, which closing the opened GGUFFile cancels.
 */
export async function openModelHeader(url: string, options: { cache?: boolean; signal?: AbortSignal } = {}): Promise<ModelHeader> {
  const cache = options.cache === false ? undefined : await openCache();
  if (cache) {
    const hit = await freshCopy(cache, url, false, options.signal);
    if (hit) return { source: hit.response, from: "cache", discard: async () => { await cache.delete(url); } };
  }
  const nothing = { from: "network" as const, discard: async () => {} };
  const response = await fetchForHeader(url, { headers: { range: `bytes=0-${FIRST_RANGE_BYTES - 1}` }, signal: options.signal });
  if (response.status === 206) {
    // A cross-origin server that does not expose Content-Range (Access-Control-Expose-Headers) still
    // announces the size to HEAD (Content-Length is always readable).
    const range = contentRange(response) ?? { start: 0, total: await announcedSize(url, options.signal) };
    if (range.total !== undefined && range.start === 0) {
      return { source: rangedFile(url, range.total, new Uint8Array(await response.arrayBuffer()), options.signal), ...nothing };
    }
  }
  if (response.ok && response.status !== 206) return { source: response, ...nothing }; // Range ignored: the body from its start
  await response.body?.cancel().catch(() => {});
  if (response.status === 416 || response.status === 206) {
    // An empty file, or a size the server does not tell: read the body from its start.
    return { source: await fetchForHeader(url, { signal: options.signal }), ...nothing };
  }
  throw new QwasmError("HTTP_STATUS", `fetching ${url} failed: HTTP ${response.status} ${response.statusText}`);
}

/**
 * Opens a model URL: from the cache when it holds the URL with the size the server announces (or
 * the server cannot be reached), else from the network, filling the cache on the way.
 */
export async function openModelUrl(url: string, options: OpenModelOptions = {}): Promise<OpenedModel> {
  const cache = options.cache === false ? undefined : await openCache();
  const nothingStored = { stored: Promise.resolve(undefined), discard: async () => {} };
  if (cache) {
    const hit = await freshCopy(cache, url, options.cachedIsFresh === true, options.signal);
    if (hit) {
      return {
        stream: counted(hit.body, "cache", hit.size, options.onProgress), size: hit.size, from: "cache",
        stored: Promise.resolve(undefined), discard: async () => { await cache.delete(url); },
      };
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
