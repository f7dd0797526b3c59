// Where GGUF bytes come from. Two shapes: random access (bytes in memory, a local file, a Blob) and
// sequential (a ReadableStream, a fetch Response). The reader asks both for a prefix of the file to
// parse the header from; then random sources are read at offsets and streams are consumed in order.
import { GGUFError, QwasmError } from "../../platform/errors";
import type { RandomAccessFile } from "../../platform/index";
import { openLocalFile } from "../../platform/files";

/** One GGUF file. A string is a file path, or a URL when it starts with http(s)://. */
export type GGUFPartSource =
  | Uint8Array | ArrayBuffer
  | string | URL
  | ReadableStream<Uint8Array> | Response | Blob
  | RandomAccessFile;

/**
 * Anything openGGUF reads from: one file (for a split model, any part that has its name, the others
 * are found by name), or the parts of a split model in any order.
 */
export type GGUFSource = GGUFPartSource | readonly GGUFPartSource[];

export interface SourceOptions {
  /** Passed to fetch for URL sources. */
  signal?: AbortSignal;
}

/** Bytes at offsets: memory, files, Blobs. */
export class RandomAccessSource {
  readonly kind = "random";
  constructor(private readonly file: RandomAccessFile) {}

  get size(): number { return this.file.size; }

  /** The first min(n, size) bytes. */
  prefix(n: number): Promise<Uint8Array> {
    return this.file.read(0, Math.min(n, this.size));
  }

  /** Exactly `length` bytes at `offset`; a GGUFError naming `field` if the file is shorter now.
   *  `into`: where the file may put them (see RandomAccessFile.read). */
  async read(field: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const bytes = await this.file.read(offset, length, into);
    if (bytes.length !== length) {
      throw new GGUFError(field, offset + bytes.length,
        `the file ended after ${bytes.length} of ${length} bytes (it is shorter than when it was opened)`);
    }
    return bytes;
  }

  close(): Promise<void> { return this.file.close(); }
}

/**
 * A stream, read once from the start. During the header phase `prefix(n)` keeps the first n bytes in
 * one growing buffer (the parser needs them contiguous); afterwards `next()` hands out the rest in
 * order, starting with what the prefix over-read, so no byte is held twice.
 */
export class StreamSource {
  readonly kind = "stream";
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private head = new Uint8Array(0);
  private headFilled = 0;
  /** Bytes already pulled from the stream and not yet handed out, in order. */
  private queued: Uint8Array[] = [];
  private ended = false;
  private pulledBytes = 0;
  /** File offset of the next byte `next()` returns. */
  position = 0;

  /**
   * `declaredSize` is the length the server announced (Content-Length), when there is one; `url`
   * names the download in the error when the stream fails (a connection closed mid-body).
   */
  constructor(stream: ReadableStream<Uint8Array>, readonly declaredSize?: number, private readonly url?: string) {
    this.reader = stream.getReader();
  }

  /** The file size: what the stream delivered once it has ended, else the declared size. */
  get size(): number | undefined {
    return this.ended ? this.pulledBytes : this.declaredSize;
  }

  /** The first n bytes, or fewer when the stream ends first. */
  async prefix(n: number): Promise<Uint8Array> {
    while (this.headFilled < n) {
      const chunk = await this.pull();
      if (chunk === null) break;
      const take = Math.min(chunk.length, n - this.headFilled);
      this.reserveHead(this.headFilled + take, n);
      this.head.set(chunk.subarray(0, take), this.headFilled);
      this.headFilled += take;
      if (take < chunk.length) this.queued.unshift(chunk.subarray(take));
    }
    return this.head.subarray(0, this.headFilled);
  }

  /**
   * Grows the header buffer to hold `need` bytes, doubling but never past `limit`: it stays within
   * twice what the stream has delivered, whatever length a (hostile) header claims to need.
   */
  private reserveHead(need: number, limit: number): void {
    if (need <= this.head.length) return;
    const grown = new Uint8Array(Math.min(limit, Math.max(need, 2 * this.head.length, 64 * 1024)));
    grown.set(this.head.subarray(0, this.headFilled));
    this.head = grown;
  }

  /** Ends the header phase: `next()` continues at `offset`, which must lie within the prefix. */
  beginData(offset: number): void {
    const rest = this.head.subarray(offset, this.headFilled);
    this.head = new Uint8Array(0);
    if (rest.length > 0) this.queued.unshift(rest);
    this.position = offset;
  }

  /** The next up to `max` bytes, or null at the end of the stream. */
  async next(max: number): Promise<Uint8Array | null> {
    const chunk = await this.pull();
    if (chunk === null) return null;
    if (chunk.length > max) this.queued.unshift(chunk.subarray(max));
    const out = chunk.length > max ? chunk.subarray(0, max) : chunk;
    this.position += out.length;
    return out;
  }

  async close(): Promise<void> {
    this.queued = [];
    await this.reader.cancel().catch(() => undefined);
  }

