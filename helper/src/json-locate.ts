import { dataError } from "./errors.js";

/**
 * JSON.parse that also remembers the line of every value, keyed by JSON pointer
 * ("/files/rpc-password/mode"), so validation errors can say `spec.json:12: …`.
 */
export interface LocatedJson {
  readonly value: unknown;
  lineOf(pointer: string): number;
}

export function parseJsonWithLines(text: string, file: string): LocatedJson {
  const lines = new Map<string, number>();
  let pos = 0;
  let line = 1;

  const fail = (what: string): never => {
    throw dataError(`${file}:${line}: invalid JSON: ${what}`);
  };
  const skipSpace = () => {
    while (pos < text.length) {
      const c = text[pos]!;
      if (c === "\n") line++;
      else if (c !== " " && c !== "\t" && c !== "\r") break;
      pos++;
    }
  };
  const parseString = (): string => {
    const start = pos;
    pos++;
    while (pos < text.length && text[pos] !== '"') {
      if (text[pos] === "\\") pos++;
      else if (text[pos] === "\n") fail("newline inside a string");
      pos++;
    }
    if (pos >= text.length) fail("unterminated string");
    pos++;
    try {
      return JSON.parse(text.slice(start, pos)) as string;
    } catch {
      return fail("bad escape in string");
    }
  };
  // Recursion bound: a deeply nested file would otherwise overflow the stack (exit 70).
  const maxDepth = 64;
  let depth = 0;
  const parseValue = (pointer: string): unknown => {
    skipSpace();
    lines.set(pointer, line);
    const c = text[pos];
    if ((c === "{" || c === "[") && depth >= maxDepth) fail(`nested more than ${maxDepth} levels deep`);
    depth++;
    try {
      return parseNested(pointer, c);
    } finally {
      depth--;
    }
  };
  const parseNested = (pointer: string, c: string | undefined): unknown => {
    if (c === "{") {
      pos++;
      const object: Record<string, unknown> = {};
      skipSpace();
      if (text[pos] === "}") {
        pos++;
        return object;
      }
      for (;;) {
        skipSpace();
        if (text[pos] !== '"') fail("expected a string key");
        const key = parseString();
        if (Object.hasOwn(object, key)) fail(`duplicate key "${key}"`);
        skipSpace();
        if (text[pos] !== ":") fail(`expected ":" after "${key}"`);
        pos++;
        const childPointer = `${pointer}/${key.replace(/~/g, "~0").replace(/\//g, "~1")}`;
        Object.defineProperty(object, key, { value: parseValue(childPointer), enumerable: true, writable: true, configurable: true });
        skipSpace();
        if (text[pos] === ",") {
          pos++;
          continue;
        }
        if (text[pos] === "}") {
          pos++;
          return object;
        }
        fail('expected "," or "}"');
      }
    }
    if (c === "[") {
      pos++;
      const array: unknown[] = [];
      skipSpace();
      if (text[pos] === "]") {
        pos++;
        return array;
      }
      for (;;) {
        array.push(parseValue(`${pointer}/${array.length}`));
        skipSpace();
        if (text[pos] === ",") {
          pos++;
          continue;
        }
        if (text[pos] === "]") {
          pos++;
          return array;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return parseString();
    const literal = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(pos, pos + 400));
    if (!literal) return fail(c === undefined ? "unexpected end of input" : `unexpected character "${c}"`);
    pos += literal[0].length;
    return JSON.parse(literal[0]) as unknown;
  };

  const value = parseValue("");
  skipSpace();
  if (pos < text.length) fail("unexpected text after the end");
  return {
    value,
    lineOf(pointer) {
      for (let p = pointer; ; p = p.slice(0, p.lastIndexOf("/"))) {
        const found = lines.get(p);
        if (found !== undefined) return found;
        if (p === "") return 1;
      }
    },
  };
}
