import { configError, usageError } from "../errors.js";
import type { Logger } from "../log.js";
import type { SourceConfig } from "../spec.js";
import { loadToken } from "../token.js";
import { createFileSource } from "./file.js";
import type { Source } from "./source.js";

export type { Source } from "./source.js";

export interface SourceOverrides {
  /** `--source`: "onepassword", "connect" or "file:PATH". */
  readonly source?: string | undefined;
  readonly connectHost?: string | undefined;
  readonly tokenCredential?: string | undefined;
  readonly tokenFile?: string | undefined;
}

/** Combine a spec's source with command-line overrides; flags win. */
export function chooseSource(fromSpec: SourceConfig | undefined, flags: SourceOverrides): SourceConfig {
  const base: SourceConfig = fromSpec ?? { type: "onepassword" };
  const token = {
    ...("tokenCredential" in base && base.tokenCredential ? { tokenCredential: base.tokenCredential } : {}),
    ...("tokenFile" in base && base.tokenFile ? { tokenFile: base.tokenFile } : {}),
    ...(flags.tokenCredential ? { tokenCredential: flags.tokenCredential } : {}),
    ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}),
  };
  const type = flags.source ?? base.type;
  if (type.startsWith("file:")) {
    const path = type.slice("file:".length);
    if (!path.startsWith("/") && !path.startsWith(".")) throw usageError(`--source file:PATH needs a path`);
    return { type: "file", path };
  }
  if (type === "file") {
    if (base.type !== "file") throw usageError(`--source file needs a path: --source file:PATH`);
    return base;
  }
  if (type === "onepassword") return { type, ...token };
  if (type === "connect") {
    const host = flags.connectHost ?? (base.type === "connect" ? base.host : undefined);
    if (!host) throw usageError("the connect source needs --connect-host URL (or source.host in the spec)");
    const listenerUser = base.type === "connect" ? base.listenerUser : undefined;
    return { type, host, ...token, ...(listenerUser !== undefined ? { listenerUser } : {}) };
  }
  throw usageError(`unknown source "${type}" (use onepassword, connect or file:PATH)`);
}

/**
 * Build the backend. A token not passed in is loaded here (loadToken: a systemd credential
 * or --token-file). User mode passes the token it already holds: the wrapper's descriptor
 * or the user's own file, both parsed by token.ts's tokenFromText.
 */
export async function createSource(config: SourceConfig, options: { log: Logger; token?: string }): Promise<Source> {
  switch (config.type) {
    case "file":
      return createFileSource(config.path);
    case "onepassword": {
      const token = options.token ?? (await loadToken({ file: config.tokenFile, credential: config.tokenCredential ?? "op-token" }));
      if (!token.startsWith("ops_")) throw configError('the 1Password token is not a service account token (it must start with "ops_")');
      const { createOnePasswordSource } = await import("./onepassword.js");
      return createOnePasswordSource(token);
    }
    case "connect": {
      const token =
        options.token ?? (await loadToken({ file: config.tokenFile, credential: config.tokenCredential ?? "op-connect-token" }));
      const { createConnectSource } = await import("./connect.js");
      const listenerUid = config.listenerUser === undefined ? undefined : (await import("../accounts.js")).lookupUid(config.listenerUser);
      return createConnectSource({ host: config.host, token, listenerUid });
    }
  }
}
