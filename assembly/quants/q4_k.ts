// Q4_K: 256 weights in 144 bytes (ggml block_q4_K), dotted with Q8_K activations.
//   f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
// 8 sub-blocks of 32: w = d*sc[j]*q - dmin*m[j], q in [0, 15], sc and m 6-bit, packed in scales[12]
// (get_scale_min_k4). Chunk c of qs (32 bytes) holds sub-block 2c in its low nibbles and 2c+1 in
// its high nibbles. The min term uses the Q8_K block sums: sum(q8 * m) = m * bsum.
import { f16_to_f32 } from "./common";
import { QK_K, Q8K, scales03, scales47, mins03, mins47, byteOf, matmul_k_ref, matmul_k_tiles } from "./kquants";

@inline const BLOCK: usize = 144;



/** Low / high nibbles of 16 bytes, as i8 weights. */
@inline function lowNibbles(v: v128): v128 { return v128.and(v, i8x16.splat(0x0f)); }
@inline function highNibbles(v: v128): v128 { return v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0f)); }

/** n weights from src to f32 at dst (dequantize_row_q4_K). */
export function dequantize_q4_k(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const wb = src + <usize>b * BLOCK;
    const y = dst + <usize>b * 1024;
    const d = f16_to_f32(load<u16>(wb));
    const dmin = f16_to_f32(load<u16>(wb, 2));
    const a0 = load<u32>(wb, 4), a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const s03 = scales03(a0), s47 = scales47(a0, a2), m03 = mins03(a1), m47 = mins47(a1, a2);
    for (let c = 0; c < 4; c++) {
      const d1 = d * <f32>byteOf(s03, s47, 2 * c), m1 = dmin * <f32>byteOf(m03, m47, 2 * c);
      const d2 = d * <f32>byteOf(s03, s47, 2 * c + 1), m2 = dmin * <f32>byteOf(m03, m47, 2 * c + 1);
      const q = wb + 16 + (<usize>c << 5);
      const yc = y + (<usize>c << 8);
      for (let l = 0; l < 32; l++) {
        const v = <u32>load<u8>(q + <usize>l);
        store<f32>(yc + (<usize>l << 2), d1 * <f32>(v & 0xf) - m1);
        store<f32>(yc + 128 + (<usize>l << 2), d2 * <f32>(v >> 4) - m2);
      }
    }
  }
}

/** Scalar reference (ggml's ggml_vec_dot_q4_K_q8_K_generic): exact integer sums per block, then
 * the block's d and dmin applied in f32. */
function dotRef(wr: usize, xr: usize, nb: i32): f32 {
  let sumf: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = xr + <usize>b * Q8K;
    const a0 = load<u32>(wb, 4), a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const s03 = scales03(a0), s47 = scales47(a0, a2), m03 = mins03(a1), m47 = mins47(a1, a2);
    let sumi = 0;
    for (let j = 0; j < 16; j++) sumi += <i32>load<i16>(xb + 260 + (<usize>j << 1)) * byteOf(m03, m47, j >> 1);
    let isum = 0;
    for (let j = 0; j < 8; j++) {
      const q = wb + 16 + (<usize>(j >> 1) << 5);
      const shift = <u32>(j & 1) << 2;
      let s = 0;
      for (let l = 0; l < 32; l++) {
        const w = <i32>((<u32>load<u8>(q + <usize>l) >> shift) & 0xf);
        s += w * <i32>load<i8>(xb + 4 + <usize>(32 * j + l));
      }
      isum += byteOf(s03, s47, j) * s;
    }
    const dx = load<f32>(xb);
    const d = f16_to_f32(load<u16>(wb)) * dx;
    const dmin = f16_to_f32(load<u16>(wb, 2)) * dx;
    sumf += d * <f32>isum;
    sumf -= dmin * <f32>sumi;
  }
  return sumf;
}

export function matmul_q4_k_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_ref<Q4K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}


/** out[t][r] = dot(row r of W, x_t) for r in [rowStart, rowEnd), t in [0, nTok); see DEVELOPERS.md. */
export function matmul_q4_k(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_tiles<Q4K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** Q4_K's row kernels and weight decoding, for the shared loops in kquants.ts. */
@final class Q4K {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRef(wr, xr, nb); }
  @inline qs(): usize { return 16; }
  @inline lo(v: v128, wb: usize, half: usize, c: i32): v128 { return lowNibbles(v); }
  @inline hi(v: v128, wb: usize, half: usize, c: i32): v128 { return highNibbles(v); }
  @inline lo1(v: v128, wb: usize, half: usize, c: i32): v128 { return lowNibbles(v); }
  @inline hi1(v: v128, wb: usize, half: usize, c: i32): v128 { return highNibbles(v); }
}
