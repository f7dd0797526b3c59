// Errors across the worker boundary: structured clone keeps an Error's message but drops its `code`,
// so errors cross as plain records and become QwasmErrors again on the page.
import { QwasmError } from "../platform/errors";
import type { WireError } from "./protocol";

export function toWireError(e: unknown): WireError {
  if (e instanceof QwasmError) return { wireError: true, name: e.name, code: e.code, message: e.message };
  if (e instanceof Error) {
    // An AbortSignal's reason (DOMException "AbortError") reads as an ABORTED QwasmError on the page.
    const code = e.name === "AbortError" ? "ABORTED" : undefined;
    return { wireError: true, name: e.name, code, message: e.message };
  }
  return { wireError: true, name: "Error", message: String(e) };
}

export function isWireError(x: unknown): x is WireError {
  return typeof x === "object" && x !== null && (x as WireError).wireError === true;
}

export function fromWireError(e: WireError): Error {
  if (e.code) {
    const error = new QwasmError(e.code, e.message);
    if (e.name !== "QwasmError") error.name = e.name;
    return error;
  }
  const error = new Error(e.message);
  error.name = e.name;
  return error;
}
