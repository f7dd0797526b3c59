// A measuring stick, not a kernel: the most multiply-adds one thread can issue in SIMD128.
// Every integer matmul here is built from i32x4.dot_i16x8_s (eight i16 products summed in pairs)
// and an i32x4.add into an accumulator; SIMD128 has no 8-bit dot product. dot_peak runs n rounds
// of eight independent such pairs, with nothing else to wait for: 64 multiply-adds a round.
// `qwasm bench --batch` times it to state the compute ceiling of a batched decode step.

/** n rounds of 8 independent dot + add pairs; returns a lane so that the work is not removed. */
export function dot_peak(n: i32): i32 {
  let a0 = i32x4.splat(1), a1 = i32x4.splat(2), a2 = i32x4.splat(3), a3 = i32x4.splat(4);
  let a4 = i32x4.splat(5), a5 = i32x4.splat(6), a6 = i32x4.splat(7), a7 = i32x4.splat(8);
  let w = i16x8.splat(3);
  const v = i16x8.splat(5);
  for (let i = 0; i < n; i++) {
    a0 = i32x4.add(a0, i32x4.dot_i16x8_s(v, w));
    a1 = i32x4.add(a1, i32x4.dot_i16x8_s(w, v));
    a2 = i32x4.add(a2, i32x4.dot_i16x8_s(v, v));
    a3 = i32x4.add(a3, i32x4.dot_i16x8_s(w, w));
    a4 = i32x4.add(a4, i32x4.dot_i16x8_s(v, w));
    a5 = i32x4.add(a5, i32x4.dot_i16x8_s(w, v));
    a6 = i32x4.add(a6, i32x4.dot_i16x8_s(v, v));
    a7 = i32x4.add(a7, i32x4.dot_i16x8_s(w, w));
    w = i16x8.add(w, v);
  }
  const s = i32x4.add(i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3)), i32x4.add(i32x4.add(a4, a5), i32x4.add(a6, a7)));
  return i32x4.extract_lane(s, 0);
}
