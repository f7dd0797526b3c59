// The scalar TypeScript columns of the weight-type table (weights/gguf/types.ts WEIGHT_TYPES, which
// holds the block layout and the activation format): how to dequantize a row, how to quantize one (the
// types qwasm writes), and the scalar dot product (the reference the wasm kernels are tested against).
// They sit here, not in that table, so that the library's bundles, which read the table, do not carry
// the scalar code; CODECS is a Record over the table's names, so a new row fails tsc until it has them.

import { QwasmError } from "../../platform/errors";
import {
  type ActivationFormat, GGMLType, type GGMLTypeId, WEIGHT_TYPE_INFOS, type WeightTypeName, typeName,
} from "../gguf/types";
import { quantizeActivations } from "./activations";
import {
  dequantize_bf16, dequantize_f16, dequantize_f32, quantize_bf16, quantize_f16, quantize_f32,
  vecDot_bf16_bf16, vecDot_f16_f16, vecDot_f32_f32,
} from "./float";
import { dequantize_iq4_nl, quantize_iq4_nl, vecDot_iq4_nl_q8_0 } from "./iq4_nl";
import { dequantize_q2_K, quantize_q2_K, vecDot_q2_K_q8_K } from "./q2_k";
import { dequantize_q3_K, quantize_q3_K, vecDot_q3_K_q8_K } from "./q3_k";
import { dequantize_q4_0, quantize_q4_0, vecDot_q4_0_q8_0 } from "./q4_0";
import { dequantize_q4_1, quantize_q4_1, vecDot_q4_1_q8_1 } from "./q4_1";
import { dequantize_q4_K, quantize_q4_K, vecDot_q4_K_q8_K } from "./q4_k";
import { dequantize_q5_0, quantize_q5_0, vecDot_q5_0_q8_0 } from "./q5_0";
import { dequantize_q5_1, quantize_q5_1, vecDot_q5_1_q8_1 } from "./q5_1";
import { dequantize_q5_K, quantize_q5_K, vecDot_q5_K_q8_K } from "./q5_k";
import { dequantize_q6_K, quantize_q6_K, vecDot_q6_K_q8_K } from "./q6_k";
import { dequantize_q8_0, quantize_q8_0, vecDot_q8_0_q8_0 } from "./q8_0";

export type { ActivationFormat } from "../gguf/types";
export { activationRowBytes } from "../gguf/types";
export {
  quantizeActivations, quantizeQ8_0Activations, quantizeQ8_1Activations,
  quantizeQ8_KActivations, Q8_0_BYTES, Q8_1_BYTES, Q8_K_BYTES, QK_K,
} from "./activations";
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./half";
export { KVALUES_IQ4NL } from "./iq4_nl";

export interface QuantTraits {
  id: GGMLTypeId;
  name: WeightTypeName;
  /** Weights per block. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
  /** n weights (a whole number of blocks) from the start of `bytes` to f32. */
  dequantize(bytes: Uint8Array, n: number): Float32Array;
  /** f32 → this type, byte-identical to llama-quantize without an imatrix; absent where qwasm does not write the type. */
  quantize?(src: Float32Array): Uint8Array;
  /** What the activation row is converted to before a dot product with a row of this type. */
  vecDotFormat: ActivationFormat;
  /** dot(weight row, activation row in vecDotFormat) over n values, as ggml's scalar (generic) kernel. */
  vecDot(weightRow: Uint8Array, activations: Uint8Array, n: number): number;
}

type Codec = Pick<QuantTraits, "dequantize" | "quantize" | "vecDot">;

