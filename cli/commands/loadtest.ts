// qwasm loadtest: N concurrent streaming chat clients against an OpenAI-compatible server for M
// seconds; prints requests, errors, time to first token, inter-token latency and tokens/s.
import { QwasmError } from "../../platform/errors";
import { numberOption, parseArgs, stringOption } from "../args";

export const help = `qwasm loadtest URL [--clients 16] [--seconds 30] [--max-tokens 64] [--prompt T] [--api-key K]
               [--model M] [--grace 30] [--header "Name: value"]... [--allow-remote] [--json]

Drives an OpenAI-compatible server (e.g. qwasm serve; URL as it prints it, http://127.0.0.1:8080/v1)
with --clients concurrent streaming chat completions, each client starting its next request as
soon as the last one ends, for --seconds. Requests still running then get --grace seconds to finish
and are aborted after that (and counted as errors): every request started ends as a success or a
counted error. Only loopback addresses are accepted unless --allow-remote is given.

  --clients N      concurrent clients (default 16)
  --seconds T      how long clients start new requests (default 30)
  --max-tokens N   max_tokens of every request (default 64)
  --prompt T       the user message (default: a short request for a story)
  --api-key K      sent as "Authorization: Bearer K" (default: $QWASM_API_KEY)
  --model M        the model field (default: the first id GET /v1/models lists)
  --grace S        seconds in-flight requests may take after the end (default 30)
  --header H       an extra request header "Name: value" (repeatable); {client} in the value becomes the
                   client's number, e.g. --header "X-Session-Id: load-{client}" gives each client its own
                   session, so that a balancer hashing on it keeps each client on one replica
  --json           print the result as JSON

Prints: requests completed and errors (by kind); p50/p99 in ms of the time to first token, of the
inter-token latency (the gaps between streamed content chunks as the client reads them: 0 where
several arrive together) and of the time per output token (each request's (last - first chunk) /
(tokens - 1)); and generated tokens per second over the run (from the usage the server reports,
else the content chunks). Exits 1 if any request failed.`;

export interface LoadTestOptions {
  /** The server's base URL: http://host:port or http://host:port/v1. */
  url: string;
  clients?: number;
  seconds?: number;
  maxTokens?: number;
  prompt?: string;
  apiKey?: string;
  model?: string;
  graceSeconds?: number;
  /** Extra request headers; "{client}" in a value becomes the client's number (0, 1, ...). */
  headers?: Record<string, string>;
  /** Accept a host that is not a loopback address. */
  allowRemote?: boolean;
}

export interface Percentiles { p50: number; p99: number; count: number }

export interface LoadTestResult {
  url: string;
  clients: number;
  started: number;
  completed: number;
  errors: number;
  /** Errors by kind: "HTTP 503", "network", "stream error event", "incomplete stream", "cut off at the end". */
  errorKinds: Record<string, number>;
  timeToFirstTokenMs: Percentiles;
  /** Gaps between successive streamed content chunks (0 where several arrive in one read). */
  interTokenMs: Percentiles;
  /** Per request: (last chunk - first chunk) / (tokens - 1), the decode pace each client saw. */
  timePerOutputTokenMs: Percentiles;
  /** Generated tokens of completed requests. */
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

const DEFAULT_PROMPT = "Tell me a short story about a lighthouse keeper.";
const MAX_CLIENTS = 1024;
const MAX_SECONDS = 24 * 3600;

/** Whether a URL's host is this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopbackUrl(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function invalid(message: string): never {
  throw new QwasmError("INVALID_ARGUMENT", message);
}

/** The API root (…/v1) of a server URL. */
function apiRoot(text: string, allowRemote: boolean): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    invalid(`loadtest: "${text}" is not a URL; pass the server's address, e.g. http://127.0.0.1:8080/v1`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") invalid(`loadtest: ${text} is not an http(s) URL`);
  if (!allowRemote && !isLoopbackUrl(url)) {
    invalid(`loadtest: ${url.hostname} is not a loopback address; a load test drives its target hard, ` +
      "so it runs against this machine only unless you pass --allow-remote");
  }
  const path = url.pathname.replace(/\/+$/, "");
  return `${url.origin}${path.endsWith("/v1") ? path : `${path}/v1`}`;
}

/** Nearest-rank percentiles. */
function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]);
  return { p50: at(0.5), p99: at(0.99), count: sorted.length };
}

interface Tally {
  started: number;
  completed: number;
  errorKinds: Record<string, number>;
  ttft: number[];
  itl: number[];
  tpot: number[];
  tokens: number;
}

/** Why a request failed: "HTTP 503", "network", "stream error event", ... */
class RequestFailed {
  constructor(readonly kind: string) {}
}

