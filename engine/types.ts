// The public shape of the engine: requests, streamed deltas, results. One file of types, shared by
// the library API, the OpenAI handler and (later) the browser worker boundary.
import type { ChatMessage } from "./chat-template";
import type { SamplingOptions } from "./sampler/sampler";
import type { EngineStats, KVStats } from "./stats";
import type { ResponseFormat } from "./constrain/request";

export type { ChatMessage, ResponseFormat };

export interface RequestOptions extends SamplingOptions {
  /** Most tokens to generate; default: until end of generation or the context is full. */
  maxTokens?: number;
  /** Generation ends before the first occurrence of any of these strings (not included). */
  stop?: string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
  /**
   * Cancels the request: it finishes with finishReason "abort", its KV pages are freed, and its
   * stream yields no delta after the signal fires (the result's text is what the stream gave).
   */
  signal?: AbortSignal;
  /**
   * Time limit in milliseconds, from the call (queueing included): past it the request fails with
   * QwasmError TIMEOUT and its KV pages are freed. Default: the engine's requestTimeoutMs (none unless set).
   */
  timeoutMs?: number;
  /**
   * Constrains the output (OpenAI's response_format): {type: "json_object"} (any JSON object) or
   * {type: "json_schema", json_schema: {name, schema, strict}}. The text is JSON in one layout
   * (", " and ": ", no other white space) that parses and matches the schema; generation ends
   * (finishReason "stop") when the value is complete. A schema keyword that cannot be expressed
   * throws QwasmError UNSUPPORTED_SCHEMA naming it.
   */
  responseFormat?: ResponseFormat;
  /** Constrains the output to a GBNF grammar (llama.cpp's notation; start rule `root`). */
  grammar?: string;
  /**
   * Functions the model may call (chat only; OpenAI's tools). They are listed in the prompt by the
   * model's chat template when it has a tools section (Qwen2.5-Instruct's), else by the built-in
   * QWEN2_TOOLS_TEMPLATE (the same format). Calls come back as delta.toolCalls and result.toolCalls,
   * with finishReason "tool_calls"; the text is the content around them.
   */
  tools?: Tool[];
  /**
   * "auto" (default with tools): the model may answer or call; once it writes `<tool_call>` the call
   * is constrained to a function's name and arguments matching its parameter schema. "required":
   * the answer is calls, constrained from the first token. {type: "function", function: {name}}:
   * a call of that function. "none": no calls (the tools are left out of the prompt).
   */
  toolChoice?: ToolChoice;
  /** Several calls in one answer (default true); false: generation ends after the first call. */
  parallelToolCalls?: boolean;
  /**
   * Log probabilities of each generated token (delta.logprobs, result.logprobs): the log-softmax of
   * the model's logits, before logit bias, penalties, temperature, filters and constraints (what
   * OpenAI reports, and llama.cpp's server without post_sampling_probs).
   */
  logprobs?: boolean;
  /** With logprobs: also the most likely 0-20 tokens at each position (default 0). */
  topLogprobs?: number;
}

/** The log probability of one token. */
export interface TokenLogprob {
  /** Token id. */
  id: number;
  /** Its text (UTF-8 decoded; a piece of a character shows as U+FFFD). */
  token: string;
  /** Its UTF-8 bytes (pieces of a character too). */
  bytes: number[];
  logprob: number;
}

/** A generated token's log probability, with the most likely alternatives (topLogprobs). */
export interface GeneratedTokenLogprob extends TokenLogprob {
  /** Most likely first; ties to the lowest id. */
  topLogprobs: TokenLogprob[];
}

/** A function the model may call (OpenAI's tools[].function). */
export interface ToolFunction {
  name: string;
  description?: string;
  /** JSON Schema of the arguments object; absent: no arguments ({}). */
  parameters?: Record<string, unknown>;
  strict?: boolean | null;
}

/** OpenAI's tool definition. */
export interface Tool {
  type: "function";
  function: ToolFunction;
}

export type ToolChoice = "auto" | "none" | "required" | { type: "function"; function: { name: string } };