const CODECS: Record<WeightTypeName, Codec> = {
  F32: { dequantize: dequantize_f32, quantize: quantize_f32, vecDot: vecDot_f32_f32 },
  F16: { dequantize: dequantize_f16, quantize: quantize_f16, vecDot: vecDot_f16_f16 },
  BF16: { dequantize: dequantize_bf16, quantize: quantize_bf16, vecDot: vecDot_bf16_bf16 },
  Q4_0: { dequantize: dequantize_q4_0, quantize: quantize_q4_0, vecDot: vecDot_q4_0_q8_0 },
  Q4_1: { dequantize: dequantize_q4_1, quantize: quantize_q4_1, vecDot: vecDot_q4_1_q8_1 },
  Q5_0: { dequantize: dequantize_q5_0, quantize: quantize_q5_0, vecDot: vecDot_q5_0_q8_0 },
  Q5_1: { dequantize: dequantize_q5_1, quantize: quantize_q5_1, vecDot: vecDot_q5_1_q8_1 },
  Q8_0: { dequantize: dequantize_q8_0, quantize: quantize_q8_0, vecDot: vecDot_q8_0_q8_0 },
  Q2_K: { dequantize: dequantize_q2_K, quantize: quantize_q2_K, vecDot: vecDot_q2_K_q8_K },
  Q3_K: { dequantize: dequantize_q3_K, quantize: quantize_q3_K, vecDot: vecDot_q3_K_q8_K },
  Q4_K: { dequantize: dequantize_q4_K, quantize: quantize_q4_K, vecDot: vecDot_q4_K_q8_K },
  Q5_K: { dequantize: dequantize_q5_K, quantize: quantize_q5_K, vecDot: vecDot_q5_K_q8_K },
  Q6_K: { dequantize: dequantize_q6_K, quantize: quantize_q6_K, vecDot: vecDot_q6_K_q8_K },
  IQ4_NL: { dequantize: dequantize_iq4_nl, quantize: quantize_iq4_nl, vecDot: vecDot_iq4_nl_q8_0 },
};

/** Every weight type the scalar quantizers know, keyed by ggml type id. */
export const QUANT_TRAITS: ReadonlyMap<number, QuantTraits> = new Map(
  WEIGHT_TYPE_INFOS.map((t) => [t.id, {
    id: t.id, name: t.name, blockSize: t.blockSize, typeSize: t.typeSize, vecDotFormat: t.activation, ...CODECS[t.name],
  }]),
);

/** The types quantizeRow can write. */
export const QUANTIZABLE_TYPES: readonly WeightTypeName[] = [...QUANT_TRAITS.values()].filter((t) => t.quantize).map((t) => t.name);

/** The traits of `type` (an id or a name such as "Q4_K"); throws for a type with no scalar code. */
export function quantTraits(type: number | string): QuantTraits {
  const id = typeof type === "number" ? type : (GGMLType as Record<string, number>)[type.toUpperCase()];
  const traits = id === undefined ? undefined : QUANT_TRAITS.get(id);
  if (!traits) {
    const what = typeof type === "number" ? typeName(type) : `type "${type}"`;
    throw new QwasmError("GGUF_UNSUPPORTED",
      `${what} has no quantizer in qwasm; supported: ${[...QUANT_TRAITS.values()].map((t) => t.name).join(" ")}`);
  }
  return traits;
}

/** n weights of `type` (a whole number of blocks) → f32. */
export function dequantizeRow(type: number | string, bytes: Uint8Array, n: number): Float32Array {
  return quantTraits(type).dequantize(bytes, n);
}

/** f32 → `type`, byte-identical to llama-quantize without an imatrix (every type in QUANTIZABLE_TYPES). */
export function quantizeRow(type: number | string, src: Float32Array): Uint8Array {
  const traits = quantTraits(type);
  if (!traits.quantize) {
    throw new QwasmError("INVALID_ARGUMENT",
      `qwasm cannot write ${traits.name} (it reads it); types it writes: ${QUANTIZABLE_TYPES.join(" ")}`);
  }
  return traits.quantize(src);
}

/** Scalar dot product of a weight row with an activation row already in the type's vecDotFormat. */
export function vecDot(type: number | string, weightRow: Uint8Array, activations: Uint8Array, n: number): number {
  return quantTraits(type).vecDot(weightRow, activations, n);
}

/** dot(weight row, f32 activations) as llama.cpp computes it: activations converted, then vecDot. */
export function vecDotF32(type: number | string, weightRow: Uint8Array, x: Float32Array): number {
  const traits = quantTraits(type);
  return traits.vecDot(weightRow, quantizeActivations(traits.vecDotFormat, x), x.length);
}
