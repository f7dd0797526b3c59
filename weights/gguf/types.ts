// The ggml tensor type table: id, name, elements per block and bytes per block, as in ggml.c's
// type_traits. This is the one place that knows the block sizes; row and tensor sizes come from here.
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

/** The weight types qwasm has kernels for (see assembly/quants/). */
export const SUPPORTED_WEIGHT_TYPES: readonly GGMLTypeId[] = [
  GGMLType.F32, GGMLType.F16, GGMLType.BF16,
  GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
  GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
  GGMLType.IQ4_NL,
];

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
  return (SUPPORTED_WEIGHT_TYPES as readonly number[]).includes(id);
}

/** "F32 F16 BF16 Q4_0 ...", for error messages. */
export function supportedWeightTypeNames(): string {
  return SUPPORTED_WEIGHT_TYPES.map((id) => TYPE_TABLE.get(id)!.name).join(" ");
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
