// The OpenAI-compatible HTTP surface: a fetch-style handler (Request → Response) that Deno.serve and
// Bun.serve mount as it is, and Node through runtime/http-node. It knows only the Engine interface.
//
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /v1/models/{id}
//   GET /health (alive)   GET /ready (200 accepting, 503 draining)   GET /metrics (Prometheus; options.metrics)
//
// Known request fields are validated strictly (a wrong type or value is a 400 naming the field);
// fields that ask for something qwasm does not do (audio, echo, functions, ...) are a 400 naming
// the field unless their value asks for nothing; unknown fields are ignored, since OpenAI clients send
// many. Nothing a request says ever reaches the file system.
//
// Status codes of the engine's refusals: 429 with Retry-After when its queue is full (QUEUE_FULL),
// 504 when a request runs past its time limit (TIMEOUT; an error event, then the end, once a stream
// has started), 404 model_not_found for a model other than the one served, 503 with Retry-After
// while the engine drains (DRAINING).
//
// Sticky sessions: a request's session is its X-Session-Id header, else the body's `user` field. The
// handler counts distinct sessions (qwasm_sessions_total) and hands the id to onAccess; a balancer
// hashes on the header so that a conversation's turns reach the replica that holds its KV pages.
import { QwasmError } from "../platform/errors";
import { constraintText, type ResponseFormat } from "../engine/constrain/request";
import type {
  ChatMessage, CompletionResult, CompletionStream, Delta, Engine, GeneratedTokenLogprob, RequestOptions, Tool, ToolChoice,
} from "../engine/types";
import { checkTools, toolCallsGbnf } from "../engine/tools";
import { compileGrammar } from "../engine/constrain/grammar";
import { MAX_TOP_LOGPROBS } from "../engine/sampler/logprobs";
import { METRICS_CONTENT_TYPE, renderMetrics, SessionCounter } from "./metrics";

export interface OpenAIHandlerOptions {
  /** Requests must carry `Authorization: Bearer <apiKey>`; none needed when unset. */
  apiKey?: string;
  /** Cross-origin access: true allows any origin, a string allows that origin; off by default. */
  cors?: boolean | string;
  /** Largest request body read; larger ones get 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /**
   * The id /v1/models lists and responses carry; a request's `model` must be this id or absent.
   * Default: engine.info.modelName (the file's general.name).
   */
  modelId?: string;
  /** Accept any `model` in a request (it is still answered by the one model served). Default false: 404. */
  anyModel?: boolean;
  /**
   * Time limit of each generation, passed to the engine as timeoutMs: past it the request ends with
   * 504 (or an error event once streaming). Default: the engine's own (requestTimeoutMs), else none.
   */
  requestTimeoutMs?: number;
  /** Told about failures that are the server's fault (the client only sees a generic 500). Default: console.error. */
  onError?: (error: unknown) => void;
  /** Serve GET /metrics (Prometheus text format; behind the API key when one is set). Default false: 404. */
  metrics?: boolean;
  /** Sent as the header X-Qwasm-Replica on every response (which replica behind a balancer answered). */
  replicaId?: string;
  /** Told about every request once its response (its status and headers) is ready: an access log. */
  onAccess?: (entry: AccessLogEntry) => void;
}

/** One request, as onAccess is told about it. */
export interface AccessLogEntry {
  method: string;
  path: string;
  status: number;
  /** X-Session-Id, else the body's `user` (at most MAX_SESSION_ID_LENGTH characters); undefined when neither. */
  sessionId?: string;
  /** Milliseconds until the response started (a stream goes on after it). */
  ms: number;
}

/** Longer session ids are cut to this many characters (they only label metrics and logs). */
export const MAX_SESSION_ID_LENGTH = 256;

export type FetchHandler = (request: Request) => Promise<Response>;

/** Seconds a client is told to wait (Retry-After) when the engine's queue is full or it drains. */
const RETRY_AFTER_SECONDS = 1;

/** OpenAI's documented defaults where the engine's differ (its default temperature is 0, greedy). */
const DEFAULT_TEMPERATURE = 1;
const DEFAULT_COMPLETION_MAX_TOKENS = 16;
const MAX_STOP_STRINGS = 4;

/**
 * An OpenAI-compatible fetch handler (Request → Response): POST /v1/chat/completions,
 * POST /v1/completions (stream: true gives server-sent events ending with `data: [DONE]`) and
 * GET /v1/models. Mount it in Deno.serve, Bun.serve, or Node through the qwasm serve command.
 *
 * @example
 * const engine = await createEngine("model.gguf");
 * Deno.serve({ hostname: "127.0.0.1", port: 8080 }, createOpenAIHandler(engine, { apiKey: "secret" }));
 */
