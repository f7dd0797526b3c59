// An independent check that text is a prefix of some JSON text (RFC 8259 syntax only): the test's
// reference for outputs cut at maxTokens.
export function isJsonPrefix(text: string): boolean {
  // A stack of containers: "{" expecting key, ":" expecting colon, "v" expecting value, "," after a value.
  type Ctx = "obj-key" | "obj-colon" | "obj-value" | "obj-next" | "arr-value" | "arr-next" | "top" | "done";
  const stack: Ctx[] = ["top"];
  let i = 0;
  const n = text.length;
  const valueStart = (): boolean => {
    const c = text[i];
    if (c === "{") { i++; stack.push("obj-key"); return true; }
    if (c === "[") { i++; stack.push("arr-value"); return true; }
    if (c === '"') return scalar(/^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/, /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{0,4})?)*$/);
    if (c === "-" || (c >= "0" && c <= "9")) return scalar(/^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?(?=[,\]}\s]|$)/, /^-?(?:0|[1-9]\d*)?(?:\.\d*)?(?:[eE][-+]?\d*)?$/);
    for (const word of ["true", "false", "null"]) {
      if (text.startsWith(word, i)) { i += word.length; return true; }
      if (word.startsWith(text.slice(i))) { i = n; return true; }
    }
    return false;
  };
  // A whole scalar, or (at the end of the text) a prefix of one.
  const scalar = (whole: RegExp, partial: RegExp): boolean => {
    const m = whole.exec(text.slice(i));
    if (m && i + m[0].length < n) { i += m[0].length; return true; }
    if (m && i + m[0].length === n) { i = n; return true; }
    if (partial.test(text.slice(i))) { i = n; return true; }
    return false;
  };
  while (i < n) {
    const c = text[i];
    if (c === " " || c === "\n" || c === "\t" || c === "\r") { i++; continue; }
    const top = stack[stack.length - 1];
    if (top === "done") return false;
    if (top === "top" || top === "obj-value" || top === "arr-value") {
      if (top === "arr-value" && c === "]") { stack.pop(); afterValue(); continue; }
      stack[stack.length - 1] = top === "top" ? "done" : top === "obj-value" ? "obj-next" : "arr-next";
      const depth = stack.length;
      if (!valueStart()) return false;
      if (stack.length === depth && i <= n) continue;
      continue;
    }
    if (top === "obj-key") {
      if (c === "}") { stack.pop(); afterValue(); continue; }
      if (c !== '"') return false;
      if (!scalar(/^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/, /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{0,4})?)*$/)) return false;
      stack[stack.length - 1] = "obj-colon";
      continue;
    }
    if (top === "obj-colon") { if (c !== ":") return false; i++; stack[stack.length - 1] = "obj-value"; continue; }
    if (top === "obj-next") {
      if (c === ",") { i++; stack[stack.length - 1] = "obj-key"; continue; }
      if (c === "}") { i++; stack.pop(); continue; }
      return false;
    }
    if (top === "arr-next") {
      if (c === ",") { i++; stack[stack.length - 1] = "arr-value"; continue; }
      if (c === "]") { i++; stack.pop(); continue; }
      return false;
    }
  }
  return true;

  function afterValue(): void { i++; }
}
