import { replaceControl } from "../log.js";
import { dataError } from "../errors.js";
import { parseReference, type SecretReference } from "../reference.js";

/** A template split into literal text and references, in 1Password's `op inject` syntax. */
export type TemplatePart = { readonly text: string } | { readonly ref: SecretReference };

// ASCII whitespace only ([[:space:]] in nix/lib.nix, which must agree).
const placeholder = /\{\{[ \t\n\v\f\r]*(op:\/\/[^}]*?)[ \t\n\v\f\r]*\}\}/g;

export function parseTemplate(content: string, where: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let last = 0;
  for (const match of content.matchAll(placeholder)) {
    if (match.index > last) parts.push({ text: content.slice(last, match.index) });
    parts.push({ ref: parseReference(match[1]!, where) });
    last = match.index + match[0].length;
  }
  if (last < content.length) parts.push({ text: content.slice(last) });
  // A placeholder that does not parse (a missing "}", a "}" inside) would otherwise be
  // written out as literal text; refuse it instead.
  for (const part of parts) {
    const broken = "text" in part ? /\{\{[ \t\n\v\f\r]*op:\/\//.exec(part.text) : null;
    if (broken && "text" in part)
      throw dataError(
        `${where}: malformed placeholder "${replaceControl(part.text.slice(broken.index, broken.index + 80), " ")}" (write {{ op://vault/item/field }})`,
      );
  }
  return parts;
}

export function renderTemplate(parts: readonly TemplatePart[], values: ReadonlyMap<string, string>): string {
  return parts.map((part) => ("text" in part ? part.text : values.get(part.ref.raw)!)).join("");
}

export function templateReferences(parts: readonly TemplatePart[]): SecretReference[] {
  return parts.flatMap((part) => ("ref" in part ? [part.ref] : []));
}
