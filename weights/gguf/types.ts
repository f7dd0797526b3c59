// The ggml tensor type table: id, name, elements per block and bytes per block, as in ggml.c's
// type_traits. This is the one place that knows the block sizes; row and tensor sizes come from here.
// Below it, WEIGHT_TYPES: one row per weight type qwasm computes with (its activation format, as
// ggml-cpu's type_traits_cpu), which the quantizers (weights/quant) and the kernels' dispatch
// (compute/kernels) read.
import { QwasmError } from "../../platform/errors";

/** ggml type ids, as stored in a GGUF tensor info. */
export const GGMLType = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q8_1: 9,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  Q8_K: 15,
  IQ2_XXS: 16,
  IQ2_XS: 17,
  IQ3_XXS: 18,
  IQ1_S: 19,
  IQ4_NL: 20,
  IQ3_S: 21,
  IQ2_S: 22,
  IQ4_XS: 23,
  I8: 24,
  I16: 25,
  I32: 26,
  I64: 27,
  F64: 28,
  IQ1_M: 29,
  BF16: 30,
  TQ1_0: 34,
  TQ2_0: 35,
  MXFP4: 39,
  NVFP4: 40,
  Q1_0: 41,
} as const;

export type GGMLTypeName = keyof typeof GGMLType;
export type GGMLTypeId = (typeof GGMLType)[GGMLTypeName];

