// Q5_0 and Q5_1 matrices interleaved by four rows, the layout of the kernels' matmul_q5_0x4 and
// matmul_q5_1x4 (assembly/quants/b32x4.ts has the byte layout): the loader rearranges such a matrix
// in place after reading it, and the forward step then runs the x4 kernels on it. The rows' values,
// and the logits, are the same bits as with the file's layout; the one-token loop of the 0.5B
// files' main type runs about twice the weights a cycle (see the commit that added it).
import { GGMLType } from "../../weights/gguf/types";

/** Block bytes and whether a min follows d, per type that has an x4 layout. */
const X4: ReadonlyMap<number, { blockBytes: number; hasMin: boolean }> = new Map([
  [GGMLType.Q5_0, { blockBytes: 22, hasMin: false }],
  [GGMLType.Q5_1, { blockBytes: 24, hasMin: true }],
]);

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
  const t = X4.get(type);
  if (!t || !interleavable(type, rows, cols)) throw new RangeError(`no x4 layout for type ${type} (${rows} x ${cols})`);
  const { blockBytes, hasMin } = t;
  const nb = cols / 32;
  const rowBytes = nb * blockBytes;
  const groupBytes = 4 * rowBytes;
  // u16 views: every field of both layouts is at an even offset (the group copy's and, where the
  // matrix starts at an even offset, memory's; else a copy of the result)
  const src = new Uint16Array(groupBytes / 2);
  const srcBytes = new Uint8Array(src.buffer);
  const direct = (bytes.byteOffset + offset) % 2 === 0;
  const out = direct ? undefined : new Uint16Array(groupBytes / 2);
  const qhAt = (hasMin ? 4 : 2) / 2, qsAt = (hasMin ? 8 : 6) / 2; // in u16, within a block
  const hbAt = (hasMin ? 16 : 8) / 2, bw = blockBytes / 2, rw = rowBytes / 2; // in u16
  for (let g = 0; g < rows / 4; g++) {
    const at = offset + g * groupBytes;
    srcBytes.set(bytes.subarray(at, at + groupBytes));
    const dst = out ?? new Uint16Array(bytes.buffer, bytes.byteOffset + at, groupBytes / 2);
    for (let b = 0, o = 0, i = 0; b < nb; b++, o += 4 * bw, i += bw) { // o: super-block in dst, i: block b of row 0 in src
      let w0 = 0, w1 = 0, w2 = 0, w3 = 0; // the plane, bytes 0-3, 4-7, 8-11, 12-15
      for (let r = 0, p = i, q = o + hbAt + 8; r < 4; r++, p += rw, q += 8) {
        dst[o + r] = src[p];
        if (hasMin) dst[o + 4 + r] = src[p + 1];
        const lo = src[p + qhAt], hi = src[p + qhAt + 1];
        // bit i of a nibble n to bit 8i: (n * 0x204081) & 0x01010101, then to bit 2r + h of the byte
        const s = 2 * r;
        w0 |= (((lo & 15) * 0x204081) & 0x01010101) << s | (((hi & 15) * 0x204081) & 0x01010101) << (s + 1);
        w1 |= (((lo >> 4 & 15) * 0x204081) & 0x01010101) << s | (((hi >> 4 & 15) * 0x204081) & 0x01010101) << (s + 1);
        w2 |= (((lo >> 8 & 15) * 0x204081) & 0x01010101) << s | (((hi >> 8 & 15) * 0x204081) & 0x01010101) << (s + 1);
        w3 |= (((lo >> 12) * 0x204081) & 0x01010101) << s | (((hi >> 12) * 0x204081) & 0x01010101) << (s + 1);
        const qs = p + qsAt;
        dst[q] = src[qs]; dst[q + 1] = src[qs + 1]; dst[q + 2] = src[qs + 2]; dst[q + 3] = src[qs + 3];
        dst[q + 4] = src[qs + 4]; dst[q + 5] = src[qs + 5]; dst[q + 6] = src[qs + 6]; dst[q + 7] = src[qs + 7];
      }
      const h = o + hbAt;
      dst[h] = w0; dst[h + 1] = w0 >>> 16; dst[h + 2] = w1; dst[h + 3] = w1 >>> 16;
      dst[h + 4] = w2; dst[h + 5] = w2 >>> 16; dst[h + 6] = w3; dst[h + 7] = w3 >>> 16;
    }
    if (out) bytes.set(new Uint8Array(out.buffer), at);
  }
}
