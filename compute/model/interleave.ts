// Matrices of the 32-weight types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) interleaved by four rows,
// the layout of the kernels' matmul_Tx4 (assembly/quants/b32x4.ts has the byte layout): the loader
// rearranges such a matrix in place after reading it, and the forward step then runs the x4 kernels
// on it. The logits are the same bits as with the file's layout; the one-token loops read one stream
// per group of four rows, and Q5's 5th bits from one plane (see DEVELOPERS.md, Kernel ABI). Q3_K,
// Q5_K, Q6_K and Q8_0 get packed layouts of their own instead (below; Q8_0's groups rows by four too, with
// the rows' quads side by side, and its one-token loop reads four groups a quarter of the range apart:
// four streams, which the hardware prefetcher follows better than one).
import { GGMLType, weightTypeInfo } from "../../weights/gguf/types";

/** Per type with an x4 layout: where the quants start in a block, and whether the 5th bits (a u32
 *  before the quants) become a bit plane. Block bytes and the min come from the type table. */
const X4: ReadonlyMap<number, { qsAt: number; plane: boolean }> = new Map([
  [GGMLType.Q4_0, { qsAt: 2, plane: false }],
  [GGMLType.Q4_1, { qsAt: 4, plane: false }],
  [GGMLType.Q5_0, { qsAt: 6, plane: true }],
  [GGMLType.Q5_1, { qsAt: 8, plane: true }],
  [GGMLType.IQ4_NL, { qsAt: 2, plane: false }],
]);

/** The x4 layout's parameters of ggml type `type` (undefined: it has none), as the kernels'
 *  interleave_x4 takes them: where the quants start in a block, whether the block has an m, whether
 *  the 5th bits become a bit plane. */
export function x4Layout(type: number): { qsAt: number; hasMin: boolean; plane: boolean } | undefined {
  const t = X4.get(type);
  return t && { ...t, hasMin: weightTypeInfo(type)!.f16Fields.length === 2 };
}

/** Whether a (rows, cols) matrix of ggml type `type` gets the x4 layout: a type that has one, whole
 *  groups of four rows, whole blocks of 32. */
export function interleavable(type: number, rows: number, cols: number): boolean {
  return X4.has(type) && rows > 0 && rows % 4 === 0 && cols > 0 && cols % 32 === 0;
}

/**
 * Rearranges the matrix at bytes[offset..] ((rows, cols) of `type`, rows contiguous, as in the file)
 * into the x4 layout, in place: per group of four rows, per column of blocks, the four d (and m),
 * the four rows' 5th bits as a bit plane (bit 2r + h of byte j: row r's weight 16h + j), the four
 * rows' qs. Throws on a matrix that interleavable() refuses.
 */
