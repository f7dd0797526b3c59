// The one place in TypeScript that maps a weight type to its kernels: which matmul and dequantize
// exports serve it, and the format its activations are converted to before the dot product (the
// weight type's vec_dot_type in ggml).
import { GGMLType, typeInfo, typeName } from "../../weights/gguf/types";
import { QwasmError } from "../../platform/errors";
import type { Kernels } from "./module";

export type ActivationFormat = "f32" | "f16" | "bf16" | "q8_0" | "q8_1" | "q8_K";

interface ActivationTraits {
  blockSize: number;
  blockBytes: number;
  /** The export that converts f32 activations to this format: (src, dst, n); none for f32. */
  convert?: string;
}

export const ACTIVATION_FORMATS: Record<ActivationFormat, ActivationTraits> = {
  f32: { blockSize: 1, blockBytes: 4 },
  f16: { blockSize: 1, blockBytes: 2, convert: "convert_f32_f16" },
  bf16: { blockSize: 1, blockBytes: 2, convert: "convert_f32_bf16" },
  q8_0: { blockSize: 32, blockBytes: 34, convert: "quantize_q8_0" },
  q8_1: { blockSize: 32, blockBytes: 36, convert: "quantize_q8_1" },
  q8_K: { blockSize: 256, blockBytes: 292, convert: "quantize_q8_K" },
};

/** Bytes of one row of `n` activations in `format`. */
export function activationRowBytes(format: ActivationFormat, n: number): number {
  const f = ACTIVATION_FORMATS[format];
  return Math.ceil(n / f.blockSize) * f.blockBytes;
}

export interface WeightKernels {
  format: ActivationFormat;
  blockSize: number;
  typeSize: number;
  /** (w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride) */
  matmul: (...args: number[]) => number;
  /** (src, dst, n) */
  dequantize: (...args: number[]) => number;
}

const KERNEL_TYPES: Record<number, { suffix: string; format: ActivationFormat }> = {
  [GGMLType.F32]: { suffix: "f32", format: "f32" },
  [GGMLType.F16]: { suffix: "f16", format: "f16" },
  [GGMLType.BF16]: { suffix: "bf16", format: "bf16" },
  [GGMLType.Q4_0]: { suffix: "q4_0", format: "q8_0" },
  [GGMLType.Q4_1]: { suffix: "q4_1", format: "q8_1" },
  [GGMLType.Q5_0]: { suffix: "q5_0", format: "q8_0" },
  [GGMLType.Q5_1]: { suffix: "q5_1", format: "q8_1" },
  [GGMLType.Q8_0]: { suffix: "q8_0", format: "q8_0" },
  [GGMLType.IQ4_NL]: { suffix: "iq4_nl", format: "q8_0" },
  [GGMLType.Q2_K]: { suffix: "q2_k", format: "q8_K" },
  [GGMLType.Q3_K]: { suffix: "q3_k", format: "q8_K" },
  [GGMLType.Q4_K]: { suffix: "q4_k", format: "q8_K" },
  [GGMLType.Q5_K]: { suffix: "q5_k", format: "q8_K" },
  [GGMLType.Q6_K]: { suffix: "q6_k", format: "q8_K" },
};

/** The format a weight type's activations are converted to before the dot product. */
export function activationFormat(type: number): ActivationFormat {
  const entry = KERNEL_TYPES[type];
  if (!entry) throw new QwasmError("GGUF_UNSUPPORTED", `no kernels for weights of ${typeName(type)}`);
  return entry.format;
}

/** The kernels for weights of ggml type `type`; `reference` picks the scalar matmul. */
export function weightKernels(kernels: Kernels, type: number, reference = false): WeightKernels {
  const entry = KERNEL_TYPES[type];
  const info = typeInfo(type);
  if (!entry || !info) {
    throw new QwasmError("GGUF_UNSUPPORTED", `no kernels for weights of ${typeName(type)}`);
  }
  const matmul = kernels[`matmul_${entry.suffix}${reference ? "_ref" : ""}`];
  const dequantize = kernels[`dequantize_${entry.suffix}`];
  if (!matmul || !dequantize) {
    throw new QwasmError("GGUF_UNSUPPORTED", `the kernel module lacks matmul/dequantize for ${typeName(type)}`);
  }
  return { format: entry.format, blockSize: info.blockSize, typeSize: info.typeSize, matmul, dequantize };
}
