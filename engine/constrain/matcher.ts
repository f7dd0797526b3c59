// A grammar matched against generated tokens. The matcher state is the set of parse stacks that the
// text so far leaves open (llama.cpp's llama_grammar: a pushdown automaton over bytes, stacks that
// share their tails). A token is allowed when its bytes, fed one by one, leave a stack (or finish
// the grammar). The mask of allowed tokens walks a byte trie of the vocabulary once, in preorder,
// with one state per depth, skipping the subtree of every prefix the grammar refuses. Masks are
// cached per grammar and state, so a state that comes back (inside a string, between array items)
// costs one lookup.
import { QwasmError } from "../../platform/errors";
import { END, type Grammar } from "./grammar";

/** What a matcher needs from a tokenizer. */
export interface TokenSource {
  readonly vocabSize: number;
  readonly endOfGenerationIds: ReadonlySet<number>;
  tokenBytes(id: number): Uint8Array;
  /** Control tokens (<|im_start|> ...) never match grammar text. */
  isControl(id: number): boolean;
}

/** The vocabulary's token bytes as a trie in preorder (children by byte). */
export class TokenTrie {
  readonly vocabSize: number;
  readonly endOfGeneration: number[];
  /** Per node: its byte, its depth (1 for a child of the root), the end of its subtree. */
  readonly byte: Uint8Array;
  readonly depth: Uint16Array;
  readonly subtreeEnd: Int32Array;
  /** Tokens whose bytes end at node i: tokens[tokenStart[i] .. tokenStart[i + 1]). */
  readonly tokenStart: Int32Array;
  readonly tokens: Int32Array;
  /** Byte length of each token (0 for tokens that never match: control, empty). */
  private readonly source: TokenSource;

  constructor(source: TokenSource) {
    this.source = source;
    this.vocabSize = source.vocabSize;
    this.endOfGeneration = [...source.endOfGenerationIds].filter((id) => id < source.vocabSize);
    const kept: number[] = [];
    const bytes: Uint8Array[] = [];
    for (let id = 0; id < source.vocabSize; id++) {
      const b = source.tokenBytes(id);
      if (b.length === 0 || source.isControl(id) || source.endOfGenerationIds.has(id)) continue;
      kept.push(id);
      bytes[id] = b;
    }
    const ids = Int32Array.from(kept);
    sortByBytes(ids, bytes);
    let maxNodes = 0;
    for (const id of ids) maxNodes += bytes[id].length;
    const byte = new Uint8Array(maxNodes);
    const depth = new Uint16Array(maxNodes);
    const endOfToken = new Int32Array(ids.length);
    const open: number[] = []; // node at each depth of the previous token
    let nodes = 0;
    let previous: Uint8Array | undefined;
    ids.forEach((id: number, k: number) => {
      const b = bytes[id];
      let common = 0;
      if (previous) while (common < b.length && common < previous.length && b[common] === previous[common]) common++;
      open.length = common;
      for (let d = common; d < b.length; d++) {
        byte[nodes] = b[d];
        depth[nodes] = d + 1;
        open.push(nodes++);
      }
      endOfToken[k] = open[b.length - 1];
      previous = b;
    });
    this.byte = byte.slice(0, nodes);
    this.depth = depth.slice(0, nodes);
    // A node's subtree ends at the next node that is not deeper.
    const subtreeEnd = new Int32Array(nodes);
    const stack: number[] = [];
    for (let i = 0; i < nodes; i++) {
      while (stack.length > 0 && this.depth[stack[stack.length - 1]] >= this.depth[i]) subtreeEnd[stack.pop()!] = i;
      stack.push(i);
    }
    for (const i of stack) subtreeEnd[i] = nodes;
    this.subtreeEnd = subtreeEnd;
    // Tokens in preorder of their end node (ids are sorted by bytes, so they come in that order).
    this.tokenStart = new Int32Array(nodes + 1);
    for (const node of endOfToken) this.tokenStart[node + 1]++;
    for (let i = 0; i < nodes; i++) this.tokenStart[i + 1] += this.tokenStart[i];
    this.tokens = ids;
  }

  tokenBytes(id: number): Uint8Array {
    return this.source.tokenBytes(id);
  }

  isControl(id: number): boolean {
    return this.source.isControl(id);
  }
}

/** Sorts ids (ascending) by their bytes, ties by id: an MSD radix sort (stable counting sorts by
 *  the byte at each depth; insertion sort for small ranges): the trie builds 1.5x faster than with Array.sort. */
