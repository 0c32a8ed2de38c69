import { dataError, HomelabError, notFoundError, permissionError, tempFailError } from "../errors.js";
import type { SecretReference } from "../reference.js";
import { withRetry } from "../retry.js";
import { version } from "../version.js";
import type { Source } from "./source.js";

/** The slice of @1password/sdk this source uses (the SDK is imported only when needed). */
interface SdkClient {
  secrets: {
    resolveAll(refs: string[]): Promise<{
      individualResponses: Record<string, { content?: { secret: string }; error?: { type: string; message?: string } }>;
    }>;
  };
}

const notFoundTypes = new Set(["fieldNotFound", "itemNotFound", "vaultNotFound", "noMatchingSections"]);
const badReferenceTypes = new Set(["parsing", "tooManyMatchingFields", "tooManyItems", "tooManyVaults", "tooManyMatchingSections"]);

/** The 1Password SDK with a service-account token: one `resolveAll` per attempt. */
export function createOnePasswordSource(token: string): Source {
  return {
    name: "onepassword",
    async resolveAll(refs, { signal, log }) {
      log.debug("loading the 1Password SDK");
      const sdk = await import("@1password/sdk");
      return withRetry(
        "1Password",
        async () => {
          let client: SdkClient;
          try {
            client = await sdk.createClient({ auth: token, integrationName: "homelab-secrets", integrationVersion: version });
          } catch (error) {
            throw classifySdkError(error, token, sdk);
          }
          let response: Awaited<ReturnType<SdkClient["secrets"]["resolveAll"]>>;
          try {
            response = await client.secrets.resolveAll(refs.map((r) => r.raw));
          } catch (error) {
            throw classifySdkError(error, token, sdk);
          }
          return collect(refs, response.individualResponses);
        },
        { signal, log, minTimeoutMs: 1000 },
      );
    },
  };
}

function collect(
  refs: readonly SecretReference[],
  responses: Record<string, { content?: { secret: string }; error?: { type: string; message?: string } }>,
): Map<string, string> {
  const values = new Map<string, string>();
  const missing: string[] = [];
  const bad: string[] = [];
  const other: string[] = [];
  for (const ref of refs) {
    const response = responses[ref.raw];
    if (response?.content !== undefined) {
      values.set(ref.raw, response.content.secret);
      continue;
    }
    const type = response?.error?.type ?? "noResponse";
    const detail = `${ref.raw} (${type})`;
    if (notFoundTypes.has(type)) missing.push(detail);
    else if (badReferenceTypes.has(type)) bad.push(detail);
    else other.push(detail);
  }
  if (bad.length > 0) throw dataError(`1Password could not use these references: ${bad.join(", ")}`);
  if (missing.length > 0) throw notFoundError(`not found in 1Password: ${missing.join(", ")}`);
  if (other.length > 0) throw tempFailError(`1Password did not resolve: ${other.join(", ")}`);
  return values;
}

/**
 * The SDK throws plain Errors (and sometimes raw JSON strings); sort them into exit classes
 * by what they say, and keep the token out of any message we pass on.
 */
export function classifySdkError(
  error: unknown,
  token: string,
  sdk?: { RateLimitExceededError?: unknown; AuthExpiredError?: unknown },
): HomelabError {
  if (error instanceof HomelabError) return error;
  const raw = error instanceof Error ? error.message : String(error);
  const message = redact(raw, token).slice(0, 300);
  const isInstance = (cls: unknown) => typeof cls === "function" && error instanceof (cls as new () => unknown);
  if (isInstance(sdk?.RateLimitExceededError) || /rate limit/i.test(raw)) {
    return tempFailError(`1Password rate limit reached: ${message}`, { retryAfterMs: 30_000 });
  }
  if (/ParsingSecretReference|could not be parsed/.test(raw)) return dataError(`1Password could not parse a reference: ${message}`);
  if (isInstance(sdk?.AuthExpiredError)) return permissionError(`1Password authentication expired: ${message}`);
  if (/invalid service account token|invalid token|unauthori[sz]ed|forbidden|access denied|not authorized/i.test(raw)) {
    return permissionError(`1Password rejected the service account token: ${message}`);
  }
  if (/error sending request|timed? ?out|connect|dns|network|temporar|unavailable|5\d\d|reset/i.test(raw)) {
    return tempFailError(`1Password is unreachable: ${message}`);
  }
  if (/authentication error/i.test(raw)) return permissionError(`1Password authentication failed: ${message}`);
  return tempFailError(`1Password request failed: ${message}`, { unrecognised: true });
}

function redact(text: string, token: string): string {
  return token.length > 0 ? text.split(token).join("[token]") : text;
}
