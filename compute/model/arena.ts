// One shared WebAssembly.Memory, laid out by a bump allocator: weights, KV cache, activations and
// scratch are carved out once, outside the hot path. Offsets are plain byte addresses that the
// kernels take as arguments.

import { QwasmError } from "../../platform/errors";

const PAGE = 65536;
/** Offset 0 stays unused so that a zero pointer is never a valid buffer. */
const FIRST_OFFSET = PAGE;

/** What lays a memory out: hands out aligned byte ranges, and says how far it has come. */
export interface Allocator {
  alloc(bytes: number, align?: number): number;
  readonly used: number;
}

/** The first byte an arena hands out, checked: a whole 64 KiB page from the second, below 4 GiB. */
function checkStart(start: number): number {
  if (!Number.isInteger(start) || start < FIRST_OFFSET || start % PAGE !== 0 || start >= 4 * 1024 * 1024 * 1024) {
    throw new QwasmError("INVALID_ARGUMENT", `an arena starts at a multiple of ${PAGE} bytes from ${FIRST_OFFSET} below 4 GiB, got ${start}`);
  }
  return start;
}

/**
 * Sizes a layout without a memory: the same offsets as an Arena for the same calls, so a layout
 * planned on it first tells exactly how many bytes the real one will take.
 */
export class ArenaSizer implements Allocator {
  private top: number;

  /** `start`: the first byte handed out (default 64 KiB; see Arena). */
  constructor(start = FIRST_OFFSET) {
    this.top = checkStart(start);
  }

  alloc(bytes: number, align = 64): number {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) throw new RangeError(`arena: bad size ${bytes}`);
    const offset = Math.ceil(this.top / align) * align;
    this.top = offset + bytes;
    return offset;
  }

  get used(): number {
    return this.top;
  }
}

export class Arena implements Allocator {
  readonly memory: WebAssembly.Memory;
  private top: number;

  /** `start`: the first byte handed out, default 64 KiB (offset 0 is never valid). Tests start past
   *  2 GiB to check that no offset is ever read as a signed 32-bit integer (`x >> 2`, `x | 0`). */
  constructor(memory: WebAssembly.Memory, start = FIRST_OFFSET) {
    this.memory = memory;
    this.top = checkStart(start);
  }

  /** Reserves `bytes` bytes aligned to `align` (default 64, a cache line) and returns the offset. */
  alloc(bytes: number, align = 64): number {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) throw new RangeError(`arena: bad size ${bytes}`);
    const offset = Math.ceil(this.top / align) * align;
    const end = offset + bytes;
    if (end > 4 * 1024 * 1024 * 1024) {
      throw new QwasmError("OUT_OF_MEMORY", `the memory layout needs ${end} bytes, more than the 4 GiB of one WebAssembly memory`);
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return offset;
  }

  /** Bytes reserved so far, including the unused first page. */
  get used(): number {
    return this.top;
  }

  // Views are made on demand: memory.buffer changes identity whenever the memory grows.
  u8(offset: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, offset, length);
  }
  f32(offset: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, length);
  }
  i32(offset: number, length: number): Int32Array {
    return new Int32Array(this.memory.buffer, offset, length);
  }
}
