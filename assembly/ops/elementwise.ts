// Elementwise f32 ops of the forward pass: residual add, bias add, SwiGLU, scale (copy, softmax and exp,
// which only tests call, are in assembly/test/ops.ts).
// Every pointer is a byte offset into the shared memory and needs no alignment; n counts floats.
// Each SIMD body has its scalar tail beside it, and both compute the same thing in the same order.
import { siluf, siluf4 } from "./math";

/** out = a + b (out may alias a or b): the residual add. */
export function add(a: usize, b: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/** x[r] += bias for each of nRows contiguous rows of n floats: the q/k/v biases of Qwen2. */
export function add_bias(x: usize, bias: usize, nRows: i32, n: i32): void {
  for (let r = 0; r < nRows; r++) add(x + (<usize>r * <usize>n << 2), bias, x + (<usize>r * <usize>n << 2), n);
}

/** out = silu(gate) * up with silu(x) = x / (1 + exp(-x)), as ggml_vec_swiglu_f32. */
export function swiglu(gate: usize, up: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.mul(siluf4(v128.load(gate + o)), v128.load(up + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, siluf(load<f32>(gate + o)) * load<f32>(up + o));
  }
}

/** x *= s, in place. */
export function scale(x: usize, s: f32, n: i32): void {
  const vs = f32x4.splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(x + o, f32x4.mul(v128.load(x + o), vs));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, load<f32>(x + o) * s);
  }
}