export function createOpenAIHandler(engine: Engine, options: OpenAIHandlerOptions = {}): FetchHandler {
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  if (!(Number.isSafeInteger(maxBodyBytes) && maxBodyBytes > 0)) {
    throw new QwasmError("INVALID_ARGUMENT", `maxBodyBytes = ${maxBodyBytes}: must be a positive integer`);
  }
  const timeoutMs = options.requestTimeoutMs;
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new QwasmError("INVALID_ARGUMENT", `requestTimeoutMs = ${timeoutMs}: must be a number > 0`);
  }
  const modelId = options.modelId ?? engine.info.modelName;
  const corsOrigin = options.cors === true ? "*" : typeof options.cors === "string" ? options.cors : undefined;
  const keyDigest = options.apiKey === undefined ? undefined : sha256(options.apiKey);
  const onError = options.onError ?? ((error: unknown) => console.error("qwasm server:", error));

  const generation: Generation = { engine, modelId, anyModel: options.anyModel ?? false, timeoutMs, onError };
  const sessions = new SessionCounter();
  const replicaId = options.replicaId;
  const onAccess = options.onAccess;

  async function route(request: Request, path: string, context: { sessionId?: string }): Promise<Response> {
    if (request.method === "OPTIONS" && corsOrigin !== undefined) return preflight(request);
    const allow = (methods: string) => {
      if (!methods.split(", ").includes(request.method)) {
        throw new ApiError(405, `${request.method} is not allowed on ${path}; use ${methods}`, null, "method_not_allowed", { allow: methods });
      }
    };
    // Probes of load balancers and orchestrators carry no key; these two tell nothing about the data.
    if (path === "/health") {
      allow("GET, HEAD");
      return json(200, { status: "ok" });
    }
    if (path === "/ready") {
      allow("GET, HEAD");
      if (engine.draining) return json(503, { status: "draining" }, { "retry-after": String(RETRY_AFTER_SECONDS) });
      return json(200, { status: "ready" });
    }
    if (keyDigest !== undefined) await authorize(request, await keyDigest);

    const header = request.headers.get("x-session-id");
    if (header !== null && header !== "") context.sessionId = header.slice(0, MAX_SESSION_ID_LENGTH);
    const readBody = async () => {
      const body = await readJsonBody(request, maxBodyBytes);
      if (context.sessionId === undefined && typeof body.user === "string" && body.user !== "") {
        context.sessionId = body.user.slice(0, MAX_SESSION_ID_LENGTH);
      }
      if (context.sessionId !== undefined) sessions.add(context.sessionId);
      return body;
    };
    if (path === "/metrics" && options.metrics === true) {
      allow("GET");
      return new Response(renderMetrics(engine, modelId, sessions), { status: 200, headers: { "content-type": METRICS_CONTENT_TYPE } });
    }
    if (path === "/v1/chat/completions") {
      allow("POST");
      return chatCompletions(generation, await readBody(), request.signal);
    }
    if (path === "/v1/completions") {
      allow("POST");
      return completions(generation, await readBody(), request.signal);
    }
    if (path === "/v1/models") {
      allow("GET");
      return json(200, { object: "list", data: [modelObject(modelId)] });
    }
    if (path.startsWith("/v1/models/")) {
      allow("GET");
      const id = safeDecode(path.slice("/v1/models/".length));
      if (id !== modelId) throw new ApiError(404, `The model "${id}" does not exist; this server has "${modelId}"`, "model", "model_not_found");
      return json(200, modelObject(modelId));
    }
    throw new ApiError(404, `Unknown request URL: ${request.method} ${path || "/"}; qwasm serves ` +
      `POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health and GET /ready${options.metrics === true ? " and GET /metrics" : ""}`,
    null, "unknown_url");
  }

  return async (request: Request): Promise<Response> => {
    const started = performance.now();
    const path = new URL(request.url).pathname.replace(/\/+$/, "");
    const context: { sessionId?: string } = {};
    let response: Response;
    try {
      response = await route(request, path, context);
    } catch (error) {
      response = errorResponse(error, onError);
    }
    if (corsOrigin !== undefined) {
      response.headers.set("access-control-allow-origin", corsOrigin);
      if (corsOrigin !== "*") response.headers.append("vary", "Origin");
    }
    if (replicaId !== undefined) response.headers.set("x-qwasm-replica", replicaId);
    if (onAccess) {
      try {
        onAccess({ method: request.method, path: path || "/", status: response.status, sessionId: context.sessionId, ms: performance.now() - started });
      } catch (error) {
        onError(error);
      }
    }
    return response;
  };
}

