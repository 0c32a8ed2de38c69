/**
 * Who is asking: systemd's LoadCredential= connects from the abstract address
 * "\0<random>/unit/<unit>/<credential ID>", as uid 0, from a helper process in the
 * unit's own cgroup. The front end passes these facts unjudged; they are judged here.
 */

/** The unit types that have an exec context (and so LoadCredential=). */
const execUnitSuffixes = new Set(["service", "socket", "mount", "swap"]);
/** systemd's VALID_CHARS for unit names; an instance may also contain "@". */
const unitChars = /^[A-Za-z0-9:_.\\-]+$/;
const instanceChars = /^[A-Za-z0-9:_.\\@-]+$/;
const unitNameMax = 255;

/** A unit name systemd could start and give credentials to (not a bare template). */
export function isUnitName(name: string): boolean {
  if (name.length === 0 || name.length > unitNameMax) return false;
  const dot = name.lastIndexOf(".");
  if (dot <= 0 || !execUnitSuffixes.has(name.slice(dot + 1))) return false;
  const stem = name.slice(0, dot);
  const at = stem.indexOf("@");
  if (at < 0) return unitChars.test(stem);
  const prefix = stem.slice(0, at);
  const instance = stem.slice(at + 1);
  return prefix.length > 0 && unitChars.test(prefix) && instance.length > 0 && instanceChars.test(instance);
}

/** systemd's credential_name_valid: a file name of printable ASCII without ":" or "/". */
export function isCredentialId(id: string): boolean {
  return id.length > 0 && id.length <= 255 && id !== "." && id !== ".." && /^[\x20-\x7e]+$/.test(id) && !/[:/]/.test(id);
}

export interface PeerAddress {
  readonly unit: string;
  readonly credential: string;
}

/** Parse sun_path as getpeername returned it; a reason string when it is not systemd's form. */
export function parsePeerAddress(address: Buffer): PeerAddress | string {
  if (address.length < 2 || address[0] !== 0) return "the peer is not bound to an abstract address";
  const text = address.subarray(1);
  if (text.includes(0)) return "the peer address contains a NUL byte";
  const value = text.toString("latin1");
  const parts = value.split("/");
  if (parts.length !== 4 || parts[1] !== "unit") return "the peer address is not of the form <random>/unit/<unit>/<ID>";
  const [random, , unit, credential] = parts as [string, string, string, string];
  if (!/^[0-9a-f]+$/.test(random)) return "the peer address does not start with systemd's random hex prefix";
  if (!isUnitName(unit)) return `the peer address names no valid unit ("${printable(unit)}")`;
  if (!isCredentialId(credential)) return `the peer address names no valid credential ID ("${printable(credential)}")`;
  return { unit, credential };
}

/**
 * The unit a process belongs to, from its /proc/PID/cgroup: the cgroup v2 ("0::") path must
 * be zero or more slices followed by exactly one unit — "/system.slice/foo.service",
 * "/system.slice/system-foo.slice/foo@bar.service", "/foo.service" (Slice=-.slice). A process
 * in a cgroup below a unit (a delegated subtree the unit manages itself) belongs to no unit.
 */
export function unitOfCgroup(cgroupFile: string): string | undefined {
  const line = cgroupFile.split("\n").find((l) => l.startsWith("0::"));
  if (!line) return undefined;
  const path = line.slice(3);
  if (!path.startsWith("/")) return undefined;
  const parts = path.slice(1).split("/");
  const unit = parts.pop();
  if (!unit || !isUnitName(unit) || !parts.every((p) => p.endsWith(".slice") && p.length > ".slice".length)) return undefined;
  return unit;
}

export interface PeerFacts {
  readonly uid: number;
  readonly pid: number;
  readonly address: Buffer;
  readonly cgroup: string;
}

export type PeerVerdict =
  | ({ readonly ok: true } & PeerAddress)
  | { readonly ok: false; readonly reason: string; readonly unit?: string; readonly credential?: string };

/** Only root, asking from inside the cgroup of the unit its address names. */
export function checkPeer(facts: PeerFacts): PeerVerdict {
  const parsed = parsePeerAddress(facts.address);
  if (typeof parsed === "string") return { ok: false, reason: parsed };
  const named = { unit: parsed.unit, credential: parsed.credential };
  if (facts.uid !== 0) return { ok: false, reason: `the peer (pid ${facts.pid}) is uid ${facts.uid}, not root`, ...named };
  const actual = unitOfCgroup(facts.cgroup);
  if (actual !== parsed.unit) {
    return {
      ok: false,
      reason: `the peer (pid ${facts.pid}) is in ${actual ? `unit ${actual}` : "no unit's cgroup"}, not ${parsed.unit}`,
      ...named,
    };
  }
  return { ok: true, ...named };
}

function printable(text: string): string {
  return text.slice(0, 120).replace(/[^\x20-\x7e]/g, "?");
}
