/**
 * The test backend's content (the `file` source's JSON vault) and a tiny resolver for the
 * expected values, so every assertion compares against what the backend holds.
 */
export interface VaultItem {
  fields?: Record<string, string>;
  sections?: Record<string, Record<string, string>>;
}
export interface Vault {
  vaults: Record<string, { items: Record<string, VaultItem> }>;
}

/** Values that break naive quoting somewhere: shell, systemd's EnvironmentFile=, JSON, logs. */
export const nasty: Record<string, string> = {
  n1: `it's "quoted" 'twice'`,
  n2: "back\\slash \\\\ double \\n not-a-newline \\",
  n3: "$HOME ${USER} $(id) $$ $",
  n4: "`id` and `` empty ``",
  n5: "line one\nline two\n\nline four\n",
  n6: "cr\rin the middle and crlf\r\n",
  n7: "\ttab\tseparated\t",
  n8: "héllo wörld ✓ 🔐 日本語 ﷽",
  n9: "=starts=with=equals==",
  n10: "",
  n11: "  leading and trailing spaces  ",
  n12: "#;not a comment %h %n %% ${A:-b} \\\" \\' \\` \\$ end\\",
};

export function demoVault(overrides: Partial<Record<"static" | "dynamic" | "storm" | "connect", string>> = {}): Vault {
  return {
    vaults: {
      Demo: {
        items: {
          static: { fields: { password: overrides.static ?? "static-v1 with spaces & $ymbols", username: "static-user" } },
          nasty: { fields: { ...nasty }, sections: { more: { quote: `"'\`$\\` } } },
          storm: { fields: { password: overrides.storm ?? "storm-password" } },
          dynamic: { fields: { password: overrides.dynamic ?? "dynamic-v1" } },
          connect: { fields: { password: overrides.connect ?? "connect-v1" } },
          alice: { fields: { token: "alice-token" } },
          bob: { fields: { token: "bob-token" } },
        },
      },
    },
  };
}

/** Resolve `op://vault/item/[section/]field` against a vault, as the `file` source should. */
export function resolveRef(vault: Vault, ref: string): string {
  const m = ref.match(/^op:\/\/([^/]+)\/([^/]+)\/(?:([^/]+)\/)?([^/?]+)$/);
  if (!m) throw new Error(`unsupported reference in test: ${ref}`);
  const [, v, i, s, f] = m;
  const item = vault.vaults[v!]?.items[i!];
  const value = s ? item?.sections?.[s]?.[f!] : item?.fields?.[f!];
  if (value === undefined) throw new Error(`test vault has no ${ref}`);
  return value;
}

/** Every `{{ op://… }}` in a template, replaced by the vault's value. */
export function renderTemplate(vault: Vault, content: string): string {
  return content.replace(/\{\{\s*(op:\/\/[^\s}]+)\s*\}\}/g, (_, ref: string) => resolveRef(vault, ref));
}