// ---- one generation: chat or text completion ----

interface Generation {
  engine: Engine;
  modelId: string;
  anyModel: boolean;
  timeoutMs: number | undefined;
  onError: (error: unknown) => void;
}

/** What differs between the two endpoints' responses. */
interface Shape {
  /** Chat chunks say the role in their first delta. */
  hasRole: boolean;
  /** The whole non-streamed response. */
  body(result: CompletionResult, usage: object): object;
  /** One streamed chunk: a delta, or the end (finishReason set). */
  chunk(delta: Delta | undefined, finishReason: string | null, first: boolean): object;
  /** The usage chunk at the end of a stream (stream_options.include_usage). */
  usageChunk(usage: object): object;
}

async function chatCompletions(g: Generation, body: Json, requestSignal: AbortSignal): Promise<Response> {
  checkModel(g, body);
  const messages = parseMessages(body.messages);
  const parsed = parseCommon(body, "chat");
  const id = `chatcmpl-${randomId()}`;
  const created = nowSeconds();
  const base = { id, object: "chat.completion.chunk", created, model: g.modelId };
  const logprobsOf = (list: GeneratedTokenLogprob[] | undefined) => (parsed.options.logprobs ? { content: (list ?? []).map(chatLogprob), refusal: null } : null);
  const shape: Shape = {
    hasRole: true,
    body: (result, usage) => {
      const message: Record<string, unknown> = { role: "assistant", content: result.toolCalls && result.text === "" ? null : result.text };
      if (result.toolCalls) message.tool_calls = result.toolCalls;
      return {
        id, object: "chat.completion", created, model: g.modelId,
        choices: [{ index: 0, message, logprobs: logprobsOf(result.logprobs), finish_reason: result.finishReason }],
        usage,
      };
    },
    chunk: (d, finishReason, first) => {
      const delta: Record<string, unknown> = {};
      if (first) delta.role = "assistant";
      if (d !== undefined && (d.text !== "" || !d.toolCalls)) delta.content = d.text;
      if (first && d?.toolCalls && d.text === "") delta.content = null;
      if (d?.toolCalls) delta.tool_calls = d.toolCalls;
      const logprobs = d?.logprobs ? logprobsOf(d.logprobs) : null;
      return { ...base, choices: [{ index: 0, delta, logprobs, finish_reason: finishReason }], ...parsed.usageNull };
    },
    usageChunk: (usage) => ({ ...base, choices: [], usage }),
  };
  return run(g, requestSignal, parsed, shape, (options) => g.engine.chat(messages, options));
}

async function completions(g: Generation, body: Json, requestSignal: AbortSignal): Promise<Response> {
  checkModel(g, body);
  const prompt = parsePrompt(body.prompt);
  const parsed = parseCommon(body, "completion");
  const id = `cmpl-${randomId()}`;
  const created = nowSeconds();
  const base = { id, object: "text_completion", created, model: g.modelId };
  // Offsets of the tokens in the text, counted across the chunks of a stream.
  let offset = 0;
  const logprobsOf = (list: GeneratedTokenLogprob[] | undefined) => {
    if (!parsed.options.logprobs) return null;
    const entries = list ?? [];
    const text_offset = entries.map((e) => { const at = offset; offset += e.token.length; return at; });
    return {
      tokens: entries.map((e) => e.token),
      token_logprobs: entries.map((e) => e.logprob),
      top_logprobs: entries.map((e) => Object.fromEntries(e.topLogprobs.map((t) => [t.token, t.logprob]))),
      text_offset,
    };
  };
  const shape: Shape = {
    hasRole: false,
    body: (result, usage) => ({
      ...base, choices: [{ text: result.text, index: 0, logprobs: logprobsOf(result.logprobs), finish_reason: result.finishReason }], usage,
    }),
    chunk: (d, finishReason) => ({
      ...base, choices: [{ text: d?.text ?? "", index: 0, logprobs: d?.logprobs ? logprobsOf(d.logprobs) : null, finish_reason: finishReason }], ...parsed.usageNull,
    }),
    usageChunk: (usage) => ({ ...base, choices: [], usage }),
  };
  return run(g, requestSignal, parsed, shape, (options) => g.engine.generate(prompt, options));
}