export function interleaveRows4(bytes: Uint8Array, offset: number, rows: number, cols: number, type: number): void {
  const t = x4Layout(type);
  if (!t || !interleavable(type, rows, cols)) throw new RangeError(`no x4 layout for type ${type} (${rows} x ${cols})`);
  const { qsAt, plane, hasMin } = t; // hasMin: d and m
  const blockBytes = weightTypeInfo(type)!.typeSize;
  const nb = cols / 32;
  const rowBytes = nb * blockBytes;
  const groupBytes = 4 * rowBytes;
  // u16 views: every field of both layouts is at an even offset (the group copy's and, where the
  // matrix starts at an even offset, memory's; else a copy of the result)
  const src = new Uint16Array(groupBytes / 2);
  const srcBytes = new Uint8Array(src.buffer);
  const direct = (bytes.byteOffset + offset) % 2 === 0;
  const out = direct ? undefined : new Uint16Array(groupBytes / 2);
  // in u16: the 5th bits and the quants within a block; the plane and row 0's quants within a
  // super-block; one row's quants; a block; a row
  const qhAt = (qsAt - 4) / 2, qsW = qsAt / 2, hbAt = (hasMin ? 16 : 8) / 2;
  const qsRow = (blockBytes - qsAt) / 2, first = hbAt + (plane ? 8 : 0);
  const bw = blockBytes / 2, rw = rowBytes / 2;
  for (let g = 0; g < rows / 4; g++) {
    const at = offset + g * groupBytes;
    srcBytes.set(bytes.subarray(at, at + groupBytes));
    const dst = out ?? new Uint16Array(bytes.buffer, bytes.byteOffset + at, groupBytes / 2);
    for (let b = 0, o = 0, i = 0; b < nb; b++, o += 4 * bw, i += bw) { // o: super-block in dst, i: block b of row 0 in src
      let w0 = 0, w1 = 0, w2 = 0, w3 = 0; // the plane, bytes 0-3, 4-7, 8-11, 12-15
      for (let r = 0, p = i, q = o + first; r < 4; r++, p += rw, q += qsRow) {
        dst[o + r] = src[p];
        if (hasMin) dst[o + 4 + r] = src[p + 1];
        if (plane) {
          const lo = src[p + qhAt], hi = src[p + qhAt + 1];
          // bit i of a nibble n to bit 8i: (n * 0x204081) & 0x01010101, then to bit 2r + h of the byte
          const s = 2 * r;
          w0 |= (((lo & 15) * 0x204081) & 0x01010101) << s | (((hi & 15) * 0x204081) & 0x01010101) << (s + 1);
          w1 |= (((lo >> 4 & 15) * 0x204081) & 0x01010101) << s | (((hi >> 4 & 15) * 0x204081) & 0x01010101) << (s + 1);
          w2 |= (((lo >> 8 & 15) * 0x204081) & 0x01010101) << s | (((hi >> 8 & 15) * 0x204081) & 0x01010101) << (s + 1);
          w3 |= (((lo >> 12) * 0x204081) & 0x01010101) << s | (((hi >> 12) * 0x204081) & 0x01010101) << (s + 1);
        }
        const qs = p + qsW;
        for (let k = 0; k < qsRow; k += 8) {
          dst[q + k] = src[qs + k]; dst[q + k + 1] = src[qs + k + 1]; dst[q + k + 2] = src[qs + k + 2]; dst[q + k + 3] = src[qs + k + 3];
          dst[q + k + 4] = src[qs + k + 4]; dst[q + k + 5] = src[qs + k + 5]; dst[q + k + 6] = src[qs + k + 6]; dst[q + k + 7] = src[qs + k + 7];
        }
      }
      if (plane) {
        const h = o + hbAt;
        dst[h] = w0; dst[h + 1] = w0 >>> 16; dst[h + 2] = w1; dst[h + 3] = w1 >>> 16;
        dst[h + 4] = w2; dst[h + 5] = w2 >>> 16; dst[h + 6] = w3; dst[h + 7] = w3 >>> 16;
      }
    }
    if (out) bytes.set(new Uint8Array(out.buffer), at);
  }
}

// ---- Q3_K: the packed layout (assembly/quants/q3_k.ts, matmul_q3_kp) ----
// Not a row interleave: each block keeps its place and size, its scales and d; its hmask (32 bytes)
// and qs (64) become two sets of three 16-byte vectors from which the kernels take a sub-block's
// biased 3-bit weights with one or two instructions and an and.

const Q3K_BLOCK = 110;

/** Whether a (rows, cols) matrix of ggml type `type` gets the packed layout: Q3_K, Q5_K or Q6_K,
 *  whole blocks; Q8_0, whole blocks and whole groups of four rows. */
export function packable(type: number, rows: number, cols: number): boolean {
  if (type === GGMLType.Q8_0) return rows > 0 && rows % 4 === 0 && cols > 0 && cols % 32 === 0;
  return (type === GGMLType.Q3_K || type === GGMLType.Q5_K || type === GGMLType.Q6_K) && rows > 0 && cols > 0 && cols % 256 === 0;
}

/** Rewrites a matrix that packable() accepts in its type's packed layout, in place. */
export function packBlocks(bytes: Uint8Array, offset: number, rows: number, cols: number, type: number): void {
  if (type === GGMLType.Q8_0) packQ8_0(bytes, offset, rows, cols);
  else if (type === GGMLType.Q5_K) packQ5K(bytes, offset, rows, cols);
  else if (type === GGMLType.Q6_K) packQ6K(bytes, offset, rows, cols);
  else packQ3K(bytes, offset, rows, cols);
}

// ---- Q8_0: rows grouped by four, quads interleaved (assembly/quants/q8_0p.ts, matmul_q8_0p) ----
// Per group of four rows, per column of blocks, one 136-byte super-block: the four d, then for each
// quad j (weights 4j..4j+3) the four rows' quads. Every field sits at an even offset of a block
// (34 bytes): the rewrite moves u16 words (typed arrays: a DataView per quad ran at half the speed).