function sortByBytes(ids: Int32Array, bytes: Uint8Array[]): void {
  const spare = new Int32Array(ids.length);
  const count = new Int32Array(257);
  const todo: number[] = [0, ids.length, 0]; // ranges of ids that share their first `depth` bytes
  while (todo.length > 0) {
    const depth = todo.pop()!, hi = todo.pop()!, lo = todo.pop()!;
    if (hi - lo <= 16) {
      for (let i = lo + 1; i < hi; i++) {
        const id = ids[i];
        let j = i - 1;
        for (; j >= lo && compareFrom(bytes[ids[j]], bytes[id], depth, ids[j], id) > 0; j--) ids[j + 1] = ids[j];
        ids[j + 1] = id;
      }
      continue;
    }
    count.fill(0);
    for (let i = lo; i < hi; i++) { const b = bytes[ids[i]]; count[depth < b.length ? b[depth] + 1 : 0]++; } // 0: ends here
    for (let k = 0, at = lo; k < 257; k++) { const c = count[k]; count[k] = at; at += c; }
    for (let i = lo; i < hi; i++) { const b = bytes[ids[i]]; spare[count[depth < b.length ? b[depth] + 1 : 0]++] = ids[i]; }
    ids.set(spare.subarray(lo, hi), lo);
    for (let k = 1; k < 257; k++) if (count[k] - count[k - 1] > 1) todo.push(count[k - 1], count[k], depth + 1);
  }
}

