/**
 * The no-yargs parse of a command whose flags are one table (`fetch`, `refresh`): they run at
 * every boot and on every timer tick, and loading yargs costs as much as starting node. The
 * table's own rules apply (demandOption, conflicts, default, coerce); anything this strict
 * parse does not take — --help, an unknown flag, a broken rule, a value a coerce refuses —
 * gives undefined, and the yargs CLI then parses the same argv with the same table and says why.
 */
import { parseArgs } from "node:util";

/** One flag as yargs takes it; only these keys are honoured by the fast path. */
export interface OptionRule {
  readonly type: "string" | "boolean" | "number";
  readonly alias?: string;
  readonly default?: unknown;
  readonly array?: boolean;
  readonly demandOption?: boolean;
  readonly conflicts?: string;
  readonly coerce?: (value: never) => unknown;
  readonly describe?: string;
  readonly hidden?: boolean;
}

/** A command's flags by name. */
export type OptionTable = Readonly<Record<string, OptionRule>>;

/** `args` (after the command name) parsed by `table`, or undefined to leave them to yargs. */
export function parseFast(table: OptionTable, args: readonly string[]): Record<string, unknown> | undefined {
  const config = Object.fromEntries(
    Object.entries(table).map(([name, rule]) => [
      name,
      {
        type: rule.type === "boolean" ? ("boolean" as const) : ("string" as const),
        ...(rule.alias !== undefined ? { short: rule.alias } : {}),
        ...(rule.array ? { multiple: true } : {}),
      },
    ]),
  );
  try {
    const { values } = parseArgs({ args: [...args], options: config, strict: true, allowPositionals: false });
    const out: Record<string, unknown> = {};
    for (const [name, rule] of Object.entries(table)) {
      const given = values[name];
      if (given === undefined) {
        if (rule.demandOption) return undefined;
        if (rule.default !== undefined) out[name] = rule.default;
        continue;
      }
      if (rule.conflicts !== undefined && values[rule.conflicts] !== undefined) return undefined;
      // yargs reads a number flag as Number() does, an empty one as NaN (which coerce refuses).
      const value = rule.type === "number" ? (typeof given === "string" && given.trim() !== "" ? Number(given) : NaN) : given;
      if (rule.type === "number" && !rule.coerce && Number.isNaN(value)) return undefined;
      out[name] = rule.coerce ? (rule.coerce as (v: unknown) => unknown)(value) : value;
    }
    return out;
  } catch {
    return undefined;
  }
}
