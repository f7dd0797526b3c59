// Exported scalar conversions, for tests that check the half-precision helpers directly.
import { f16_to_f32, f32_to_f16 } from "./common";

export function f16_to_f32_export(h: u32): f32 { return f16_to_f32(h); }
export function f32_to_f16_export(f: f32): u32 { return f32_to_f16(f); }
