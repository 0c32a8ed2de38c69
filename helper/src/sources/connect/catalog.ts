/**
 * Vault and item lookups for one batch, each done once (memoised promises), concurrently.
 * Names may be IDs: those are tried directly first, as `op` does; when vault and item both
 * look like IDs the item is fetched in one request. Titles are tried with the server's exact
 * `title eq` filter first, then by searching the full list case-insensitively.
 */
import { configError } from "../../errors.js";
import type { Logger } from "../../log.js";
import type { SecretReference } from "../../reference.js";
import {
  asArray,
  asItem,
  asObject,
  enc,
  titleFilter,
  type ConnectItem,
  type ConnectItemSummary,
  type ConnectVault,
  type Get,
} from "./api.js";
import { looksLikeId, pickByName, pickValue, ReferenceProblem } from "./fields.js";

export interface CatalogOptions {
  readonly get: Get;
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** The base URL as messages show it. */
  readonly display: string;
  /** Called with every error that is not a reference problem (it may stop the batch), then rethrown. */
  readonly fatal: (error: unknown) => never;
}

/** A batch's lookups: `resolve` gives one reference's value or throws (ReferenceProblem or fatal). */
export function createCatalog(options: CatalogOptions): { resolve(ref: SecretReference): Promise<string> } {
  const { signal, log, display, fatal } = options;
  const get = (path: string, allowMissing: boolean) => options.get(path, signal, log, allowMissing);
  const itemPath = (vaultId: string, itemId: string) => `/v1/vaults/${enc(vaultId)}/items/${enc(itemId)}`;

  const vaults = new Map<string, Promise<string>>(); // name (lowercase) → vault id
  const itemIds = new Map<string, Promise<string>>(); // vaultId + item name (lowercase) → item id
  const items = new Map<string, Promise<ConnectItem>>(); // vaultId/itemId → full item
  const probes = new Map<string, Promise<ConnectItem | undefined>>(); // vault/item as written → item

  const fetchItem = (vaultId: string, itemId: string, known?: ConnectItem): Promise<ConnectItem> => {
    const key = `${vaultId}/${itemId}`;
    let pending = items.get(key);
    if (!pending) {
      const fresh = () =>
        get(itemPath(vaultId, itemId), false).then((response) => {
          if (response.status === 404) throw new ReferenceProblem("missing", "item not found (deleted while resolving?)");
          return asItem(response.body);
        }, fatal);
      const probe = probes.get(key);
      pending = known ? Promise.resolve(known) : probe ? probe.then((item) => item ?? fresh()) : fresh();
      items.set(key, pending);
    }
    return pending;
  };

  /**
   * Names that look like IDs: GET the item by vault and item ID, once per pair. Undefined
   * when the server has no such pair (then the names are looked up as titles).
   */
  const probeItem = (vaultId: string, itemId: string): Promise<ConnectItem | undefined> => {
    const key = `${vaultId}/${itemId}`;
    let pending = probes.get(key);
    if (!pending) {
      pending = get(itemPath(vaultId, itemId), true).then((response) => {
        if (response.status >= 300) return undefined;
        const item = asItem(response.body);
        void fetchItem(vaultId, item.id, item); // keep it so it is not fetched again
        return item;
      }, fatal);
      probes.set(key, pending);
    }
    return pending;
  };

  const findVault = async (name: string): Promise<string> => {
    if (looksLikeId(name)) {
      const response = await get(`/v1/vaults/${enc(name)}`, true);
      if (response.status < 300) return asObject<ConnectVault>(response.body, "vault").id;
    }
    const listVaults = async (path: string) => {
      const response = await get(path, false);
      if (response.status === 404) {
        throw configError(
          `the server at ${display} has no /v1/vaults endpoint; is the host a 1Password Connect server (and its URL right)?`,
        );
      }
      return asArray<ConnectVault>(response.body, "vault list");
    };
    let matches = pickByName(await listVaults(`/v1/vaults?filter=${enc(titleFilter(name))}`), (v) => v.name, name);
    if (matches.length === 0) matches = pickByName(await listVaults("/v1/vaults"), (v) => v.name, name);
    const [first, second] = matches;
    if (!first) throw new ReferenceProblem("missing", `vault "${name}" not found (or the Connect token cannot see it)`);
    if (second) throw new ReferenceProblem("ambiguous", `more than one vault is named "${name}"; use the vault's ID`);
    return first.id;
  };

  const lookupVault = (name: string): Promise<string> => {
    const key = name.toLowerCase();
    let pending = vaults.get(key);
    if (!pending) {
      pending = findVault(name).catch(fatal);
      vaults.set(key, pending);
    }
    return pending;
  };

  const findItemId = async (vaultId: string, vaultName: string, name: string): Promise<string> => {
    if (looksLikeId(name)) {
      // One request gives the full item (kept by probeItem so it is not fetched again).
      const item = await probeItem(vaultId, name);
      if (item) return item.id;
    }
    const itemsPath = `/v1/vaults/${enc(vaultId)}/items`;
    const listItems = async (path: string) => {
      const response = await get(path, false);
      if (response.status === 404) throw new ReferenceProblem("missing", `vault "${vaultName}" not found (it disappeared while resolving)`);
      return asArray<ConnectItemSummary>(response.body, "item list");
    };
    let matches = pickByName(await listItems(`${itemsPath}?filter=${enc(titleFilter(name))}`), (i) => i.title, name);
    if (matches.length === 0) matches = pickByName(await listItems(itemsPath), (i) => i.title, name);
    const [first, second] = matches;
    if (!first) throw new ReferenceProblem("missing", `item "${name}" not found in vault "${vaultName}"`);
    if (second) throw new ReferenceProblem("ambiguous", `more than one item in vault "${vaultName}" is named "${name}"; use the item's ID`);
    return first.id;
  };

  const lookupItem = (vaultId: string, vaultName: string, name: string): Promise<ConnectItem> => {
    const key = `${vaultId}/${name.toLowerCase()}`;
    let pending = itemIds.get(key);
    if (!pending) {
      pending = findItemId(vaultId, vaultName, name).catch(fatal);
      itemIds.set(key, pending);
    }
    return pending.then((itemId) => fetchItem(vaultId, itemId));
  };

  return {
    async resolve(ref) {
      if (looksLikeId(ref.vault) && looksLikeId(ref.item)) {
        // Both IDs: one request instead of two in sequence; titles only if that finds nothing.
        const item = await probeItem(ref.vault, ref.item);
        if (item) return pickValue(item, ref);
      }
      const vaultId = await lookupVault(ref.vault);
      const item = await lookupItem(vaultId, ref.vault, ref.item);
      return pickValue(item, ref);
    },
  };
}
