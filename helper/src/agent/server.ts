import { exitCodeOf } from "../errors.js";
import type { Logger } from "../log.js";
import type { Batcher } from "./batcher.js";
import { encodeReply, type Request } from "./frames.js";
import { checkPeer } from "./peer.js";
import { lookupCredential, renderCredential, type Policy } from "./policy.js";

export interface Answer {
  readonly id: number;
  /** undefined: refused (the front end makes the unit's credential loading fail). */
  readonly data: Buffer | undefined;
}

/**
 * One request from the front end to one answer: who asks (uid 0, in the cgroup of the unit
 * its address names), whether the policy gives that unit that credential, and its rendered
 * bytes. Logs name units and credentials, never values.
 */
export async function answer(request: Request, policy: Policy, batcher: Batcher, log: Logger): Promise<Answer> {
  const verdict = checkPeer(request);
  const asked = verdict.unit ? `${verdict.unit}: credential ${verdict.credential}` : `connection from pid ${request.pid}`;
  if (!verdict.ok) {
    log.error(`${asked}: refused: ${verdict.reason}`);
    return { id: request.id, data: undefined };
  }
  const credential = lookupCredential(policy, verdict.unit, verdict.credential);
  if (!credential) {
    log.error(
      `${asked}: refused: the agent policy ${policy.units.has(verdict.unit) ? `gives ${verdict.unit} no credential of that name` : `has no entry for ${verdict.unit}`}`,
    );
    return { id: request.id, data: undefined };
  }
  try {
    // A refresh unit's load: one fresh batch per load (its pid), whatever is in memory.
    const values = credential.fresh
      ? await batcher.resolveFresh(credential.fresh.unitRefs, `${verdict.unit}/${request.pid}`, asked)
      : await batcher.resolve(credential.refs, asked);
    const data = renderCredential(credential, values);
    log.info(`${asked}: served ${data.length} bytes`);
    return { id: request.id, data };
  } catch (error) {
    // The exit class `fetch` would have ended with: 75 retry later, 69 not found, 77 auth, …
    log.error(
      `${asked}: not served (${exitCodeOf(error)}), the unit will not start: ${error instanceof Error ? error.message : String(error)}`,
    );
    return { id: request.id, data: undefined };
  }
}

export const replyFrame = (a: Answer): Buffer => encodeReply(a.id, a.data);