  private async pull(): Promise<Uint8Array | null> {
    const queued = this.queued.shift();
    if (queued) return queued;
    while (!this.ended) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await this.reader.read();
      } catch (e) {
        if (this.url === undefined || isAbort(e)) throw e;
        throw new QwasmError("NETWORK", `the download of ${this.url} failed after ${this.pulledBytes} bytes` +
          `${this.declaredSize === undefined ? "" : ` of ${this.declaredSize}`}: ${networkReason(e)}`, { cause: e });
      }
      const { done, value } = chunk;
      if (done) this.ended = true;
      else if (!(value instanceof Uint8Array)) {
        throw new QwasmError("INVALID_ARGUMENT", "a GGUF stream must deliver Uint8Array chunks");
      } else if (value.length > 0) {
        this.pulledBytes += value.length;
        return value;
      }
    }
    return null;
  }
}

export type ByteSource = RandomAccessSource | StreamSource;

function bytesFile(bytes: Uint8Array): RandomAccessFile {
  return {
    size: bytes.length,
    read: async (offset, length) => bytes.subarray(offset, offset + length),
    close: async () => undefined,
  };
}

function blobFile(blob: Blob): RandomAccessFile {
  return {
    size: blob.size,
    read: async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
    close: async () => undefined,
  };
}

/** A source over bytes already in memory (no copy). */
export function bytesSource(bytes: Uint8Array | ArrayBuffer): RandomAccessSource {
  return new RandomAccessSource(bytesFile(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)));
}

function isRandomAccessFile(x: unknown): x is RandomAccessFile {
  const f = x as RandomAccessFile;
  return typeof f === "object" && f !== null && typeof f.size === "number" && typeof f.read === "function";
}

function responseSource(response: Response, what: string): StreamSource {
  if (!response.ok) {
    void response.body?.cancel().catch(() => undefined);
    throw new QwasmError("HTTP_STATUS", `cannot fetch ${what}: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`);
  }
  if (!response.body) throw new QwasmError("NETWORK", `cannot fetch ${what}: the response has no body`);
  // Content-Length counts encoded bytes; only an unencoded body has the file's size.
  const encoding = response.headers.get("content-encoding");
  const length = response.headers.get("content-length");
  const size = length !== null && (!encoding || encoding === "identity") ? Number(length) : undefined;
  return new StreamSource(response.body, Number.isSafeInteger(size) ? size : undefined, what);
}

async function urlSource(url: URL, options: SourceOptions): Promise<ByteSource> {
  if (url.protocol === "file:") return new RandomAccessSource(await openLocalFile(url));
  let response: Response;
  try {
    response = await fetch(url, { signal: options.signal });
  } catch (e) {
    if (isAbort(e)) throw e;
    throw new QwasmError("NETWORK", `cannot fetch ${url.href}: ${networkReason(e)}`, { cause: e });
  }
  return responseSource(response, url.href);
}

function isAbort(e: unknown): boolean {
  return (e as { name?: unknown })?.name === "AbortError";
}

/** fetch's own message ("fetch failed", "terminated") with the cause that says why (ECONNREFUSED ...). */
function networkReason(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const cause = (e as { cause?: unknown })?.cause;
  const because = cause instanceof Error ? (cause as { code?: string }).code ?? cause.message : undefined;
  return because && !message.includes(because) ? `${message} (${because})` : message;
}

/**
 * What a source is called in messages: the path, the URL, a File's name; undefined for bytes and
 * streams, which have none.
 */
export function sourceName(source: GGUFPartSource): string | undefined {
  if (typeof source === "string") return source;
  if (source instanceof URL) return source.protocol === "file:" ? decodeURIComponent(source.pathname) : source.href;
  if (typeof Response !== "undefined" && source instanceof Response) return source.url || undefined;
  const name = (source as { name?: unknown }).name; // a File
  if (typeof Blob !== "undefined" && source instanceof Blob && typeof name === "string" && name) return name;
  return undefined;
}

/** Opens one GGUF file's source as a ByteSource. */
export async function openSource(source: GGUFPartSource, options: SourceOptions = {}): Promise<ByteSource> {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) return bytesSource(source);
  if (typeof source === "string") {
    if (/^https?:\/\//i.test(source)) return urlSource(new URL(source), options);
    return new RandomAccessSource(await openLocalFile(source));
  }
  if (source instanceof URL) return urlSource(source, options);
  if (typeof ReadableStream !== "undefined" && source instanceof ReadableStream) return new StreamSource(source);
  if (typeof Response !== "undefined" && source instanceof Response) return responseSource(source, source.url || "response");
  if (typeof Blob !== "undefined" && source instanceof Blob) return new RandomAccessSource(blobFile(source));
  if (isRandomAccessFile(source)) return new RandomAccessSource(source);
  throw new QwasmError("INVALID_ARGUMENT",
    "openGGUF: expected bytes, a file path, a URL, a ReadableStream, a Response, a Blob or a RandomAccessFile");
}
