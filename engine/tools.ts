// Tool calling in Qwen2.5's format: the model answers a call as
//
//   <tool_call>
//   {"name": "get_weather", "arguments": {"city": "Paris"}}
//   </tool_call>
//
// (several blocks for parallel calls, separated by "\n"). This file checks OpenAI's `tools` and
// `tool_choice`, builds the constraint that makes the calls well formed (a GBNF grammar compiled by
// ./constrain: the function's name, then arguments that match its parameter schema), and parses the
// blocks out of the generated text, also piece by piece for streaming, into OpenAI's tool_calls.
//
// tool_choice:
//   "none"       no constraint and no parsing: the text is content (the prompt lists no tools).
//   "auto"       free text; once the model writes "<tool_call>" the rest of the block is
//                constrained (a lazy grammar, as llama.cpp's grammar triggers), then free again.
//   "required"   the whole answer is tool calls: <tool_call>...</tool_call> ("\n" <tool_call>...)*.
//   {type: "function", function: {name}}   the same, with that one function.
// parallel_tool_calls: false allows one call; generation ends when it is closed.
import { QwasmError } from "../platform/errors";
import { compileGrammar, type Grammar } from "./constrain/grammar";
import { gbnfLiteral, jsonSchemaToGbnf } from "./constrain/json-schema";
import { GrammarMatcher, tokenTrie, type TokenSource } from "./constrain/matcher";
import type { CompletionResult, CompletionStream, Delta, Tool, ToolCall, ToolCallDelta, ToolChoice, ToolFunction } from "./types";

export type { Tool, ToolCall, ToolCallDelta, ToolChoice, ToolFunction };

export const TOOL_CALL_OPEN = "<tool_call>";
export const TOOL_CALL_CLOSE = "</tool_call>";

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

function invalid(message: string): never {
  throw new QwasmError("INVALID_ARGUMENT", message);
}

/** Checks tools and toolChoice (OpenAI's rules); returns the function toolChoice names, if any. */
export function checkTools(tools: unknown, toolChoice: unknown): string | undefined {
  if (!Array.isArray(tools)) invalid("tools must be an array of {type: \"function\", function: {name, description, parameters}}");
  const names = new Set<string>();
  tools.forEach((tool: unknown, i) => {
    const t = tool as Partial<Tool> | null;
    if (t === null || typeof t !== "object" || t.type !== "function") invalid(`tools[${i}].type must be "function" (the only kind of tool qwasm runs)`);
    const f = t.function as Partial<ToolFunction> | undefined;
    if (f === null || typeof f !== "object") invalid(`tools[${i}].function must be an object {name, description, parameters}`);
    if (typeof f.name !== "string" || !NAME.test(f.name)) {
      invalid(`tools[${i}].function.name must be 1-64 letters, digits, _ or -; got ${JSON.stringify(f.name)}`);
    }
    if (names.has(f.name)) invalid(`tools[${i}].function.name "${f.name}" is given twice`);
    names.add(f.name);
    if (f.description !== undefined && f.description !== null && typeof f.description !== "string") invalid(`tools[${i}].function.description must be a string`);
    if (f.parameters !== undefined && f.parameters !== null && (typeof f.parameters !== "object" || Array.isArray(f.parameters))) {
      invalid(`tools[${i}].function.parameters must be a JSON Schema object`);
    }
  });
  if (toolChoice === undefined || toolChoice === "auto" || toolChoice === "none" || toolChoice === "required") {
    if (toolChoice === "required" && names.size === 0) invalid('tool_choice "required" needs at least one tool');
    return undefined;
  }
  const c = toolChoice as { type?: unknown; function?: { name?: unknown } } | null;
  if (c === null || typeof c !== "object" || c.type !== "function" || typeof c.function?.name !== "string") {
    invalid('toolChoice must be "auto", "none", "required" or {type: "function", function: {name}}');
  }
  const name = c.function.name as string;
  if (!names.has(name)) invalid(`toolChoice names the function "${name}", which is not in tools (${[...names].join(", ") || "none"})`);
  return name;
}

/** The arguments schema of a function: its parameters, or an object with no members. */
function parametersOf(f: ToolFunction): Record<string, unknown> {
  return f.parameters ?? { type: "object", properties: {} };
}

/**
 * GBNF for one call block of one of `functions`: rule `call` is
 * `<tool_call>\n{"name": "<name>", "arguments": <its parameters>}\n</tool_call>` (without the
 * opening tag when `opened`: the lazy grammar of "auto" starts after it).
 */