/** A token's log probability in a chat response (OpenAI's logprobs.content[i]). */
function chatLogprob(e: GeneratedTokenLogprob): object {
  return {
    token: e.token, logprob: e.logprob, bytes: e.bytes,
    top_logprobs: e.topLogprobs.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes })),
  };
}

/**
 * The request's own AbortSignal: fires when the client goes away (request.signal) or when the
 * streamed response is cancelled. (Time limits are the engine's: timeoutMs.)
 */
class Cancellation {
  private readonly controller = new AbortController();

  constructor(private readonly requestSignal: AbortSignal) {
    if (requestSignal.aborted) this.abort();
    else requestSignal.addEventListener("abort", this.abort);
  }

  get signal(): AbortSignal { return this.controller.signal; }

  readonly abort = (): void => { this.controller.abort(); };

  /** The request is over: drop the listener. */
  end(): void {
    this.requestSignal.removeEventListener("abort", this.abort);
  }
}

async function run(g: Generation, requestSignal: AbortSignal, parsed: ParsedRequest, shape: Shape,
  start: (options: RequestOptions) => CompletionStream): Promise<Response> {
  const cancellation = new Cancellation(requestSignal);
  let completion: CompletionStream;
  try {
    // Invalid requests (bad sampling values, a prompt past the context, a full queue) throw here,
    // before any output.
    const options: RequestOptions = { ...parsed.options, signal: cancellation.signal };
    if (g.timeoutMs !== undefined) options.timeoutMs = g.timeoutMs;
    completion = start(options);
  } catch (error) {
    cancellation.end();
    throw error;
  }
  if (parsed.stream) return streamResponse(g, completion, cancellation, shape, parsed.includeUsage);

  let result: CompletionResult;
  try {
    result = await completion;
  } finally {
    cancellation.end();
  }
  // The client has gone; nobody reads this.
  if (result.finishReason === "abort") throw new ApiError(499, "the client closed the request", null, "client_closed_request");
  return json(200, shape.body(result, usageJson(result)));
}

/** Server-sent events in OpenAI's chunk format, ended by `data: [DONE]`. */
function streamResponse(g: Generation, completion: CompletionStream, cancellation: Cancellation, shape: Shape,
  includeUsage: boolean): Response {
  const encoder = new TextEncoder();
  const event = (data: unknown) => encoder.encode(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
  const deltas: AsyncIterator<Delta> = completion[Symbol.asyncIterator]();
  let first = true;
  let cancelled = false;

  const finish = async (controller: ReadableStreamDefaultController<Uint8Array>) => {
    const result = await completion;
    cancellation.end();
    if (cancelled) return;
    if (result.finishReason === "abort") {
      // The client went away (request.signal); nobody reads more.
      controller.close();
      return;
    }
    // A completion with no text still tells the client the role (chat) before it ends.
    if (first && shape.hasRole) controller.enqueue(event(shape.chunk({ text: "", tokens: [] }, null, true)));
    controller.enqueue(event(shape.chunk(undefined, result.finishReason, false)));
    if (includeUsage) controller.enqueue(event(shape.usageChunk(usageJson(result))));
    controller.enqueue(event("[DONE]"));
    controller.close();
  };

  const body = new ReadableStream<Uint8Array>({
    // One delta per pull: the engine's output is read only as fast as the client takes it.
    async pull(controller) {
      try {
        for (;;) {
          const next = await deltas.next();
          if (cancelled) return;
          if (next.done) return await finish(controller);
          if (next.value.text === "" && !next.value.toolCalls && !next.value.logprobs?.length) continue;
          controller.enqueue(event(shape.chunk(next.value, null, first)));
          first = false;
          return;
        }
      } catch (error) {
        cancellation.end();
        if (cancelled) return;
        controller.enqueue(event({ error: errorJson(toApiError(error, g.onError)) }));
        controller.close();
      }
    },
    cancel() {
      cancelled = true;
      cancellation.abort();
      cancellation.end();
      void deltas.return?.()?.catch(() => {});
    },
  }, { highWaterMark: 0 });

  return new Response(body, {
    status: 200,
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" },
  });
}

function usageJson(result: CompletionResult): object {
  const u = result.usage;
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.totalTokens,
    prompt_tokens_details: { cached_tokens: u.cachedPromptTokens },
  };
}

// ---- request parsing ----

type Json = Record<string, unknown>;

