import { dataError } from "../errors.js";
import type { Spec } from "../spec.js";
import { encodeEnvFile } from "./env.js";
import { renderTemplate } from "./template.js";

export interface RenderedOutput {
  readonly name: string;
  readonly content: Buffer;
  readonly mode: number;
}

/** Turn a spec and its resolved values into file contents; refuses what cannot be represented. */
export function renderOutputs(spec: Spec, values: ReadonlyMap<string, string>): RenderedOutput[] {
  const valueOf = (raw: string) => values.get(raw)!;
  return [
    ...spec.files.map((file) => ({
      name: file.name,
      mode: file.mode,
      content: utf8(valueOf(file.ref.raw), `${file.name} (${file.ref.raw})`),
    })),
    ...spec.envFiles.map((env) => ({
      name: env.name,
      mode: env.mode,
      content: Buffer.from(
        encodeEnvFile(
          env.vars.map(([key, ref]) => [key, valueOf(ref.raw)] as const),
          env.name,
        ),
        "utf8",
      ),
    })),
    ...spec.templates.map((template) => ({
      name: template.name,
      mode: template.mode,
      content: utf8(renderTemplate(template.parts, values), template.name),
    })),
  ];
}

/** Raw files hold the value's exact bytes; a string that is not valid Unicode has none. */
export function utf8(value: string, what: string): Buffer {
  if (!value.isWellFormed()) throw dataError(`${what}: the value is not valid UTF-8 and cannot be written faithfully`);
  return Buffer.from(value, "utf8");
}