/** One streamed chat completion; returns normally on success, throws a RequestFailed otherwise. */
async function streamOne(endpoint: string, headers: Record<string, string>, body: string, signal: AbortSignal,
  tally: Tally): Promise<void> {
  const t0 = performance.now();
  let response: Response;
  try {
    response = await fetch(endpoint, { method: "POST", headers, body, signal });
  } catch {
    throw new RequestFailed(signal.aborted ? "cut off at the end" : "network");
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => {});
    throw new RequestFailed(`HTTP ${response.status}`);
  }
  let ttft: number | undefined;
  const itl: number[] = [];
  let first = 0;
  let last = 0;
  let chunks = 0;
  let usageTokens: number | undefined;
  let done = false;
  let pending = "";
  const decoder = new TextDecoder();
  const onEvent = (data: string) => {
    if (data === "[DONE]") { done = true; return; }
    let event: { error?: unknown; usage?: { completion_tokens?: number }; choices?: { delta?: { content?: string }; text?: string }[] };
    try {
      event = JSON.parse(data);
    } catch {
      throw new RequestFailed("malformed event");
    }
    if (event.error) throw new RequestFailed("stream error event");
    if (typeof event.usage?.completion_tokens === "number") usageTokens = event.usage.completion_tokens;
    const text = event.choices?.[0]?.delta?.content ?? event.choices?.[0]?.text;
    if (!text) return;
    const now = performance.now();
    if (chunks === 0) { first = now; ttft = now - t0; } else itl.push(now - last);
    last = now;
    chunks++;
  };
  const reader = response.body!.getReader();
  try {
    for (;;) {
      const { done: ended, value } = await reader.read();
      if (ended) break;
      pending += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = pending.indexOf("\n\n")) >= 0) {
        for (const line of pending.slice(0, end).split("\n")) if (line.startsWith("data: ")) onEvent(line.slice(6));
        pending = pending.slice(end + 2);
      }
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    if (signal.aborted) throw new RequestFailed("cut off at the end");
    throw error instanceof RequestFailed ? error : new RequestFailed("network");
  }
  if (!done) throw new RequestFailed("incomplete stream");
  const tokens = usageTokens ?? chunks;
  if (ttft !== undefined) tally.ttft.push(ttft);
  tally.itl.push(...itl);
  if (tokens >= 2 && chunks >= 2) tally.tpot.push((last - first) / (tokens - 1));
  tally.tokens += tokens;
}

/** Runs the load test; every request started is counted as completed or as an error. */
export async function loadTest(options: LoadTestOptions): Promise<LoadTestResult> {
  const root = apiRoot(options.url, options.allowRemote ?? false);
  const clients = options.clients ?? 16;
  const seconds = options.seconds ?? 30;
  const maxTokens = options.maxTokens ?? 64;
  const graceSeconds = options.graceSeconds ?? 30;
  if (!(Number.isInteger(clients) && clients >= 1 && clients <= MAX_CLIENTS)) invalid(`loadtest: clients must be an integer from 1 to ${MAX_CLIENTS}, got ${clients}`);
  if (!(seconds > 0 && seconds <= MAX_SECONDS)) invalid(`loadtest: seconds must be > 0 and at most ${MAX_SECONDS}, got ${seconds}`);
  if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) invalid(`loadtest: max tokens must be an integer >= 1, got ${maxTokens}`);
  if (!(graceSeconds >= 0 && graceSeconds <= MAX_SECONDS)) invalid(`loadtest: grace must be from 0 to ${MAX_SECONDS} seconds, got ${graceSeconds}`);

  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  const extra = checkHeaders(options.headers ?? {});
  const headersOf = (client: number) => {
    const all = { ...headers };
    for (const [name, value] of extra) all[name] = value.replaceAll("{client}", String(client));
    return all;
  };
  const model = options.model ?? await firstModel(root, headersOf(0));
  const body = JSON.stringify({
    model, messages: [{ role: "user", content: options.prompt ?? DEFAULT_PROMPT }], max_tokens: maxTokens,
    stream: true, stream_options: { include_usage: true },
  });

  const tally: Tally = { started: 0, completed: 0, errorKinds: {}, ttft: [], itl: [], tpot: [], tokens: 0 };
  const inFlight = new Set<AbortController>();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const client = async (_: unknown, index: number) => {
    const clientHeaders = headersOf(index);
    while (performance.now() < deadline) {
      const controller = new AbortController();
      inFlight.add(controller);
      tally.started++;
      try {
        await streamOne(`${root}/chat/completions`, clientHeaders, body, controller.signal, tally);
        tally.completed++;
      } catch (error) {
        if (!(error instanceof RequestFailed)) throw error;
        const kind = error.kind;
        tally.errorKinds[kind] = (tally.errorKinds[kind] ?? 0) + 1;
        // A server that refuses at once must not turn the client into a busy loop.
        if (kind !== "cut off at the end") await new Promise((resolve) => setTimeout(resolve, 10));
      } finally {
        inFlight.delete(controller);
      }
    }
  };
  // After the deadline and the grace period, abort whatever is still running.
  let cutoff: ReturnType<typeof setTimeout> | undefined;
  const stopAll = setTimeout(() => {
    cutoff = setTimeout(() => { for (const c of inFlight) c.abort(); }, graceSeconds * 1000);
  }, seconds * 1000);
  try {
    await Promise.all(Array.from({ length: clients }, client));
  } finally {
    clearTimeout(stopAll);
    clearTimeout(cutoff);
  }
  const elapsed = (performance.now() - t0) / 1000;
  const errors = Object.values(tally.errorKinds).reduce((a, b) => a + b, 0);
  if (tally.completed + errors !== tally.started) {
    throw new Error(`loadtest: ${tally.started} requests started but ${tally.completed + errors} accounted for`);
  }
  return {
    url: root, clients, started: tally.started, completed: tally.completed, errors, errorKinds: tally.errorKinds,
    timeToFirstTokenMs: percentiles(tally.ttft), interTokenMs: percentiles(tally.itl), timePerOutputTokenMs: percentiles(tally.tpot),
    tokens: tally.tokens, seconds: elapsed, tokensPerSecond: tally.tokens / elapsed,
  };
}