interface ParsedRequest {
  options: RequestOptions;
  stream: boolean;
  includeUsage: boolean;
  /** `usage: null` on every chunk when a usage chunk will follow, as OpenAI does. */
  usageNull: { usage?: null };
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function invalid(param: string, message: string): never {
  throw new ApiError(400, message, param, "invalid_value");
}

/** A field's value; null counts as absent (OpenAI's nullable parameters). */
function field(body: Json, name: string): unknown {
  const value = body[name];
  return value === null ? undefined : value;
}

function numberField(body: Json, name: string, rule: string, ok: (n: number) => boolean, integer = false): number | undefined {
  const value = field(body, name);
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || !ok(value)) {
    invalid(name, `${name} must be ${rule}; got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

function booleanField(body: Json, name: string, param = name): boolean | undefined {
  const value = field(body, name);
  if (value !== undefined && typeof value !== "boolean") invalid(param, `${param} must be true or false; got ${JSON.stringify(value)}`);
  return value;
}

/** A request names the served model, or none; another is OpenAI's 404 unless anyModel. */
function checkModel(g: Generation, body: Json): void {
  const model = field(body, "model");
  if (model === undefined) return;
  if (typeof model !== "string") invalid("model", "model must be a string");
  if (model !== g.modelId && !g.anyModel) {
    throw new ApiError(404, `The model "${model}" does not exist; this server has "${g.modelId}" (or leave model out)`,
      "model", "model_not_found");
  }
}

/**
 * Fields of OpenAI's API that ask for something qwasm does not do, each with the values that ask for
 * nothing (OpenAI's defaults): a client relying on them gets a 400 naming the field instead of an
 * answer that silently lacks what it asked for.
 */
const UNSUPPORTED: Record<"chat" | "completion", [name: string, neutral: (v: unknown) => boolean, what: string][]> = {
  chat: [
    ["functions", (v) => Array.isArray(v) && v.length === 0, "function calling is not supported; send no functions"],
    ["function_call", (v) => v === "none" || v === "auto", 'function calling is not supported; function_call may only be "none" or "auto"'],
    ["modalities", (v) => Array.isArray(v) && v.length === 1 && v[0] === "text", 'only text output is supported; modalities may only be ["text"]'],
    ["audio", () => false, "audio output is not supported"],
    ["prediction", () => false, "predicted outputs are not supported"],
    ["web_search_options", () => false, "web search is not supported"],
  ],
  completion: [
    ["echo", (v) => v === false, "echo is not supported; echo may only be false"],
    ["best_of", (v) => v === 1, "best_of is not supported; best_of may only be 1"],
    ["suffix", (v) => v === "", "suffix (insertion) is not supported"],
  ],
};

function refuseUnsupported(body: Json, kind: "chat" | "completion"): void {
  for (const [name, neutral, what] of UNSUPPORTED[kind]) {
    const value = field(body, name);
    if (value !== undefined && !neutral(value)) throw new ApiError(400, `${name}: ${what}`, name, "unsupported_parameter");
  }
}

function parseCommon(body: Json, kind: "chat" | "completion"): ParsedRequest {
  refuseUnsupported(body, kind);
  numberField(body, "n", "1 (qwasm generates one choice per request)", (v) => v === 1, true);

  let maxTokens = numberField(body, "max_tokens", "an integer >= 1", (v) => v >= 1, true);
  if (kind === "chat") {
    maxTokens = numberField(body, "max_completion_tokens", "an integer >= 1", (v) => v >= 1, true) ?? maxTokens;
  } else {
    maxTokens ??= DEFAULT_COMPLETION_MAX_TOKENS;
  }

  const options: RequestOptions = {
    maxTokens,
    temperature: numberField(body, "temperature", "a number from 0 to 2", (v) => v >= 0 && v <= 2) ?? DEFAULT_TEMPERATURE,
    topP: numberField(body, "top_p", "a number in (0, 1]", (v) => v > 0 && v <= 1),
    topK: numberField(body, "top_k", "an integer >= 0 (0 or -1: no limit)", (v) => v >= -1, true),
    minP: numberField(body, "min_p", "a number from 0 to 1", (v) => v >= 0 && v <= 1),
    repetitionPenalty: numberField(body, "repetition_penalty", "a number > 0 (1: off)", (v) => v > 0),
    presencePenalty: numberField(body, "presence_penalty", "a number from -2 to 2", (v) => v >= -2 && v <= 2),
    frequencyPenalty: numberField(body, "frequency_penalty", "a number from -2 to 2", (v) => v >= -2 && v <= 2),
    seed: numberField(body, "seed", "an integer", Number.isSafeInteger, true),
    stop: parseStop(field(body, "stop")),
    logitBias: parseLogitBias(field(body, "logit_bias")),
    ignoreEos: booleanField(body, "ignore_eos"),
    responseFormat: kind === "chat" ? parseResponseFormat(field(body, "response_format")) : undefined,
  };
  if (kind === "chat") {
    Object.assign(options, parseTools(body));
    options.logprobs = booleanField(body, "logprobs") || undefined;
    options.topLogprobs = numberField(body, "top_logprobs", `an integer from 0 to ${MAX_TOP_LOGPROBS}`, (v) => v >= 0 && v <= MAX_TOP_LOGPROBS, true);
    if (options.topLogprobs !== undefined && options.topLogprobs > 0 && options.logprobs !== true) {
      invalid("top_logprobs", "top_logprobs needs logprobs: true");
    }
  } else {
    // The legacy completions API: logprobs is the number of alternatives (0-5), null for none.
    const n = numberField(body, "logprobs", "an integer from 0 to 5 (or null)", (v) => v >= 0 && v <= 5, true);
    if (n !== undefined) { options.logprobs = true; options.topLogprobs = n; }
  }
  if (options.topK === -1) options.topK = 0;
  for (const key of Object.keys(options) as (keyof RequestOptions)[]) {
    if (options[key] === undefined) delete options[key];
  }

  const stream = booleanField(body, "stream") ?? false;
  const streamOptions = field(body, "stream_options");
  if (streamOptions !== undefined && !isObject(streamOptions)) invalid("stream_options", "stream_options must be an object");
  const includeUsage = stream && (streamOptions === undefined ? false
    : booleanField(streamOptions, "include_usage", "stream_options.include_usage") ?? false);
  return { options, stream, includeUsage, usageNull: includeUsage ? { usage: null } : {} };
}

/** response_format: text, json_object or json_schema; a schema qwasm cannot express is a 400 naming the keyword. */
function parseResponseFormat(value: unknown): ResponseFormat | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || !["text", "json_object", "json_schema"].includes(value.type as string)) {
    invalid("response_format", 'response_format must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}');
  }
  if (value.type === "json_schema" && (!isObject(value.json_schema) || (value.json_schema.schema !== undefined && !isObject(value.json_schema.schema)))) {
    invalid("response_format", "response_format.json_schema must be an object {name, schema, strict} whose schema is a JSON object");
  }
  const format = value as unknown as ResponseFormat;
  try {
    constraintText({ responseFormat: format }); // compiles the schema: refuses what it cannot express now
  } catch (error) {
    if (error instanceof QwasmError) throw new ApiError(400, `response_format: ${error.message}`, "response_format", error.code === "UNSUPPORTED_SCHEMA" ? "unsupported_schema" : "invalid_value");
    throw error;
  }
  return format.type === "text" ? undefined : format;
}

/** tools, tool_choice and parallel_tool_calls; a parameter schema qwasm cannot express is a 400 naming the keyword. */
function parseTools(body: Json): Pick<RequestOptions, "tools" | "toolChoice" | "parallelToolCalls"> {
  const tools = field(body, "tools");
  const toolChoice = field(body, "tool_choice");
  const parallel = booleanField(body, "parallel_tool_calls");
  if (tools === undefined) {
    if (toolChoice !== undefined && toolChoice !== "none" && toolChoice !== "auto") {
      invalid("tool_choice", `tool_choice ${JSON.stringify(toolChoice)} needs tools`);
    }
    return {};
  }
  try {
    checkTools(tools, toolChoice);
  } catch (error) {
    if (!(error instanceof QwasmError)) throw error;
    const param = error.message.startsWith("toolChoice") || error.message.startsWith("tool_choice") ? "tool_choice" : "tools";
    invalid(param, error.message.replace(/^toolChoice/, "tool_choice"));
  }
  const list = tools as Tool[];
  try {
    // Compiles the grammar of every function's parameters now: a schema it cannot express is refused before anything runs.
    if (list.length > 0) compileGrammar(toolCallsGbnf(list.map((t) => t.function), true));
  } catch (error) {
    if (error instanceof QwasmError) {
      throw new ApiError(400, error.message, "tools", error.code === "UNSUPPORTED_SCHEMA" ? "unsupported_schema" : "invalid_value");
    }
    throw error;
  }
  const out: Pick<RequestOptions, "tools" | "toolChoice" | "parallelToolCalls"> = { tools: list };
  if (toolChoice !== undefined) out.toolChoice = toolChoice as ToolChoice;
  if (parallel !== undefined) out.parallelToolCalls = parallel;
  return out;
}

function parseStop(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const stops = typeof value === "string" ? [value] : value;
  if (!Array.isArray(stops) || stops.length > MAX_STOP_STRINGS || !stops.every((s) => typeof s === "string" && s !== "")) {
    invalid("stop", `stop must be a non-empty string or an array of at most ${MAX_STOP_STRINGS} non-empty strings`);
  }
  return stops.length > 0 ? stops : undefined;
}

function parseLogitBias(value: unknown): Map<number, number> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) invalid("logit_bias", "logit_bias must be an object mapping token ids to numbers from -100 to 100");
  const bias = new Map<number, number>();
  for (const [key, b] of Object.entries(value)) {
    if (!/^(0|[1-9][0-9]{0,9})$/.test(key) || !Number.isSafeInteger(Number(key))) {
      invalid("logit_bias", `logit_bias keys must be token ids (non-negative integers); got "${key}"`);
    }
    if (typeof b !== "number" || !Number.isFinite(b) || b < -100 || b > 100) {
      invalid("logit_bias", `logit_bias["${key}"] must be a number from -100 to 100; got ${JSON.stringify(b)}`);
    }
    bias.set(Number(key), b);
  }
  return bias.size > 0 ? bias : undefined;
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

function parseMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) invalid("messages", "messages must be a non-empty array of messages");
  return value.map((m: unknown, i): ChatMessage => {
    const param = `messages[${i}]`;
    if (!isObject(m)) invalid(param, `${param} must be an object with role and content`);
    if (typeof m.role !== "string" || !ROLES.has(m.role)) {
      invalid(`${param}.role`, `${param}.role must be one of ${[...ROLES].join(", ")}; got ${JSON.stringify(m.role)}`);
    }
    // "developer" is OpenAI's newer name for the system message; Qwen's templates know only "system".
    const message: ChatMessage = { role: m.role === "developer" ? "system" : m.role, content: parseContent(m, param) };
    for (const key of ["name", "tool_call_id"] as const) {
      if (m[key] === undefined || m[key] === null) continue;
      if (typeof m[key] !== "string") invalid(`${param}.${key}`, `${param}.${key} must be a string`);
      message[key] = m[key] as string;
    }
    if (m.tool_calls !== undefined && m.tool_calls !== null) {
      if (!Array.isArray(m.tool_calls)) invalid(`${param}.tool_calls`, `${param}.tool_calls must be an array`);
      message.tool_calls = m.tool_calls;
    }
    return message;
  });
}

function parseContent(m: Json, param: string): ChatMessage["content"] {
  const content = m.content;
  if (typeof content === "string") return content;
  // An assistant turn that only calls tools has no content.
  if ((content === null || content === undefined) && m.role === "assistant") return null;
  if (!Array.isArray(content)) {
    invalid(`${param}.content`, `${param}.content must be a string or an array of text parts ({ "type": "text", "text": "..." })`);
  }
  return content.map((part: unknown, j) => {
    if (!isObject(part) || part.type !== "text" || typeof part.text !== "string") {
      const type = isObject(part) ? JSON.stringify(part.type) : "not an object";
      invalid(`${param}.content[${j}]`, `${param}.content[${j}] is ${type}; qwasm supports text parts only ({ "type": "text", "text": "..." })`);
    }
    return { type: "text" as const, text: part.text as string };
  });
}

function parsePrompt(value: unknown): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === "string") return value[0];
  invalid("prompt", "prompt must be a string (or an array of one string); token-id prompts and batches are not supported");
}

// ---- HTTP plumbing ----

async function readJsonBody(request: Request, maxBytes: number): Promise<Json> {
  const mediaType = request.headers.get("content-type")?.split(";")[0].trim().toLowerCase();
  if (mediaType !== "application/json") {
    throw new ApiError(415, `Content-Type must be application/json; got ${mediaType ?? "none"}`, null, "unsupported_media_type");
  }
  const tooLarge = () => new ApiError(413, `the request body is larger than the server's limit of ${maxBytes} bytes`, null, "request_too_large");
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge();

  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body !== null) {
    const reader = request.body.getReader();
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch {
        throw new ApiError(400, "the request body could not be read", null, "invalid_body");
      }
      if (next.done) break;
      size += next.value.byteLength;
      if (size > maxBytes) {
        void reader.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(next.value);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) { bytes.set(chunk, at); at += chunk.byteLength; }

  let text: string;
  let value: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    value = JSON.parse(text);
  } catch (error) {
    throw new ApiError(400, `the request body is not valid JSON: ${(error as Error).message}`, null, "invalid_json");
  }
  // Checked after parsing (JSON.parse does not recurse), before any code that walks the value does.
  if (jsonDepth(text) > MAX_JSON_DEPTH) {
    throw new ApiError(400, `the request body nests arrays and objects more than ${MAX_JSON_DEPTH} deep`, null, "invalid_json");
  }
  if (!isObject(value)) throw new ApiError(400, "the request body must be a JSON object", null, "invalid_json");
  return value;
}

/** Deepest nesting the handler accepts: OpenAI requests need a handful of levels (tools' JSON schemas a few more). */
const MAX_JSON_DEPTH = 64;

/** How deep arrays and objects nest in JSON text (brackets inside strings do not count). */
function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return max;
}