function callRules(functions: ToolFunction[], opened: boolean): string {
  const lines: string[] = [];
  const alternatives = functions.map((f, i) => {
    const head = (opened ? "" : TOOL_CALL_OPEN) + `\n{"name": "${f.name}", "arguments": `;
    let args: string;
    try {
      args = jsonSchemaToGbnf(parametersOf(f), `fn${i}`);
    } catch (e) {
      if (e instanceof QwasmError) {
        throw new QwasmError(e.code, `tools: function "${f.name}": ${e.message}`, { cause: e });
      }
      throw e;
    }
    lines.push(args);
    return `${gbnfLiteral(head)} fn${i} ${gbnfLiteral("}\n" + TOOL_CALL_CLOSE)}`;
  });
  lines.unshift(`call ::= ${alternatives.join(" | ")}`);
  return lines.join("\n");
}

/** GBNF of an answer made of tool calls ("required" or a named function). */
export function toolCallsGbnf(functions: ToolFunction[], parallel: boolean): string {
  return `root ::= call${parallel ? ' ( "\\n" call )*' : ""}\n` + callRules(functions, false);
}

/** GBNF of the rest of one call after "<tool_call>" (the lazy grammar of "auto"). */
export function toolCallBodyGbnf(functions: ToolFunction[]): string {
  return "root ::= call\n" + callRules(functions, true);
}

const grammars = new Map<string, Grammar>();

function cachedGrammar(text: string): Grammar {
  let g = grammars.get(text);
  if (!g) {
    g = compileGrammar(text);
    if (grammars.size >= 32) grammars.delete(grammars.keys().next().value!);
    grammars.set(text, g);
  }
  return g;
}

/** What the engine needs from a constraint: the sampler's allows/maskLogits, and the tokens taken. */
export interface RequestConstraint {
  allows(token: number): boolean;
  maskLogits(logits: Float32Array): void;
  accept(token: number): void;
  /** Nothing more may come: generation ends (finishReason "stop"). */
  isFinished(): boolean;
}

export interface ToolRequest {
  tools: Tool[];
  toolChoice?: ToolChoice;
  parallelToolCalls?: boolean;
}

/**
 * The constraint of a chat request with tools, or undefined (no tools, or tool_choice "none").
 * Grammars are compiled here, so an unsupported parameter schema throws UNSUPPORTED_SCHEMA before
 * the request is queued.
 */
export function toolConstraint(tokenizer: TokenSource, request: ToolRequest): RequestConstraint | undefined {
  const named = checkTools(request.tools, request.toolChoice);
  const choice = request.toolChoice ?? "auto";
  if (choice === "none" || request.tools.length === 0) return undefined;
  const parallel = request.parallelToolCalls ?? true;
  const trie = tokenTrie(tokenizer);
  const functions = request.tools.map((t) => t.function).filter((f) => named === undefined || f.name === named);
  if (choice === "auto") return new LazyToolConstraint(cachedGrammar(toolCallBodyGbnf(functions)), tokenizer, trie, parallel);
  return new GrammarMatcher(cachedGrammar(toolCallsGbnf(functions, parallel)), trie);
}

/**
 * tool_choice "auto": allows every token until the text ends with "<tool_call>", then the call's
 * grammar until the block is closed; then free again (parallel calls) or finished.
 */
class LazyToolConstraint implements RequestConstraint {
  private matcher: GrammarMatcher | undefined;
  /** The last bytes of the free text (enough to see the trigger across tokens). */
  private tail = new Uint8Array(0);
  private calls = 0;
  private readonly trigger = new TextEncoder().encode(TOOL_CALL_OPEN);

  constructor(private readonly grammar: Grammar, private readonly tokens: TokenSource,
    private readonly trie: ReturnType<typeof tokenTrie>, private readonly parallel: boolean) {}

  allows(token: number): boolean {
    return this.matcher ? this.matcher.allows(token) : true;
  }

  maskLogits(logits: Float32Array): void {
    this.matcher?.maskLogits(logits);
  }

  accept(token: number): void {
    if (this.matcher) {
      this.matcher.accept(token);
      if (this.matcher.isFinished()) {
        this.matcher = undefined;
        this.calls++;
        this.tail = new Uint8Array(0);
      }
      return;
    }
    if (this.tokens.isControl(token) || this.tokens.endOfGenerationIds.has(token)) return;
    const bytes = this.tokens.tokenBytes(token);
    const text = new Uint8Array(this.tail.length + bytes.length);
    text.set(this.tail);
    text.set(bytes, this.tail.length);
    const at = indexOf(text, this.trigger);
    if (at < 0) {
      this.tail = text.slice(Math.max(0, text.length - this.trigger.length + 1));
      return;
    }
    // The trigger: what the same token wrote after it starts the call's grammar.
    const matcher = new GrammarMatcher(this.grammar, this.trie);
    const rest = new TextDecoder().decode(text.subarray(at + this.trigger.length));
    if (rest !== "" && !matcher.acceptText(rest)) {
      // The token ran past the tag with text the grammar refuses: the block cannot be well formed;
      // leave it unconstrained (the parser keeps it as content).
      this.tail = new Uint8Array(0);
      return;
    }
    this.matcher = matcher;
    if (matcher.isFinished()) this.accept(-1);
  }