function compareFrom(a: Uint8Array, b: Uint8Array, from: number, idA: number, idB: number): number {
  const n = Math.min(a.length, b.length);
  for (let i = from; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length || idA - idB;
}

const tries = new WeakMap<TokenSource, TokenTrie>();

/** The trie of a tokenizer's vocabulary, built once per tokenizer (0.3-1 s for Qwen2's 151,936 tokens). */
export function tokenTrie(source: TokenSource): TokenTrie {
  let trie = tries.get(source);
  if (!trie) {
    trie = new TokenTrie(source);
    tries.set(source, trie);
  }
  return trie;
}

/** A parse stack: a program position on top of the rest (shared, interned per matcher). */
interface Stack {
  readonly pos: number;
  readonly next: Stack | null;
  readonly id: number;
}

/** The stacks whose top is a byte set, and whether the grammar can end here. */
interface State {
  readonly stacks: Stack[];
  readonly complete: boolean;
  /** Index in the matcher's state list; the row of its transitions (-1 for DEAD). */
  readonly index: number;
  /** stateKey(), once computed. */
  key?: string;
}

const DEAD: State = { stacks: [], complete: false, index: -1 };
/** A transition not computed yet, and one to DEAD. */
const UNKNOWN = -1;
const TO_DEAD = -2;
/** Masks kept per grammar and vocabulary (each is vocabSize / 8 bytes: 19 KB for Qwen2). */
const MASK_CACHE_LIMIT = 64;
/** The interning table is dropped past this many stacks (they are recreated as needed). */
const INTERN_LIMIT = 1 << 20;
/** States kept with their transitions (1 KB each). */
const STATE_LIMIT = 8192;

/**
 * A grammar bound to a vocabulary, for one generation. Feed it every generated token with
 * accept(); allows(), allowedTokens() and maskLogits() say what may come next.
 */
export class GrammarMatcher {
  private state: State;
  private interned = new Map<number, Stack>();
  /** States by their stacks' ids: a state that comes back is the same object, with its transitions. */
  private states = new Map<string, State>();
  private stateList: State[] = [];
  /** transitions[256 * state.index + byte]: the next state's index, UNKNOWN or TO_DEAD. */
  private transitions = new Int32Array(256 * 64).fill(UNKNOWN);
  /** Ids of interned stacks: never reused, so a key (position, next id) names one stack. */
  private nextId = 0;
  private readonly masks: Map<string, Uint32Array>;
  private readonly program: Int32Array;

  constructor(readonly grammar: Grammar, readonly trie: TokenTrie) {
    this.program = grammar.program;
    let masks = grammar.maskCache.get(trie);
    if (!masks) grammar.maskCache.set(trie, (masks = new Map()));
    this.masks = masks;
    const start: Stack[] = [];
    let complete = false;
    for (const alt of grammar.alternatives[grammar.root]) {
      complete = this.expand(this.stack(alt, null), start, []) || complete;
    }
    this.state = this.internState(start, complete);
  }

  /** The grammar can end here: the text so far is a whole sentence of it. */
  isComplete(): boolean {
    return this.state.complete;
  }

  /** Complete, and nothing can follow: generation should stop. */
  isFinished(): boolean {
    return this.state.complete && this.state.stacks.length === 0;
  }

  /** Whether an end-of-generation token may come now (only when complete). */
  canEnd(): boolean {
    return this.state.complete;
  }

  /** Whether `token` may come next. */
  allows(token: number): boolean {
    if (this.trie.endOfGeneration.includes(token)) return this.state.complete;
    if (token < 0 || token >= this.trie.vocabSize || this.trie.isControl(token)) return false;
    return this.advanceBytes(this.state, this.trie.tokenBytes(token)) !== DEAD;
  }

  /** Moves past `token`; throws INVALID_ARGUMENT if it is not allowed. End-of-generation tokens end
   *  a complete grammar and leave the state alone. */
  accept(token: number): void {
    if (this.trie.endOfGeneration.includes(token) && this.state.complete) return;
    const next = token >= 0 && token < this.trie.vocabSize && !this.trie.isControl(token)
      ? this.advanceBytes(this.state, this.trie.tokenBytes(token)) : DEAD;
    if (next === DEAD) throw new QwasmError("INVALID_ARGUMENT", `token ${token} does not continue the grammar here`);
    this.state = next;
    this.bound();
  }

  /** Moves past text (its UTF-8 bytes), e.g. a literal the caller forced; false if refused (state kept). */
  acceptText(text: string): boolean {
    const next = this.advanceBytes(this.state, new TextEncoder().encode(text));
    if (next === DEAD) return false;
    this.state = next;
    this.bound();
    return true;
  }

  /** The allowed tokens as a bit set: bit (id & 31) of word id >> 5 (end-of-generation ids when complete). */
  mask(): Uint32Array {
    const key = this.stateKey();
    let mask = this.masks.get(key);
    if (mask) {
      this.masks.delete(key); // most recently used last
      this.masks.set(key, mask);
      return mask;
    }
    mask = this.computeMask();
    if (this.masks.size >= MASK_CACHE_LIMIT) this.masks.delete(this.masks.keys().next().value!);
    this.masks.set(key, mask);
    return mask;
  }

  /** Fills `out` (vocabSize entries) with 1 for allowed tokens and 0 for the others. */
  fillMask(out: Uint8Array): void {
    const mask = this.mask();
    for (let i = 0; i < this.trie.vocabSize; i++) out[i] = (mask[i >>> 5] >>> (i & 31)) & 1;
  }

  /** The allowed token ids, ascending. */
  allowedTokens(): number[] {
    const mask = this.mask();
    const out: number[] = [];
    for (let i = 0; i < this.trie.vocabSize; i++) if ((mask[i >>> 5] >>> (i & 31)) & 1) out.push(i);
    return out;
  }

  /** Sets the logits of tokens that are not allowed to -Infinity. */
  maskLogits(logits: Float32Array): void {
    const mask = this.mask();
    const n = Math.min(logits.length, this.trie.vocabSize);
    for (let w = 0; w * 32 < n; w++) {
      const bits = mask[w];
      if (bits === -1 >>> 0) continue;
      for (let i = w * 32, end = Math.min(n, i + 32); i < end; i++) if (!((bits >>> (i & 31)) & 1)) logits[i] = -Infinity;
    }
    for (let i = this.trie.vocabSize; i < logits.length; i++) logits[i] = -Infinity;
  }

  private computeMask(): Uint32Array {
    const trie = this.trie;
    const mask = new Uint32Array((trie.vocabSize + 31) >>> 5);
    if (this.state.complete) for (const id of trie.endOfGeneration) mask[id >>> 5] |= 1 << (id & 31);
    // The state index at each depth of the walk: a transition already known is one table read.
    const at = new Int32Array(258);
    at[0] = this.state.index;
    const { byte, depth, subtreeEnd, tokenStart, tokens } = trie;
    const n = byte.length;
    let table = this.transitions;
    for (let i = 0; i < n;) {
      const d = depth[i];
      let next = table[at[d - 1] * 256 + byte[i]];
      if (next === UNKNOWN) {
        next = this.advance(this.stateList[at[d - 1]], byte[i]).index;
        if (next < 0) next = TO_DEAD;
        table = this.transitions; // (it may have grown)
      }
      if (next === TO_DEAD) { i = subtreeEnd[i]; continue; }
      at[d] = next;
      for (let t = tokenStart[i], end = tokenStart[i + 1]; t < end; t++) mask[tokens[t] >>> 5] |= 1 << (tokens[t] & 31);
      i++;
    }
    return mask;
  }

  /** The state as text that does not depend on this matcher's interning: every stack's positions. */
  private stateKey(): string {
    if (this.state.key !== undefined) return this.state.key;
    const parts: string[] = [];
    for (const top of this.state.stacks) {
      let key = "";
      for (let s: Stack | null = top; s; s = s.next) key += s.pos + ".";
      parts.push(key);
    }
    parts.sort();
    return (this.state.key = (this.state.complete ? "C" : "") + parts.join("|"));
  }

  private advanceBytes(state: State, bytes: Uint8Array): State {
    for (let i = 0; i < bytes.length && state !== DEAD; i++) state = this.advance(state, bytes[i]);
    return state;
  }

  /** The state after byte b, or DEAD. */
  private advance(state: State, b: number): State {
    const known = this.transitions[state.index * 256 + b];
    if (known >= 0) return this.stateList[known];
    if (known === TO_DEAD) return DEAD;
    const next = this.step(state, b);
    this.transitions[state.index * 256 + b] = next === DEAD ? TO_DEAD : next.index;
    return next;
  }

  private internState(stacks: Stack[], complete: boolean): State {
    stacks.sort((x, y) => x.id - y.id);
    let key = complete ? "C" : "";
    for (const s of stacks) key += s.id + ",";
    let state = this.states.get(key);
    if (!state) {
      state = { stacks, complete, index: this.stateList.length };
      this.states.set(key, state);
      this.stateList.push(state);
      if (this.transitions.length < 256 * this.stateList.length) {
        const grown = new Int32Array(2 * this.transitions.length).fill(UNKNOWN);
        grown.set(this.transitions);
        this.transitions = grown;
      }
    }
    return state;
  }

  private step(state: State, b: number): State {
    const stacks = state.stacks;
    let out: Stack[] | undefined;
    let complete = false;
    const seen: Stack[] = [];
    const word = (b >>> 5), bit = 1 << (b & 31);
    const sets = this.grammar.byteSets, program = this.program;
    for (let k = 0; k < stacks.length; k++) {
      const s = stacks[k];
      if (!(sets[(-2 - program[s.pos]) * 8 + word] & bit)) continue;
      out ??= [];
      complete = this.expand(this.stack(s.pos + 1, s.next), out, seen) || complete;
    }
    if (!out || (out.length === 0 && !complete)) return DEAD;
    return this.internState(out, complete);
  }

  /**
   * Adds to `out` the stacks that `s` expands to whose top is a byte set (rule references replaced
   * by each of their alternatives, finished alternatives popped); returns whether one empties
   * (the grammar can end).
   */
  private expand(s: Stack | null, out: Stack[], seen: Stack[]): boolean {
    if (s === null) return true;
    if (seen.includes(s)) return false;
    seen.push(s);
    const w = this.program[s.pos];
    if (w === END) return this.expand(s.next, out, seen);
    if (w <= -2) {
      if (!out.includes(s)) out.push(s);
      return false;
    }
    // A rule: each alternative on top of what follows the reference (nothing left: its tail).
    const rest = this.program[s.pos + 1] === END ? s.next : this.stack(s.pos + 1, s.next);
    let complete = false;
    for (const alt of this.grammar.alternatives[w]) complete = this.expand(this.stack(alt, rest), out, seen) || complete;
    return complete;
  }

  /** Past INTERN_LIMIT stacks or STATE_LIMIT states, drops the tables; the current state starts the
   *  new ones (its stacks stay valid: only their sharing with new ones is lost). */
  private bound(): void {
    if (this.interned.size < INTERN_LIMIT && this.stateList.length < STATE_LIMIT) return;
    this.interned = new Map();
    this.states = new Map();
    this.stateList = [];
    this.transitions = new Int32Array(256 * 64).fill(UNKNOWN);
    this.state = this.internState([...this.state.stacks], this.state.complete);
  }

  private stack(pos: number, next: Stack | null): Stack {
    const key = (next ? next.id + 1 : 0) * this.program.length + pos;
    let s = this.interned.get(key);
    if (!s) {
      s = { pos, next, id: this.nextId++ };
      this.interned.set(key, s);
    }
    return s;
  }
}