/** A finished call, as OpenAI returns it in message.tool_calls. */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/**
 * A piece of a call while streaming, as OpenAI sends it in delta.tool_calls: the first piece of
 * call `index` has its id, type and name (arguments ""), later pieces append to the arguments.
 */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: "function";
  function: { name?: string; arguments?: string };
}


/** "tool_calls": a chat answer with tools that ended with calls (see RequestOptions.tools). */
export type FinishReason = "stop" | "length" | "abort" | "tool_calls";

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Prompt tokens whose KV came from shared prefix pages (not computed again). */
  cachedPromptTokens: number;
}

/** One streamed piece of a completion. */
export interface Delta {
  /** Text to append; never half a UTF-8 character, never the start of a possible stop string. */
  text: string;
  /** Token ids sampled since the previous delta. */
  tokens: number[];
  /** With RequestOptions.logprobs: one per token of `tokens` (end-of-generation tokens excepted). */
  logprobs?: GeneratedTokenLogprob[];
  /** With tools: pieces of tool calls (OpenAI's streaming delta.tool_calls). */
  toolCalls?: ToolCallDelta[];
}

export interface CompletionResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  /** With tools: the calls the answer made (text is the content around them). */
  toolCalls?: ToolCall[];
  /** With RequestOptions.logprobs: one per generated token (end-of-generation tokens excepted). */
  logprobs?: GeneratedTokenLogprob[];
  usage: Usage;
  timings: {
    /** From the request to the first generated token. */
    timeToFirstTokenMs: number;
    totalMs: number;
  };
}

/**
 * A completion in flight: an AsyncIterable of deltas that can also be awaited for the whole result.
 * Iterate it or await it (or both: awaiting after iterating gives the same result).
 */
export interface CompletionStream extends AsyncIterable<Delta>, PromiseLike<CompletionResult> {
  /** The result once finished (also when only iterated). */
  readonly result: Promise<CompletionResult>;
}

export interface EngineInfo {
  /** general.name of the model file. */
  modelName: string;
  contextLength: number;
  threads: number;
  maxSequences: number;
}

/**
 * What the OpenAI handler and other surfaces need from an engine. Invalid requests (bad sampling
 * values, a prompt that does not fit the context) and requests past a full queue (QUEUE_FULL) throw
 * a QwasmError synchronously; an aborted request finishes with finishReason "abort"; a request past
 * its time limit, or one whose step failed, rejects with the error.
 */
export interface Engine {
  readonly info: EngineInfo;
  /**
   * Chat completion with OpenAI-shaped messages rendered by the model's chat template. Text in the
   * messages never becomes special tokens.
   *
   * @example
   * const stream = engine.chat([{ role: "user", content: "Hi!" }], { maxTokens: 64, temperature: 0.7 });
   * for await (const delta of stream) process.stdout.write(delta.text);
   * const { usage, finishReason } = await stream;
   */
  chat(messages: ChatMessage[], options?: RequestOptions): CompletionStream;
  /**
   * Completion of raw text (special tokens in it are not parsed).
   *
   * @example
   * const { text } = await engine.generate("The capital of France is", { maxTokens: 8 });
   */
  generate(prompt: string, options?: RequestOptions): CompletionStream;
  /** @example engine.tokenize("Hello world") // [9707, 1879] */
  tokenize(text: string, options?: { special?: boolean }): number[];
  /** @example engine.detokenize([9707, 1879]) // "Hello world" */
  detokenize(ids: number[]): string;
  /** Stops the workers and frees the model's memory; pending requests fail with ABORTED. */
  dispose(): Promise<void>;
  /** Counters and latency histograms for monitoring (QwasmEngine keeps them; the server's /metrics reads them). */
  readonly stats?: EngineStats;
  /** The KV page pool and the queues now (QwasmEngine). */
  kvStats?(): KVStats;
  /** True once drain() was called (the server's /ready answers 503). */
  readonly draining?: boolean;
  /** Refuses new requests (QwasmError DRAINING), lets the others finish within deadlineMs, resolves when idle. */
  drain?(options?: { deadlineMs?: number }): Promise<void>;
}
