// Byte-pair merging over token ids. A merge table maps a pair of ids (left, right) to its rank
// (its line in the merges list) and the id of the merged token; a word is merged lowest rank first,
// leftmost first among equal ranks — the order of Hugging Face tokenizers and llama.cpp.

/**
 * Open-addressing hash table from an id pair to (rank, merged id). One Int32Array with four words
 * per slot (left, right, rank, merged), so that a probe touches one cache line.
 */
export class MergeTable {
  readonly size: number;
  private readonly mask: number;
  private readonly slots: Int32Array; // left = -1 marks an empty slot

  /** `pairs` holds (left, right, merged) triples in rank order; a repeated pair keeps its first rank. */
  constructor(pairs: Int32Array) {
    const n = pairs.length / 3;
    let capacity = 16;
    while (capacity < n * 1.5) capacity *= 2; // load factor <= 2/3
    this.mask = capacity - 1;
    const slots = (this.slots = new Int32Array(capacity * 4));
    for (let i = 0; i < capacity; i++) slots[4 * i] = -1;
    let size = 0;
    for (let r = 0; r < n; r++) {
      const a = pairs[3 * r], b = pairs[3 * r + 1];
      let i = this.hash(a, b);
      while (slots[4 * i] >= 0 && !(slots[4 * i] === a && slots[4 * i + 1] === b)) i = (i + 1) & this.mask;
      if (slots[4 * i] >= 0) continue;
      slots[4 * i] = a;
      slots[4 * i + 1] = b;
      slots[4 * i + 2] = r;
      slots[4 * i + 3] = pairs[3 * r + 2];
      size++;
    }
    this.size = size;
  }

  private hash(a: number, b: number): number {
    const h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x632be5ab, 0x85ebca77);
    return (h ^ (h >>> 15)) & this.mask;
  }

  /** The slot of pair (a, b), or -1 if the pair does not merge. */
  find(a: number, b: number): number {
    const slots = this.slots;
    let i = this.hash(a, b);
    for (;;) {
      const l = slots[4 * i];
      if (l < 0) return -1;
      if (l === a && slots[4 * i + 1] === b) return i;
      i = (i + 1) & this.mask;
    }
  }

  /** The rank of pair (a, b), or NO_MERGE. */
  rankOf(a: number, b: number): number {
    const i = this.find(a, b);
    return i < 0 ? NO_MERGE : this.slots[4 * i + 2];
  }

  rankAt(slot: number): number { return this.slots[4 * slot + 2]; }
  mergedAt(slot: number): number { return this.slots[4 * slot + 3]; }
}

export const NO_MERGE = 0x7fffffff;

// Above this many symbols a word is merged with a heap (n log n); below, a scan for the lowest rank
// is faster. Both give the same result (tested).
const HEAP_THRESHOLD = 96;

/**
 * Merges the symbols `ids[0..n)` in place and returns the new count. `ranks` is scratch of length
 * >= n.
 */
export function mergeWord(table: MergeTable, ids: Int32Array, n: number, ranks: Int32Array): number {
  return n > HEAP_THRESHOLD ? mergeWordHeap(table, ids, n) : mergeWordScan(table, ids, n, ranks);
}

/** Quadratic version for short words: ranks[i] is the rank of the pair (ids[i], ids[i+1]). */
export function mergeWordScan(table: MergeTable, ids: Int32Array, n: number, ranks: Int32Array): number {
  if (n < 2) return n;
  for (let i = 0; i < n - 1; i++) ranks[i] = table.rankOf(ids[i], ids[i + 1]);
  for (;;) {
    let best = 0;
    for (let i = 1; i < n - 1; i++) if (ranks[i] < ranks[best]) best = i;
    if (ranks[best] === NO_MERGE) return n;
    ids[best] = table.mergedAt(table.find(ids[best], ids[best + 1]));
    for (let i = best + 1; i < n - 1; i++) { ids[i] = ids[i + 1]; ranks[i] = ranks[i + 1]; }
    n--;
    if (n === 1) return n;
    // ranks[best] now pairs the merged symbol with its new right neighbour; ranks[best-1] too changed.
    if (best > 0) ranks[best - 1] = table.rankOf(ids[best - 1], ids[best]);
    if (best < n - 1) ranks[best] = table.rankOf(ids[best], ids[best + 1]);
  }
}

/**
 * Heap version for long words (CJK runs, long punctuation or whitespace runs): a doubly linked
 * list of symbols and a binary heap of candidate pairs keyed by rank * 2^24 + left position; stale
 * entries are skipped when popped (a pair is current if its rank still matches).
 */
export function mergeWordHeap(table: MergeTable, ids: Int32Array, n: number): number {
  if (n < 2) return n;
  if (n >= 1 << 24) throw new RangeError("word too long to merge");
  const next = new Int32Array(n), prev = new Int32Array(n);
  for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }
  const alive = new Uint8Array(n).fill(1);
  let heap = new Float64Array(Math.max(16, n));
  let heapSize = 0;
  const push = (key: number) => {
    if (heapSize === heap.length) { const grown = new Float64Array(heap.length * 2); grown.set(heap); heap = grown; }
    let i = heapSize++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent] <= key) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = key;
  };
  const pop = (): number => {
    const top = heap[0];
    const last = heap[--heapSize];
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= heapSize) break;
      if (child + 1 < heapSize && heap[child + 1] < heap[child]) child++;
      if (heap[child] >= last) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
    return top;
  };
  const SHIFT = 1 << 24;
  const consider = (i: number) => {
    const j = next[i];
    if (j < 0) return;
    const rank = table.rankOf(ids[i], ids[j]);
    if (rank !== NO_MERGE) push(rank * SHIFT + i);
  };
  for (let i = 0; i < n - 1; i++) consider(i);
  while (heapSize > 0) {
    const key = pop();
    const rank = Math.floor(key / SHIFT);
    const i = key - rank * SHIFT;
    const j = next[i];
    if (!alive[i] || j < 0) continue;
    const slot = table.find(ids[i], ids[j]);
    if (slot < 0 || table.rankAt(slot) !== rank) continue;
    ids[i] = table.mergedAt(slot);
    alive[j] = 0;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    if (prev[i] >= 0) consider(prev[i]);
    consider(i);
  }
  let count = 0;
  for (let i = 0; i >= 0; i = next[i]) ids[count++] = ids[i];
  return count;
}