const Q8_0_BLOCK = 34;

/** Rewrites the Q8_0 matrix at bytes[offset..] ((rows, cols), as in the file) in the packed layout,
 *  in place, a group of four rows at a time. Throws on a matrix that packable() refuses. */
export function packQ8_0(bytes: Uint8Array, offset: number, rows: number, cols: number): void {
  if (!packable(GGMLType.Q8_0, rows, cols)) throw new RangeError(`no packed layout for Q8_0 ${rows} x ${cols}`);
  const nb = cols / 32;
  const rowBytes = nb * Q8_0_BLOCK, groupBytes = 4 * rowBytes;
  const src = new Uint16Array(groupBytes / 2);
  const srcBytes = new Uint8Array(src.buffer);
  const direct = (bytes.byteOffset + offset) % 2 === 0; // else through a copy of the group
  const out = direct ? undefined : new Uint16Array(groupBytes / 2);
  const rw = rowBytes / 2; // in u16
  for (let at = offset, end = offset + (rows / 4) * groupBytes; at < end; at += groupBytes) {
    srcBytes.set(bytes.subarray(at, at + groupBytes));
    const dst = out ?? new Uint16Array(bytes.buffer, bytes.byteOffset + at, groupBytes / 2);
    for (let b = 0, o = 0; b < nb; b++, o += 68) { // o: super-block b in u16
      for (let r = 0, p = 17 * b; r < 4; r++, p += rw) { // p: row r's block b in u16
        dst[o + r] = src[p];
        for (let j = 0, q = o + 4 + 2 * r; j < 8; j++, q += 8) {
          dst[q] = src[p + 1 + 2 * j];
          dst[q + 1] = src[p + 2 + 2 * j];
        }
      }
    }
    if (out) bytes.set(new Uint8Array(out.buffer), at);
  }
}

/** Rewrites every block of the Q3_K matrix at bytes[offset..] ((rows, cols), as in the file) in the
 *  packed layout, in place. Throws on a matrix that packable() refuses. Four bytes at a time in u32
 *  words: every value stays inside its byte (u < 8; the shifts move bits within a byte). */
export function packQ3K(bytes: Uint8Array, offset: number, rows: number, cols: number): void {
  if (!packable(GGMLType.Q3_K, rows, cols)) throw new RangeError(`no packed layout for Q3_K ${rows} x ${cols}`);
  const blocks = rows * (cols / 256);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u = new Uint32Array(64); // the biased weights of one block: word 4j + w holds weights 16j + 4w .. + 3
  const M1 = 0x01010101, M3 = 0x03030303;
  for (let b = 0, at = offset; b < blocks; b++, at += Q3K_BLOCK) {
    for (let j = 0; j < 16; j++) {
      const p = j >> 1, half = (j & 1) << 4, shift = (p & 3) << 1;
      const qs = at + 32 + ((p >> 2) << 5) + half, hm = at + half;
      for (let w = 0; w < 4; w++) {
        u[4 * j + w] = ((view.getUint32(qs + 4 * w, true) >>> shift) & M3) | (((view.getUint32(hm + 4 * w, true) >>> p) & M1) << 2);
      }
    }
    for (let s = 0; s < 2; s++) {
      const set = at + 48 * s, g = 32 * s;
      for (let w = 0; w < 4; w++) {
        const u6 = u[g + 24 + w], u7 = u[g + 28 + w];
        view.setUint32(set + 4 * w, u[g + w] | (u[g + 4 + w] << 3) | ((u6 & M3) << 6), true);
        view.setUint32(set + 16 + 4 * w, (u[g + 8 + w] | (u[g + 12 + w] << 3) | (((u6 >>> 2) & M1) << 6) | ((u7 & M1) << 7)) >>> 0, true);
        view.setUint32(set + 32 + 4 * w, u[g + 16 + w] | (u[g + 20 + w] << 3) | (((u7 >>> 1) & M3) << 6), true);
      }
    }
  }
}

// ---- Q5_K: the packed layout (assembly/quants/q5_k.ts, matmul_q5_kp) ----
// Each block keeps its place, size, d, dmin and scales; byte l of chunk c's qs holds the low
// sub-block's 5-bit weight l and the low three bits of the high sub-block's, qh the high sub-block's
// top two bits (bits 2c and 2c + 1 of byte l).

