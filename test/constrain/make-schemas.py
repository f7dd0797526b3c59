# Writes the schema corpus (schemas/*.json). Run once: python3 make-schemas.py. Each file is one
# JSON Schema (draft 2020-12 keywords); the file name says what it covers.
import json, os, itertools
out = {}
def add(name, schema):
    assert name not in out, name
    out[name] = schema

# strings
add("string-plain", {"type": "string"})
for lo, hi in [(0, 0), (0, 1), (1, 1), (2, 5), (3, 3), (0, 12), (5, 10), (1, 30), (8, 8)]:
    add(f"string-len-{lo}-{hi}", {"type": "string", "minLength": lo, "maxLength": hi})
for lo in [1, 4, 10]:
    add(f"string-min-{lo}", {"type": "string", "minLength": lo, "maxLength": lo + 20})
for fmt in ["date", "time", "date-time", "uuid", "email"]:
    add(f"format-{fmt}", {"type": "string", "format": fmt})
    add(f"format-{fmt}-in-object", {"type": "object", "properties": {"v": {"type": "string", "format": fmt}, "n": {"type": "integer"}}, "required": ["v"], "additionalProperties": False})
patterns = ["^[a-z]+$", "^[A-Z]{3}-[0-9]{4}$", "^\\d{3}-\\d{2}-\\d{4}$", "^(red|green|blue)$", "^#[0-9a-fA-F]{6}$",
            "^[a-z]{2,5}(_[a-z]{1,4}){0,2}$", "^\\w+@\\w+\\.com$", "^(\\+|-)?[0-9]+(\\.[0-9]{1,2})?$", "^v\\d+\\.\\d+\\.\\d+$",
            "^[^\\s]{1,10}$", "^a.c$", "^(ab)*$", "^x?y+z*$", "^[\\u00e9\\u00e8a-c]{1,4}$", "^\"quoted\"$", "^back\\\\slash$",
            "^tab\\there$", "^(?:[0-9]{1,3}\\.){3}[0-9]{1,3}$", "^[0-9a-f]{8}$", "^\u65e5\u672c[a-z]?$", "^$", "^[A-Za-z ]{1,16}$"]
for i, p in enumerate(patterns):
    add(f"pattern-{i:02d}", {"type": "string", "pattern": p})
add("pattern-unanchored", {"type": "string", "pattern": "ab", "description": "contains ab"})
add("pattern-unanchored-end", {"type": "string", "pattern": "^ab"})

# numbers
add("integer-plain", {"type": "integer"})
add("number-plain", {"type": "number"})
for lo, hi in [(0, 9), (0, 10), (1, 100), (-5, 5), (-100, -1), (7, 7), (10, 19), (99, 1001), (-1000, 1000), (123, 4567), (0, 1), (-1, 0), (2024, 2100)]:
    add(f"integer-range-{lo}-{hi}", {"type": "integer", "minimum": lo, "maximum": hi})
for lo in [0, 1, -3, 1000]:
    add(f"integer-min-{lo}", {"type": "integer", "minimum": lo})
for hi in [0, -1, 50]:
    add(f"integer-max-{hi}", {"type": "integer", "maximum": hi})
add("integer-exclusive", {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10})
add("integer-fractional-bounds", {"type": "integer", "minimum": 0.5, "maximum": 9.5})
for lo, hi in [(0, 1), (0, 100), (-1, 1), (-10, -2), (5, 6), (-3, 0)]:
    add(f"number-range-{lo}-{hi}", {"type": "number", "minimum": lo, "maximum": hi})
add("number-exclusive", {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1})
add("number-exclusive-neg", {"type": "number", "exclusiveMinimum": -2, "maximum": 2})
add("number-min-0", {"type": "number", "minimum": 0})