  isFinished(): boolean {
    return !this.parallel && this.calls > 0;
  }
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** A new call id: "call_" and 24 random hex digits (crypto.getRandomValues: every runtime has it). */
export function newToolCallId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "call_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The start of a call block up to its arguments: `{"name": "f", "arguments": `. */
const HEADER = /^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)/;

/** The longest suffix of `text` that is a proper prefix of `tag` (it may become the tag). */
function partialTagLength(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (text.endsWith(tag.slice(0, n))) return n;
  return 0;
}

/**
 * Splits generated text into content and tool calls, incrementally: push() each piece of text as
 * it comes and get the content to show and the tool-call pieces (OpenAI's streaming deltas);
 * finish() at the end. Pushing the text in any pieces gives the same content and calls.
 *
 * Content is the text outside the blocks; white space next to a block is dropped (the "\n" between
 * blocks). A call's arguments are the text between `"arguments": ` and the object's closing brace,
 * streamed as they come (holding back what may be that brace). A block whose header is not
 * `{"name": ..., "arguments": ...}` is parsed whole when it closes; one that is not JSON stays
 * content, as does an unclosed block whose name never came.
 */
export class ToolCallParser {
  private inCall = false;
  /** Free text not yet shown (a possible start of the tag), or the open block's text. */
  private buffer = "";
  private heldSpace = "";
  private dropSpace = false;
  /** The white space held before the open block (shown after all if the block is not a call). */
  private spaceBefore = { held: "", drop: false };
  private calls: ToolCall[] = [];
  /** The open block: its call index once its header was seen, where its arguments start, how many characters were sent. */
  private open: { index: number; argsStart: number; sent: number } | undefined;

  constructor(private readonly id: (index: number) => string = newToolCallId) {}

  /** The calls parsed so far (arguments whole for closed blocks). */
  get toolCalls(): ToolCall[] {
    return this.calls;
  }