/** Header names as HTTP defines them (tokens); values without line breaks. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Headers loadtest sets itself. */
const OWN_HEADERS = new Set(["content-type", "content-length", "host", "connection", "transfer-encoding"]);

function checkHeaders(headers: Record<string, string>): [string, string][] {
  return Object.entries(headers).map(([name, value]) => {
    if (!HEADER_NAME.test(name)) invalid(`loadtest: header name ${JSON.stringify(name)} is not a valid HTTP header name`);
    if (OWN_HEADERS.has(name.toLowerCase())) invalid(`loadtest: header ${name} is set by loadtest itself; it cannot be overridden`);
    if (typeof value !== "string" || /[\r\n\0]/.test(value)) invalid(`loadtest: the value of header ${name} must be a string without line breaks`);
    return [name.toLowerCase(), value.trim()];
  });
}

/** "Name: value" arguments of --header (every occurrence; the option parser keeps only the last). */
export function parseHeaderArgs(argv: string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--") break;
    let text: string | undefined;
    if (argv[i] === "--header" && i + 1 < argv.length) text = argv[++i];
    else if (argv[i].startsWith("--header=")) text = argv[i].slice("--header=".length);
    if (text === undefined) continue;
    const colon = text.indexOf(":");
    if (colon <= 0) invalid(`loadtest: --header ${JSON.stringify(text)} must be "Name: value"`);
    headers[text.slice(0, colon).trim()] = text.slice(colon + 1);
  }
  return headers;
}

/** The first model the server lists; also tells early whether the server is there at all. */
async function firstModel(root: string, headers: Record<string, string>): Promise<string> {
  let response: Response;
  try {
    response = await fetch(`${root}/models`, { headers, signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    invalid(`loadtest: cannot reach ${root}/models (${(error as Error).message}); is the server running?`);
  }
  if (response.status === 401) invalid(`loadtest: ${root} wants an API key: pass --api-key`);
  if (!response.ok) invalid(`loadtest: GET ${root}/models answered HTTP ${response.status}; pass --model`);
  const json = await response.json().catch(() => undefined) as { data?: { id?: unknown }[] } | undefined;
  const id = json?.data?.[0]?.id;
  return typeof id === "string" ? id : "default";
}

export function formatLoadTest(r: LoadTestResult): string {
  const ms = (p: Percentiles) => (p.count === 0 ? "n/a" : `p50 ${p.p50.toFixed(1)} ms, p99 ${p.p99.toFixed(1)} ms (${p.count} samples)`);
  const lines = [
    `loadtest ${r.url}: ${r.clients} clients for ${r.seconds.toFixed(1)} s`,
    `requests:          ${r.completed} completed, ${r.errors} errors (${r.started} started)`,
    `time to 1st token: ${ms(r.timeToFirstTokenMs)}`,
    `inter-token:       ${ms(r.interTokenMs)}`,
    `per output token:  ${ms(r.timePerOutputTokenMs)}`,
    `throughput:        ${r.tokensPerSecond.toFixed(1)} tokens/s (${r.tokens} tokens)`,
  ];
  if (r.errors > 0) lines.push(`errors:            ${Object.entries(r.errorKinds).map(([k, n]) => `${k} × ${n}`).join(", ")}`);
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["allow-remote", "json"], help);
  if (args.positionals.length !== 1) invalid(`loadtest takes one URL, got ${args.positionals.length}`);
  const result = await loadTest({
    url: args.positionals[0],
    clients: numberOption(args, "clients"),
    seconds: numberOption(args, "seconds"),
    maxTokens: numberOption(args, "max-tokens"),
    prompt: stringOption(args, "prompt"),
    apiKey: stringOption(args, "api-key") ?? (process.env.QWASM_API_KEY || undefined),
    model: stringOption(args, "model"),
    graceSeconds: numberOption(args, "grace"),
    headers: parseHeaderArgs(argv),
    allowRemote: args.options.has("allow-remote"),
  });
  process.stdout.write((args.options.has("json") ? JSON.stringify(result, null, 2) : formatLoadTest(result)) + "\n");
  return result.errors > 0 || result.completed === 0 ? 1 : 0;
}