# other scalars
add("boolean", {"type": "boolean"})
add("null", {"type": "null"})
add("nullable-string", {"type": ["string", "null"], "maxLength": 6})
add("nullable-integer", {"type": ["integer", "null"], "minimum": 0, "maximum": 9})
add("string-or-number", {"type": ["string", "number"], "maxLength": 4})
add("any-scalar", {"type": ["boolean", "null", "integer"]})
add("number-and-integer", {"type": ["number", "integer"], "minimum": 0, "maximum": 3})

# enums and consts
enums = [["a", "b", "c"], ["red", "green", "blue"], ["\u00e9t\u00e9", "na\u00efve", "\u65e5\u672c\u8a9e", "\U0001F600 smile"],
         ["say \"hi\"", "back\\slash", "new\nline", "tab\there", "\u0001ctl"], [1, 2, 3], [1.5, -2, 0], [True, False, None],
         ["x", 1, None, True], [[1, 2], {"k": "v"}, "s"], [{"a": 1, "b": [True, None]}], ["", " ", "  "], ["\u2028sep\u2029"],
         ["/slash/", "</script>", "\u00a0nbsp"], ["\ud7ff", "\ue000", "\uffff"]]
for i, e in enumerate(enums):
    add(f"enum-{i:02d}", {"enum": e})
add("enum-typed", {"type": "string", "enum": ["a", 1, "b", None]})
for i, c in enumerate(["fixed", 42, -0.5, None, True, {"nested": {"deep": [1, "two", None]}}, ["x", "\u00fc"], "quote\"d"]):
    add(f"const-{i}", {"const": c})
add("enum-in-object", {"type": "object", "properties": {"unit": {"enum": ["kg", "lb"]}, "value": {"type": "number", "minimum": 0, "maximum": 500}}, "required": ["unit", "value"], "additionalProperties": False})

