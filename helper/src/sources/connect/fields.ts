/**
 * Choosing a field of a Connect item for a reference, and turning a batch's per-reference
 * outcomes into one result or one error. Pure: no HTTP.
 */
import { ExitCode, HomelabError, dataError, notFoundError } from "../../errors.js";
import type { SecretReference } from "../../reference.js";
import type { ConnectItem } from "./api.js";

/** A problem with one reference (reported per reference, aggregated over the batch). */
export class ReferenceProblem extends Error {
  constructor(
    readonly kind: "missing" | "ambiguous" | "unsupported",
    message: string,
  ) {
    super(message);
  }
}

const idPattern = /^[a-z0-9]{26}$/;

/** 1Password IDs are 26 lowercase alphanumerics; such names are tried as IDs first, as `op` does. */
export const looksLikeId = (name: string): boolean => idPattern.test(name);

/** 1Password names match case-insensitively. */
export const sameName = (a: string | undefined, b: string): boolean => a !== undefined && a.toLowerCase() === b.toLowerCase();

/** Exact-case matches win; otherwise case-insensitive ones (1Password names are case-insensitive). */
export function pickByName<T>(list: readonly T[], nameOf: (entry: T) => string | undefined, name: string): T[] {
  const exact = list.filter((entry) => nameOf(entry) === name);
  return exact.length > 0 ? exact : list.filter((entry) => sameName(nameOf(entry), name));
}

/** The field a reference points at, by id or label (case-insensitive), within its section if given. */
export function pickValue(item: ConnectItem, ref: SecretReference): string {
  const fields = item.fields ?? [];
  const sections = item.sections ?? [];
  let candidates = fields;
  if (ref.section !== undefined) {
    const wanted = ref.section;
    const sectionIds = new Set(
      sections.filter((s) => s.id === wanted || sameName(s.label, wanted) || sameName(s.id, wanted)).map((s) => s.id),
    );
    if (sectionIds.size === 0) throw new ReferenceProblem("missing", `section "${wanted}" not found in item "${ref.item}"`);
    candidates = fields.filter((f) => f.section?.id !== undefined && sectionIds.has(f.section.id));
  }
  // An exact ID wins (IDs are unique); otherwise labels, case-insensitively.
  let matches = candidates.filter((f) => f.id === ref.field);
  if (matches.length === 0) matches = candidates.filter((f) => sameName(f.label, ref.field) || sameName(f.id, ref.field));
  const where = ref.section === undefined ? `item "${ref.item}"` : `section "${ref.section}" of item "${ref.item}"`;
  const [field, second] = matches;
  if (!field) throw new ReferenceProblem("missing", `field "${ref.field}" not found in ${where}`);
  if (second) {
    const hint = ref.section === undefined ? "; add the section to the reference or use the field's ID" : "; use the field's ID";
    throw new ReferenceProblem("ambiguous", `tooManyMatchingFields: ${matches.length} fields named "${ref.field}" in ${where}${hint}`);
  }

  if (ref.attribute !== undefined) {
    if (field.type !== "OTP") {
      throw new ReferenceProblem(
        "unsupported",
        `?attribute=${ref.attribute} needs a one-time password field, but "${ref.field}" is of type ${field.type ?? "unknown"}`,
      );
    }
    if (typeof field.totp !== "string" || field.totp.length === 0) {
      throw new ReferenceProblem("unsupported", `the Connect server returned no current code for one-time password field "${ref.field}"`);
    }
    return field.totp;
  }
  if (ref.sshFormat !== undefined) {
    const value = field.value ?? "";
    const offered = field.ssh_formats?.openssh?.value;
    if (typeof offered === "string" && offered.length > 0) return offered;
    if (value.startsWith("-----BEGIN OPENSSH PRIVATE KEY-----")) return value;
    throw new ReferenceProblem(
      "unsupported",
      field.type === "SSHKEY"
        ? "?ssh-format=openssh: the Connect server returns this key only in PKCS#8 form and does not offer OpenSSH format; drop ?ssh-format=openssh to get the PKCS#8 key, or use the onepassword source"
        : `?ssh-format=openssh needs an SSH key field, but "${ref.field}" is of type ${field.type ?? "unknown"}`,
    );
  }
  return field.value ?? "";
}

/**
 * One batch's outcomes (in `refs` order) to its values, or to one error: the most telling
 * fatal error (rank), else every reference problem at once (69 if any is missing, else 65).
 */
export function collectOutcomes(refs: readonly SecretReference[], outcomes: readonly PromiseSettledResult<string>[]): Map<string, string> {
  const result = new Map<string, string>();
  const problems: { ref: SecretReference; problem: ReferenceProblem }[] = [];
  let firstFatal: unknown;
  outcomes.forEach((outcome, index) => {
    const ref = refs[index]!;
    if (outcome.status === "fulfilled") result.set(ref.raw, outcome.value);
    else if (outcome.reason instanceof ReferenceProblem) problems.push({ ref, problem: outcome.reason });
    else if (firstFatal === undefined || rank(outcome.reason) < rank(firstFatal)) firstFatal = outcome.reason;
  });
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows a rejection reason unchanged (a HomelabError or an internal error)
  if (firstFatal !== undefined) throw firstFatal;
  if (problems.length > 0) throw aggregate(problems);
  return result;
}

/** Permission problems first (the cause), then the run's own abort, then anything else. */
function rank(error: unknown): number {
  if (error instanceof HomelabError) {
    if (error.exitCode === ExitCode.noPerm) return 0;
    if (error.exitCode === ExitCode.config) return 1;
    if (error.exitCode === ExitCode.tempFail) return 3;
    return 2;
  }
  return 4;
}

function aggregate(problems: readonly { ref: SecretReference; problem: ReferenceProblem }[]): HomelabError {
  const describe = (list: typeof problems) => list.map(({ ref, problem }) => `${ref.raw} (${problem.message})`).join("; ");
  const missing = problems.filter((p) => p.problem.kind === "missing");
  const other = problems.filter((p) => p.problem.kind !== "missing");
  if (missing.length > 0) {
    const also = other.length > 0 ? `; also unusable: ${describe(other)}` : "";
    const noun = missing.length === 1 ? "reference" : "references";
    return notFoundError(`1Password Connect: ${missing.length} ${noun} not found: ${describe(missing)}${also}`);
  }
  const noun = other.length === 1 ? "reference" : "references";
  return dataError(`1Password Connect: ${other.length} ${noun} cannot be resolved: ${describe(other)}`);
}