  push(text: string): { content: string; toolCalls: ToolCallDelta[] } {
    const out = { content: "", toolCalls: [] as ToolCallDelta[] };
    this.buffer += text;
    for (;;) {
      if (!this.inCall) {
        const at = this.buffer.indexOf(TOOL_CALL_OPEN);
        if (at < 0) {
          const keep = partialTagLength(this.buffer, TOOL_CALL_OPEN);
          out.content += this.showContent(this.buffer.slice(0, this.buffer.length - keep));
          this.buffer = this.buffer.slice(this.buffer.length - keep);
          return out;
        }
        out.content += this.showContent(this.buffer.slice(0, at));
        this.buffer = this.buffer.slice(at + TOOL_CALL_OPEN.length);
        this.inCall = true;
        this.spaceBefore = { held: this.heldSpace, drop: this.dropSpace };
        this.heldSpace = "";
        this.open = undefined;
      }
      const end = this.buffer.indexOf(TOOL_CALL_CLOSE);
      if (end < 0) {
        this.streamArguments(this.buffer.slice(0, this.buffer.length - partialTagLength(this.buffer, TOOL_CALL_CLOSE)), out.toolCalls, false);
        return out;
      }
      const body = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + TOOL_CALL_CLOSE.length);
      this.inCall = false;
      this.closeBlock(body, out);
    }
  }

  /** The end of the text: what was held back. */
  finish(): { content: string; toolCalls: ToolCallDelta[] } {
    const out = { content: "", toolCalls: [] as ToolCallDelta[] };
    if (this.inCall) {
      this.inCall = false;
      const body = this.buffer;
      this.buffer = "";
      if (this.open || HEADER.test(body)) {
        // Cut short (length): the call with the arguments it has.
        this.streamArguments(body, out.toolCalls, true);
      } else {
        out.content += this.blockAsContent(TOOL_CALL_OPEN + body);
      }
    } else {
      out.content += this.showContent(this.buffer);
      this.buffer = "";
    }
    if (this.calls.length === 0) out.content += this.heldSpace;
    this.heldSpace = "";
    return out;
  }

  /** A block that is no call: content, with the white space before it. */
  private blockAsContent(text: string): string {
    this.heldSpace = this.spaceBefore.held;
    this.dropSpace = this.spaceBefore.drop;
    return this.showContent(text);
  }

  /** Content, white space at its end held back (dropped if a block follows). */
  private showContent(text: string): string {
    let out = "";
    for (const ch of text) {
      if (ch === " " || ch === "\n" || ch === "\t" || ch === "\r") {
        this.heldSpace += ch;
        continue;
      }
      out += (this.dropSpace ? "" : this.heldSpace) + ch;
      this.heldSpace = "";
      this.dropSpace = false;
    }
    return out;
  }

  /** Sends the open block's header once seen, then its arguments up to (not including) the last "}" so far. */
  private streamArguments(body: string, out: ToolCallDelta[], whole: boolean): void {
    if (!this.open) {
      const m = HEADER.exec(body);
      if (!m) return;
      let name: string;
      try {
        name = JSON.parse(`"${m[1]}"`) as string;
      } catch {
        return;
      }
      const index = this.calls.length;
      const id = this.id(index);
      this.calls.push({ id, type: "function", function: { name, arguments: "" } });
      this.open = { index, argsStart: m[0].length, sent: 0 };
      out.push({ index, id, type: "function", function: { name, arguments: "" } });
    }
    const open = this.open;
    const rest = body.slice(open.argsStart);
    let args: string;
    if (whole) {
      // The closing brace of the block's object ends the arguments.
      const trimmed = rest.trimEnd();
      args = trimmed.endsWith("}") && isJson(trimmed.slice(0, -1)) ? trimmed.slice(0, -1).trimEnd() : trimmed;
    } else {
      // Everything but what may be the object's closing brace (the last "}" so far) and white space.
      const brace = rest.lastIndexOf("}");
      args = rest.slice(0, brace < 0 ? rest.length : brace).trimEnd();
    }
    if (args.length > open.sent && args.startsWith(this.calls[open.index].function.arguments)) {
      const piece = args.slice(open.sent);
      this.calls[open.index].function.arguments = args;
      open.sent = args.length;
      out.push({ index: open.index, function: { arguments: piece } });
    }
    if (whole) {
      this.open = undefined;
      this.dropSpace = true;
    }
  }

  private closeBlock(body: string, out: { content: string; toolCalls: ToolCallDelta[] }): void {
    if (this.open || HEADER.test(body)) {
      this.streamArguments(body, out.toolCalls, true);
      return;
    }
    // Not in the usual order: parse the whole block.
    let call: { name?: unknown; arguments?: unknown } | undefined;
    try {
      call = JSON.parse(body) as typeof call;
    } catch {
      call = undefined;
    }
    if (call === null || typeof call !== "object" || typeof call.name !== "string") {
      out.content += this.blockAsContent(TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE);
      return;
    }
    const index = this.calls.length;
    const args = typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments ?? {});
    const id = this.id(index);
    this.calls.push({ id, type: "function", function: { name: call.name, arguments: args } });
    out.toolCalls.push({ index, id, type: "function", function: { name: call.name, arguments: args } });
    this.dropSpace = true;
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Content and calls of a whole text (what the streaming parser gives, at once). */
export function parseToolCalls(text: string, id: (index: number) => string = newToolCallId): { content: string; toolCalls: ToolCall[] } {
  const parser = new ToolCallParser(id);
  const a = parser.push(text);
  const b = parser.finish();
  return { content: a.content + b.content, toolCalls: parser.toolCalls };
}

/**
 * A chat completion with tools: the engine's stream with the blocks parsed out. Deltas carry the
 * content as text and the calls as toolCalls; the result has text = content, toolCalls, and
 * finishReason "tool_calls" when the answer ended (not cut short) with calls. Ids are the same in
 * the deltas and the result.
 */
export class ToolCallStream implements CompletionStream {
  readonly result: Promise<CompletionResult>;
  private readonly ids: string[] = [];

  constructor(private readonly inner: CompletionStream) {
    this.result = inner.result.then((r) => {
      const { content, toolCalls } = parseToolCalls(r.text, this.idOf);
      const result: CompletionResult = { ...r, text: content };
      if (toolCalls.length > 0) {
        result.toolCalls = toolCalls;
        if (r.finishReason === "stop") result.finishReason = "tool_calls";
      }
      return result;
    });
    this.result.catch(() => {});
  }

  private readonly idOf = (index: number): string => (this.ids[index] ??= newToolCallId());

  async *[Symbol.asyncIterator](): AsyncIterator<Delta> {
    const parser = new ToolCallParser(this.idOf);
    for await (const delta of this.inner) {
      const { content, toolCalls } = parser.push(delta.text);
      const out: Delta = { ...delta, text: content };
      if (toolCalls.length > 0) out.toolCalls = toolCalls;
      yield out;
    }
    const { content, toolCalls } = parser.finish();
    if (content !== "" || toolCalls.length > 0) {
      const out: Delta = { text: content, tokens: [] };
      if (toolCalls.length > 0) out.toolCalls = toolCalls;
      yield out;
    }
  }

  then<R1 = CompletionResult, R2 = never>(
    onFulfilled?: ((value: CompletionResult) => R1 | PromiseLike<R1>) | null,
    onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.result.then(onFulfilled, onRejected);
  }
}