const Q5K_BLOCK = 176;

/** Rewrites every block of the Q5_K matrix at bytes[offset..] ((rows, cols), as in the file) in the
 *  packed layout, in place, four bytes at a time. Throws on a matrix that packable() refuses. */
export function packQ5K(bytes: Uint8Array, offset: number, rows: number, cols: number): void {
  if (!packable(GGMLType.Q5_K, rows, cols)) throw new RangeError(`no packed layout for Q5_K ${rows} x ${cols}`);
  const blocks = rows * (cols / 256);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const M1 = 0x01010101, M3 = 0x03030303, M7 = 0x07070707, MF = 0x0f0f0f0f;
  for (let b = 0, at = offset; b < blocks; b++, at += Q5K_BLOCK) {
    for (let w = 0; w < 8; w++) { // qh word w: bytes 4w..4w+3, whose weights are l = 4w..4w+3 of every chunk
      const h = view.getUint32(at + 16 + 4 * w, true);
      let top = 0; // the new qh word
      for (let c = 0, q0 = at + 48 + 4 * w; c < 4; c++, q0 += 32) {
        const q = view.getUint32(q0, true);
        const lo = (q & MF) | (((h >>> (2 * c)) & M1) << 4);
        const hi = ((q >>> 4) & MF) | (((h >>> (2 * c + 1)) & M1) << 4);
        view.setUint32(q0, (lo | ((hi & M7) << 5)) >>> 0, true);
        top |= ((hi >>> 3) & M3) << (2 * c);
      }
      view.setUint32(at + 16 + 4 * w, top >>> 0, true);
    }
  }
}

// ---- Q6_K: the packed layout (assembly/quants/q6_k.ts, matmul_q6_kp) ----
// Each block keeps its place, size, scales and d; its ql and qh (bytes 0-191) become twelve 16-byte
// vectors: byte l of vector j holds weight l of sub-block j (j < 12) in bits 0-5 and, in bits 6-7, two
// bits of weight l of sub-block 12 + j / 3 (bits 2 (j % 3) and 2 (j % 3) + 1).

const Q6K_BLOCK = 210;

/** Rewrites every block of the Q6_K matrix at bytes[offset..] ((rows, cols), as in the file) in the
 *  packed layout, in place, four bytes at a time (every value stays inside its byte). Throws on a
 *  matrix that packable() refuses. */
export function packQ6K(bytes: Uint8Array, offset: number, rows: number, cols: number): void {
  if (!packable(GGMLType.Q6_K, rows, cols)) throw new RangeError(`no packed layout for Q6_K ${rows} x ${cols}`);
  const blocks = rows * (cols / 256);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u = new Uint32Array(64); // the 6-bit weights of one block: word 4j + w holds weights 16j + 4w .. + 3
  const M3 = 0x03030303, MF = 0x0f0f0f0f;
  for (let b = 0, at = offset; b < blocks; b++, at += Q6K_BLOCK) {
    for (let h = 0; h < 2; h++) {
      for (let w = 0; w < 8; w++) { // bytes l = 4w..4w+3 of the half: weights l, l + 32, l + 64, l + 96
        const a = view.getUint32(at + 64 * h + 4 * w, true), c = view.getUint32(at + 64 * h + 32 + 4 * w, true);
        const q = view.getUint32(at + 128 + 32 * h + 4 * w, true);
        const j = 8 * h + (w >> 2), i = 4 * j + (w & 3); // sub-block of weight l, its word
        u[i] = (a & MF) | ((q & M3) << 4);
        u[i + 8] = (c & MF) | (((q >>> 2) & M3) << 4);
        u[i + 16] = ((a >>> 4) & MF) | (((q >>> 4) & M3) << 4);
        u[i + 24] = ((c >>> 4) & MF) | (((q >>> 6) & M3) << 4);
      }
    }
    for (let j = 0; j < 12; j++) {
      const m = 4 * (12 + ((j / 3) | 0)), shift = 2 * (j % 3);
      for (let w = 0; w < 4; w++) {
        view.setUint32(at + 16 * j + 4 * w, (u[4 * j + w] | (((u[m + w] >>> shift) & M3) << 6)) >>> 0, true);
      }
    }
  }
}