export interface GGMLTypeInfo {
  id: GGMLTypeId;
  name: GGMLTypeName;
  /** Elements per block (1 for plain scalar types). */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

// [name, blockSize, typeSize]; block sizes from ggml-common.h (QK4_0 = 32, QK_K = 256, ...).
const TRAITS: Record<GGMLTypeName, [number, number]> = {
  F32: [1, 4],
  F16: [1, 2],
  Q4_0: [32, 18],     // f16 d; u8 qs[16]
  Q4_1: [32, 20],     // f16 d, m; u8 qs[16]
  Q5_0: [32, 22],     // f16 d; u8 qh[4]; u8 qs[16]
  Q5_1: [32, 24],     // f16 d, m; u8 qh[4]; u8 qs[16]
  Q8_0: [32, 34],     // f16 d; i8 qs[32]
  Q8_1: [32, 36],     // f16 d, s; i8 qs[32]
  Q2_K: [256, 84],    // u8 scales[16]; u8 qs[64]; f16 d, dmin
  Q3_K: [256, 110],   // u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d
  Q4_K: [256, 144],   // f16 d, dmin; u8 scales[12]; u8 qs[128]
  Q5_K: [256, 176],   // f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
  Q6_K: [256, 210],   // u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
  Q8_K: [256, 292],   // f32 d; i8 qs[256]; i16 bsums[16]
  IQ2_XXS: [256, 66],
  IQ2_XS: [256, 74],
  IQ3_XXS: [256, 98],
  IQ1_S: [256, 50],
  IQ4_NL: [32, 18],   // f16 d; u8 qs[16]
  IQ3_S: [256, 110],
  IQ2_S: [256, 82],
  IQ4_XS: [256, 136],
  I8: [1, 1],
  I16: [1, 2],
  I32: [1, 4],
  I64: [1, 8],
  F64: [1, 8],
  IQ1_M: [256, 56],
  BF16: [1, 2],
  TQ1_0: [256, 54],
  TQ2_0: [256, 66],
  MXFP4: [32, 17],    // e8m0 e; u8 qs[16]
  NVFP4: [64, 36],    // u8 d[4] (e4m3); u8 qs[32]
  Q1_0: [128, 18],    // f16 d; u8 qs[16]
};

/** Ids that ggml once used and has since removed; GGUF files must not contain them. */
const REMOVED_TYPES: Record<number, string> = {
  4: "Q4_2",
  5: "Q4_3",
  31: "Q4_0_4_4",
  32: "Q4_0_4_8",
  33: "Q4_0_8_8",
  36: "IQ4_NL_4_4",
  37: "IQ4_NL_4_8",
  38: "IQ4_NL_8_8",
};

const TYPE_TABLE = new Map<number, GGMLTypeInfo>(
  (Object.keys(GGMLType) as GGMLTypeName[]).map((name) => {
    const [blockSize, typeSize] = TRAITS[name];
    return [GGMLType[name], { id: GGMLType[name], name, blockSize, typeSize }];
  }),
);

/**
 * What a format's dot product converts f32 activations to (ggml's vec_dot_type), itself a ggml type
 * ("q8_K" is Q8_K): the quantized blocks are byte-identical to ggml's (DEVELOPERS.md, Kernel ABI).
 */
export type ActivationFormat = "f32" | "f16" | "bf16" | "q8_0" | "q8_1" | "q8_K";

/** The compute facts of a weight type that qwasm has kernels for, beside ggml's block layout. */
export interface WeightTypeRow {
  /** The format its activations are converted to before a dot product (ggml's vec_dot_type). */
  activation: ActivationFormat;
  /** Byte offsets of the f16 fields of a block (scales d, dmin, m): where random test blocks need
   *  sane values (the relaxed-SIMD probe of compute/kernels/module.ts). */
  f16Fields: readonly number[];
}

/**
 * The weight types qwasm computes with, one row each, in the order messages list them: the one place
 * to add a type. Block size and bytes come from TRAITS above; the scalar dequantizer, quantizer and
 * vec-dot are the row's columns in weights/quant/index.ts (a Record over these names, so tsc asks for
 * them); the kernel exports (`matmul_${suffix}`, `dequantize_${suffix}`, suffix the lower-case name)
 * are derived in compute/kernels/dispatch.ts and checked by tsc against the kernels' generated
 * interface.
 */
export const WEIGHT_TYPES = {
  F32: { activation: "f32", f16Fields: [] },
  F16: { activation: "f16", f16Fields: [] },
  BF16: { activation: "bf16", f16Fields: [] },
  Q4_0: { activation: "q8_0", f16Fields: [0] },         // d
  Q4_1: { activation: "q8_1", f16Fields: [0, 2] },      // d, m
  Q5_0: { activation: "q8_0", f16Fields: [0] },         // d
  Q5_1: { activation: "q8_1", f16Fields: [0, 2] },      // d, m
  Q8_0: { activation: "q8_0", f16Fields: [0] },         // d
  Q2_K: { activation: "q8_K", f16Fields: [80, 82] },    // d, dmin
  Q3_K: { activation: "q8_K", f16Fields: [108] },       // d
  Q4_K: { activation: "q8_K", f16Fields: [0, 2] },      // d, dmin
  Q5_K: { activation: "q8_K", f16Fields: [0, 2] },      // d, dmin
  Q6_K: { activation: "q8_K", f16Fields: [208] },       // d
  IQ4_NL: { activation: "q8_0", f16Fields: [0] },       // d
} as const satisfies Partial<Record<GGMLTypeName, WeightTypeRow>>;

export type WeightTypeName = keyof typeof WEIGHT_TYPES;

/** A row of WEIGHT_TYPES with ggml's id, name and block layout. */
export interface WeightTypeInfo extends GGMLTypeInfo, WeightTypeRow {
  name: WeightTypeName;
}

const WEIGHT_TYPE_TABLE = new Map<number, WeightTypeInfo>(
  (Object.keys(WEIGHT_TYPES) as WeightTypeName[]).map((name) => {
    const info = TYPE_TABLE.get(GGMLType[name])!;
    return [info.id, { ...info, name, ...WEIGHT_TYPES[name] }];
  }),
);

/** Every weight type qwasm computes with, in WEIGHT_TYPES order. */
export const WEIGHT_TYPE_INFOS: readonly WeightTypeInfo[] = [...WEIGHT_TYPE_TABLE.values()];

/** The weight types qwasm has kernels for (see assembly/quants/). */
export const SUPPORTED_WEIGHT_TYPES: readonly GGMLTypeId[] = WEIGHT_TYPE_INFOS.map((t) => t.id);

/** The row of a weight type qwasm computes with, or undefined for any other id. */
export function weightTypeInfo(id: number): WeightTypeInfo | undefined {
  return WEIGHT_TYPE_TABLE.get(id);
}

/** The ggml type of each activation format. A table, not `format.toUpperCase()`: this runs for every
 *  row a decode step converts, and a fresh string per call was most of what a step allocated. */
const ACTIVATION_TYPE_IDS: Readonly<Record<ActivationFormat, GGMLTypeId>> = {
  f32: GGMLType.F32, f16: GGMLType.F16, bf16: GGMLType.BF16, q8_0: GGMLType.Q8_0, q8_1: GGMLType.Q8_1, q8_K: GGMLType.Q8_K,
};

/** The ggml type of an activation format ("q8_K" → Q8_K). */
export function activationTypeId(format: ActivationFormat): GGMLTypeId {
  return ACTIVATION_TYPE_IDS[format];
}

/** Bytes of a row of n activations in `format`; n must be a whole number of the format's blocks
 *  (INVALID_ARGUMENT otherwise), as the converters take them. */
export function activationRowBytes(format: ActivationFormat, n: number): number {
  return rowBytes(activationTypeId(format), n);
}

/** n rounded up to whole blocks of `format`: the widest row that a buffer for rows of up to n holds. */
export function wholeActivationBlocks(format: ActivationFormat, n: number): number {
  const block = TYPE_TABLE.get(activationTypeId(format))!.blockSize;
  return Math.ceil(n / block) * block;
}

/** The traits of a ggml type, or undefined for an unknown or removed id. */
export function typeInfo(id: number): GGMLTypeInfo | undefined {
  return TYPE_TABLE.get(id);
}

/** "type 23 (IQ4_XS)", "type 4 (Q4_2, removed from ggml)", "type 99 (unknown)". */
export function typeName(id: number): string {
  const info = TYPE_TABLE.get(id);
  if (info) return `type ${id} (${info.name})`;
  if (id in REMOVED_TYPES) return `type ${id} (${REMOVED_TYPES[id]}, removed from ggml)`;
  return `type ${id} (unknown)`;
}

export function isSupportedWeightType(id: number): boolean {
  return WEIGHT_TYPE_TABLE.has(id);
}

/** "F32 F16 BF16 Q4_0 ...", for error messages. */
export function supportedWeightTypeNames(): string {
  return WEIGHT_TYPE_INFOS.map((t) => t.name).join(" ");
}

/** Throws GGUF_UNSUPPORTED unless qwasm has kernels for the tensor's type. */
export function checkSupportedWeightType(tensorName: string, id: number): void {
  if (isSupportedWeightType(id)) return;
  throw new QwasmError("GGUF_UNSUPPORTED",
    `tensor ${tensorName} has ${typeName(id)}, which qwasm does not support; ` +
    `supported: ${supportedWeightTypeNames()}`);
}

/** Bytes in a row of n elements of `type`; n must be a whole number of blocks. */
export function rowBytes(type: number, n: number): number {
  const info = TYPE_TABLE.get(type);
  if (!info) throw new QwasmError("INVALID_ARGUMENT", `rowBytes: ${typeName(type)} has no block layout`);
  if (!Number.isSafeInteger(n) || n < 0 || n % info.blockSize !== 0) {
    throw new QwasmError("INVALID_ARGUMENT",
      `rowBytes: a row of ${info.name} must hold a multiple of ${info.blockSize} elements, got ${n}`);
  }
  return (n / info.blockSize) * info.typeSize;
}

/** Bytes of a whole tensor with dims [ne0, ne1, ...] (ne0 = row length). */
export function tensorBytes(type: number, dims: readonly number[]): number {
  let rows = 1;
  for (let i = 1; i < dims.length; i++) rows *= dims[i];
  return rowBytes(type, dims.length > 0 ? dims[0] : 1) * rows;
}