# objects
add("object-any", {"type": "object"})
add("object-empty", {"type": "object", "properties": {}, "additionalProperties": False})
add("object-one-required", {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}, "required": ["name"]})
add("object-one-optional", {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}})
names = ["a", "b", "c", "d", "e"]
for n in range(1, 6):
    for mask in range(0, 2 ** n, max(1, (2 ** n) // 4)):
        req = [names[i] for i in range(n) if mask >> i & 1]
        props = {names[i]: [{"type": "integer", "minimum": 0, "maximum": 99}, {"type": "boolean"}, {"type": "string", "maxLength": 4}, {"type": "null"}, {"enum": ["x", "y"]}][i] for i in range(n)}
        add(f"object-{n}props-req{mask:02d}", {"type": "object", "properties": props, "required": req, "additionalProperties": False})
add("object-additional-true", {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["id"], "additionalProperties": True})
add("object-additional-schema", {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"], "additionalProperties": {"type": "boolean"}})
add("object-map-of-ints", {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 9}})
add("object-map-of-enums", {"type": "object", "additionalProperties": {"enum": ["on", "off"]}})
add("object-additional-false-only", {"type": "object", "additionalProperties": False})
add("object-required-undescribed", {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a", "zz"], "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 5}})
add("object-unicode-keys", {"type": "object", "properties": {"\u540d\u524d": {"type": "string", "maxLength": 5}, "caf\u00e9": {"type": "boolean"}, "with \"quote\"": {"type": "null"}, "new\nline": {"type": "integer", "minimum": 0, "maximum": 3}}, "required": ["\u540d\u524d", "caf\u00e9", "with \"quote\"", "new\nline"], "additionalProperties": False})
add("object-key-prefixes", {"type": "object", "properties": {"a": {"type": "null"}, "ab": {"type": "null"}}, "required": ["ab"], "additionalProperties": {"type": "boolean"}})
add("object-nested", {"type": "object", "properties": {"user": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 130}}, "required": ["name", "age"], "additionalProperties": False}, "active": {"type": "boolean"}}, "required": ["user", "active"], "additionalProperties": False})
add("object-deep", {"type": "object", "properties": {"l1": {"type": "object", "properties": {"l2": {"type": "object", "properties": {"l3": {"type": "object", "properties": {"v": {"const": "deep"}}, "required": ["v"], "additionalProperties": False}}, "required": ["l3"], "additionalProperties": False}}, "required": ["l2"], "additionalProperties": False}}, "required": ["l1"], "additionalProperties": False})
add("object-no-type-properties", {"properties": {"x": {"type": "integer", "minimum": 0, "maximum": 5}}, "required": ["x"], "additionalProperties": False})
add("object-person", {"type": "object", "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 20}, "email": {"type": "string", "format": "email"}, "born": {"type": "string", "format": "date"}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3}}, "required": ["name", "email", "born", "tags"], "additionalProperties": False})
add("object-event", {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "at": {"type": "string", "format": "date-time"}, "kind": {"enum": ["start", "stop"]}, "count": {"type": "integer", "minimum": 1, "maximum": 10}}, "required": ["id", "at", "kind"], "additionalProperties": False})

# arrays
add("array-any", {"type": "array"})
add("array-any-max3", {"type": "array", "maxItems": 3})
add("array-of-ints", {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}})
for lo, hi in [(0, 0), (1, 1), (2, 4), (0, 3), (3, 3), (1, 6), (5, 5)]:
    add(f"array-items-{lo}-{hi}", {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": lo, "maxItems": hi})
add("array-min-2", {"type": "array", "items": {"type": "boolean"}, "minItems": 2})
add("array-prefix", {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 3}, {"type": "string", "maxLength": 3}, {"type": "boolean"}]})
add("array-prefix-min", {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 3}, {"type": "string", "maxLength": 3}], "minItems": 2, "items": False})
add("array-prefix-then-items", {"type": "array", "prefixItems": [{"const": "head"}], "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 4})
add("array-prefix-items-false", {"type": "array", "prefixItems": [{"type": "null"}, {"type": "boolean"}], "items": False})
add("array-prefix-min-beyond", {"type": "array", "prefixItems": [{"type": "null"}], "items": {"type": "boolean"}, "minItems": 3, "maxItems": 4})
add("array-nested", {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 3}, "maxItems": 3})
add("array-of-objects", {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string", "maxLength": 3}, "v": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["k", "v"], "additionalProperties": False}, "minItems": 1, "maxItems": 3})
add("array-of-nullables", {"type": "array", "items": {"type": ["integer", "null"], "minimum": -9, "maximum": 9}, "maxItems": 5})
add("array-of-enums-unicode", {"type": "array", "items": {"enum": ["\u00fc", "\u00df", "\U0001F600"]}, "minItems": 1, "maxItems": 4})
add("array-of-dates", {"type": "array", "items": {"type": "string", "format": "date"}, "maxItems": 2})

# composition
add("anyof-types", {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "string", "maxLength": 3}]})
add("oneof-exclusive", {"oneOf": [{"type": "boolean"}, {"type": "null"}, {"type": "string", "maxLength": 2}]})
add("oneof-objects-discriminated", {"oneOf": [
    {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "minimum": 0, "maximum": 10}}, "required": ["kind", "r"], "additionalProperties": False},
    {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["kind", "side"], "additionalProperties": False}]})
add("anyof-with-siblings", {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 1}}, "required": ["a"], "additionalProperties": False, "anyOf": [{"properties": {"a": {"const": 0}}}, {"properties": {"a": {"const": 1}}}]})
add("anyof-nullable-ref", {"$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["x"], "additionalProperties": False}}, "anyOf": [{"$ref": "#/$defs/pt"}, {"type": "null"}]})
add("allof-merge-objects", {"allOf": [
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 5}}, "required": ["a"]},
    {"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"]}]})
add("allof-merge-bounds", {"allOf": [{"type": "integer", "minimum": 0}, {"maximum": 20}, {"minimum": 10}]})
add("allof-merge-strings", {"allOf": [{"type": "string", "minLength": 2}, {"maxLength": 4}]})
add("allof-ref", {"$defs": {"base": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 99}}, "required": ["id"]}},
    "allOf": [{"$ref": "#/$defs/base"}, {"properties": {"name": {"type": "string", "maxLength": 5}}, "required": ["name"]}]})
