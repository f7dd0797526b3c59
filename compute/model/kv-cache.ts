// The paged KV cache's bookkeeping (the pages themselves live in the shared memory, one pool per
// layer): which pages are free, which are held by sequences, and which full pages hold a known token
// prefix so that a later sequence with the same prefix (a repeated system prompt, the earlier turns
// of a chat) reuses them instead of computing them again.
//
// A full page is identified by its parent page (the page before it in the sequence), the parent's
// generation, and its own tokens: the KV of a page depends only on the tokens before and in it, so
// equal keys mean equal KV. A page whose last holder finished stays cached (evictable, least
// recently used first) until its memory is needed; evicting it bumps its generation, which retires
// every key built on it.

export class PagedKVCache {
  readonly pageSize: number;
  readonly pageCount: number;
  private readonly refs: Int32Array;
  private readonly generation: Int32Array;
  private readonly free: number[] = [];
  /** Full pages with a known prefix: key → page, and page → key. */
  private readonly byKey = new Map<string, number>();
  private readonly keyOf = new Map<number, string>();
  /** Cached pages nobody holds, least recently used first (a Map keeps insertion order). */
  private readonly idle = new Map<number, true>();

  constructor(pageCount: number, pageSize: number) {
    this.pageSize = pageSize;
    this.pageCount = pageCount;
    this.refs = new Int32Array(pageCount);
    this.generation = new Int32Array(pageCount);
    for (let p = pageCount - 1; p >= 0; p--) this.free.push(p);
  }

  /** Pages that can be handed out now: free ones and idle cached ones. */
  get available(): number {
    return this.free.length + this.idle.size;
  }

  /** Pages held by at least one sequence. */
  get inUse(): number {
    return this.pageCount - this.available;
  }

  /** Idle pages kept for their prefix. */
  get cached(): number {
    return this.idle.size;
  }

  /** A fresh page for one holder; evicts the least recently used cached page when none is free. */
  allocate(): number {
    let page = this.free.pop();
    if (page === undefined) {
      const oldest = this.idle.keys().next();
      if (oldest.done) throw new Error("KV cache: no page available (the scheduler reserves pages first)");
      page = oldest.value;
      this.idle.delete(page);
      this.forget(page);
    }
    this.refs[page] = 1;
    return page;
  }

  /** Drops one holder of each page; pages nobody holds become free, or idle if they are cached. */
  release(pages: readonly number[]): void {
    for (const page of pages) {
      if (--this.refs[page] > 0) continue;
      if (this.refs[page] < 0) throw new Error(`KV cache: page ${page} released more often than held`);
      if (this.keyOf.has(page)) this.idle.set(page, true);
      else this.free.push(page);
    }
  }

  /**
   * The longest run of cached full pages that hold `tokens` from position 0, at most `maxPages`.
   * Each returned page gets one more holder (release it with the sequence's other pages).
   */
  acquirePrefix(tokens: ArrayLike<number>, maxPages: number): number[] {
    const pages: number[] = [];
    let parent = -1;
    for (let i = 0; i < maxPages; i++) {
      const page = this.byKey.get(this.key(parent, tokens, i));
      if (page === undefined) break;
      if (this.refs[page]++ === 0) this.idle.delete(page);
      pages.push(page);
      parent = page;
    }
    return pages;
  }

  /**
   * Records that `page`, the `index`-th page of a sequence whose page before it is `parent` (-1 for
   * the first), is full and holds tokens[index*pageSize ...]. If an equal page is already cached the
   * call changes nothing (the sequence keeps its own copy).
   */
  publish(page: number, parent: number, tokens: ArrayLike<number>, index: number): void {
    if (this.keyOf.has(page)) return;
    const key = this.key(parent, tokens, index);
    if (this.byKey.has(key)) return;
    this.byKey.set(key, page);
    this.keyOf.set(page, key);
  }

  private key(parent: number, tokens: ArrayLike<number>, index: number): string {
    const start = index * this.pageSize;
    let text = parent < 0 ? "root" : `${parent}.${this.generation[parent]}`;
    for (let i = start; i < start + this.pageSize; i++) text += "," + tokens[i];
    return text;
  }

  private forget(page: number): void {
    const key = this.keyOf.get(page);
    if (key !== undefined) {
      this.byKey.delete(key);
      this.keyOf.delete(page);
    }
    this.generation[page]++;
  }
}