function preflight(request: Request): Response {
  return new Response(null, {
    status: 204,
    headers: {
      "access-control-allow-methods": "GET, POST, OPTIONS",
      "access-control-allow-headers": request.headers.get("access-control-request-headers") ?? "authorization, content-type",
      "access-control-max-age": "600",
    },
  });
}

async function authorize(request: Request, expected: Uint8Array): Promise<void> {
  const header = request.headers.get("authorization") ?? "";
  const match = /^bearer\s+(.+)$/i.exec(header.trim());
  if (match === null) {
    throw new ApiError(401, "missing API key: send the header Authorization: Bearer <key>", null, "invalid_api_key", { "www-authenticate": "Bearer" });
  }
  // Digests have one length whatever the key, so the comparison takes the same time for every guess.
  const given = await sha256(match[1]);
  let difference = 0;
  for (let i = 0; i < expected.length; i++) difference |= given[i] ^ expected[i];
  if (difference !== 0) throw new ApiError(401, "incorrect API key", null, "invalid_api_key", { "www-authenticate": "Bearer" });
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

function modelObject(id: string): object {
  return { id, object: "model", created: 0, owned_by: "qwasm" };
}

/** An error that becomes an OpenAI-style error response. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null,
    readonly code: string | null,
    readonly headers: Record<string, string> = {},
    readonly type = status >= 500 ? "server_error" : "invalid_request_error",
  ) {
    super(message);
  }
}

function errorJson(error: ApiError): object {
  return { message: error.message, type: error.type, param: error.param, code: error.code };
}

/** Errors a caller can fix keep their message; anything else is the server's, logged and kept private. */
function toApiError(error: unknown, onError: (error: unknown) => void): ApiError {
  if (error instanceof ApiError) return error;
  const code = error instanceof QwasmError || (error instanceof Error && error.name === "QwasmError")
    ? (error as QwasmError).code : undefined;
  if (code === "INVALID_ARGUMENT") return new ApiError(400, (error as Error).message, null, "invalid_value");
  if (code === "UNSUPPORTED_SCHEMA" || code === "INVALID_GRAMMAR") return new ApiError(400, (error as Error).message, null, "invalid_value");
  if (code === "CONTEXT_OVERFLOW") return new ApiError(400, (error as Error).message, null, "context_length_exceeded");
  if (code === "QUEUE_FULL") {
    return new ApiError(429, `the server is busy (its queue of waiting requests is full); retry in ${RETRY_AFTER_SECONDS} s`,
      null, "rate_limit_exceeded", { "retry-after": String(RETRY_AFTER_SECONDS) }, "requests");
  }
  if (code === "DRAINING") {
    return new ApiError(503, `the server is shutting down and takes no new requests; retry in ${RETRY_AFTER_SECONDS} s (another replica, behind a balancer)`,
      null, "server_draining", { "retry-after": String(RETRY_AFTER_SECONDS) }, "server_error");
  }
  if (code === "TIMEOUT") {
    return new ApiError(504, "the request ran longer than the server's time limit and was stopped", null, "timeout", {}, "server_error");
  }
  onError(error);
  return new ApiError(500, "the server failed to complete the request; its log says why", null, "internal_error");
}

function errorResponse(error: unknown, onError: (error: unknown) => void): Response {
  const apiError = toApiError(error, onError);
  return json(apiError.status, { error: errorJson(apiError) }, apiError.headers);
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...headers, "content-type": "application/json" } });
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function randomId(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
