// Helpers shared by every weight type: half-precision conversions, exactly as ggml does them.
// No static data here or anywhere in assembly/ (see DEVELOPERS.md): tables are built from v128
// constants or computed.

/** IEEE half (as u16 bits) to f32, exact. */
@inline export function f16_to_f32(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp == 0x1f) return reinterpret<f32>(sign | 0x7f800000 | (mant << 13));
  if (exp != 0) return reinterpret<f32>(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return reinterpret<f32>(sign);
  // subnormal half: mant * 2^-24
  const v = <f32>mant * reinterpret<f32>(0x33800000);
  return sign ? -v : v;
}

/** f32 to IEEE half bits, round to nearest even (what F16C and ggml's fp32_to_fp16 do). */
@inline export function f32_to_f16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  const sign = (x >> 16) & 0x8000;
  const absx = x & 0x7fffffff;
  if (absx >= 0x7f800000) return sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0); // inf / nan
  if (absx >= 0x477ff000) return sign | 0x7c00; // rounds to >= 65520: overflow to inf
  if (absx < 0x38800000) {
    // result is subnormal (or zero): value / 2^-24, rounded to nearest even
    const v = reinterpret<f32>(absx) * reinterpret<f32>(0x4b800000); // * 2^24
    // nearest-even rounding of a value < 1024 via the 2^23 trick
    const r = <u32>((v + 8388608.0) - 8388608.0);
    return sign | r;
  }
  const mant = absx & 0x7fffff;
  let h = ((absx >> 23) - 112) << 10 | (mant >> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h += 1;
  return sign | h;
}

/** bf16 bits to f32, exact. */
@inline export function bf16_to_f32(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

/** f32 to bf16 bits, round to nearest even; NaN stays NaN (ggml_compute_fp32_to_bf16). */
@inline export function f32_to_bf16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  if ((x & 0x7fffffff) > 0x7f800000) return (x >> 16) | 64;
  return (x + (0x7fff + ((x >> 16) & 1))) >> 16;
}

/** Round half to even, as nearbyint() in the default FE mode. */
@inline export function round_even(x: f32): f32 {
  return nearest<f32>(x);
}