add("allof-types-intersect", {"allOf": [{"type": ["string", "integer"]}, {"type": ["integer", "null"]}], "minimum": 0, "maximum": 3})

# references and recursion
add("ref-defs", {"$defs": {"name": {"type": "string", "maxLength": 6}}, "type": "object", "properties": {"first": {"$ref": "#/$defs/name"}, "last": {"$ref": "#/$defs/name"}}, "required": ["first", "last"], "additionalProperties": False})
add("ref-definitions", {"definitions": {"n": {"type": "integer", "minimum": 0, "maximum": 3}}, "type": "array", "items": {"$ref": "#/definitions/n"}, "maxItems": 4})
add("ref-pointer-into-properties", {"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"$ref": "#/properties/a"}}, "required": ["a", "b"], "additionalProperties": False})
add("ref-chain", {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/c"}, "c": {"enum": [1, 2]}}, "$ref": "#/$defs/a"})
add("ref-escaped-name", {"$defs": {"a/b": {"type": "null"}, "m~n": {"type": "boolean"}}, "type": "array", "prefixItems": [{"$ref": "#/$defs/a~1b"}, {"$ref": "#/$defs/m~0n"}], "items": False, "minItems": 2})
add("recursive-tree", {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 9}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["v"], "additionalProperties": False}}, "$ref": "#/$defs/node"})
add("recursive-list", {"$defs": {"cell": {"type": "object", "properties": {"head": {"type": "boolean"}, "tail": {"anyOf": [{"$ref": "#/$defs/cell"}, {"type": "null"}]}}, "required": ["head", "tail"], "additionalProperties": False}}, "$ref": "#/$defs/cell"})
add("recursive-root", {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}, "child": {"$ref": "#"}}, "required": ["name"], "additionalProperties": False})
add("recursive-json", {"$defs": {"j": {"anyOf": [{"type": "null"}, {"type": "boolean"}, {"type": "array", "items": {"$ref": "#/$defs/j"}, "maxItems": 2}]}}, "$ref": "#/$defs/j"})

# annotations
add("annotated", {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://example.com/a", "title": "T", "description": "D", "$comment": "c", "type": "object",
    "properties": {"x": {"type": "integer", "default": 1, "examples": [2], "deprecated": False, "readOnly": True, "minimum": 0, "maximum": 4}}, "required": ["x"], "additionalProperties": False})
add("empty-schema", {})
add("true-items", {"type": "array", "items": True, "maxItems": 2})

# combinations to reach breadth: object with every scalar kind, nested in arrays
kinds = {"s": {"type": "string", "maxLength": 5}, "i": {"type": "integer", "minimum": -50, "maximum": 50}, "n": {"type": "number", "minimum": -1, "maximum": 1},
         "b": {"type": "boolean"}, "z": {"type": "null"}, "e": {"enum": ["p", "q", "\u00e9"]}, "d": {"type": "string", "format": "date"}, "u": {"type": "string", "format": "uuid"}}
for r in (2, 3):
    for combo in itertools.combinations(sorted(kinds), r):
        if len(out) >= 260: break
        props = {k: kinds[k] for k in combo}
        add(f"combo-{''.join(combo)}", {"type": "object", "properties": props, "required": list(combo[:-1]), "additionalProperties": False})
for k in sorted(kinds):
    add(f"array-of-{k}", {"type": "array", "items": kinds[k], "minItems": 1, "maxItems": 3})

os.makedirs("schemas", exist_ok=True)
for f in os.listdir("schemas"): os.remove(os.path.join("schemas", f))
for name, schema in out.items():
    with open(os.path.join("schemas", name + ".json"), "w", encoding="utf-8") as fh:
        json.dump(schema, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
print(len(out))
