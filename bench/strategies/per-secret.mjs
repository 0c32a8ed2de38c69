// The peers' strategy, in one process: what op-secret-manager does per mapfile line (and what
// a shell loop of `op read` does per call), against a 1Password Connect server: for each
// secret, in sequence, look up the vault by name, look up the item by name, fetch the item,
// pick the field, write the file atomically. No caching, no concurrency, no deduplication.
//   node bench/strategies/per-secret.mjs --host URL --token-file F --out DIR REF…
import { open, rename } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  options: { host: { type: "string" }, "token-file": { type: "string" }, out: { type: "string" } },
  allowPositionals: true,
});
const token = readFileSync(values["token-file"], "utf8").trim();
const base = values.host.replace(/\/$/, "");
const headers = { authorization: `Bearer ${token}` };

async function get(path) {
  const response = await fetch(`${base}${path}`, { headers });
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return response.json();
}
const filter = (title) => encodeURIComponent(`title eq "${title}"`);

let index = 0;
for (const ref of positionals) {
  const [vaultName, itemName, ...rest] = ref.slice("op://".length).split("/");
  const [vault] = await get(`/v1/vaults?filter=${filter(vaultName)}`);
  const [summary] = await get(`/v1/vaults/${vault.id}/items?filter=${filter(itemName)}`);
  const item = await get(`/v1/vaults/${vault.id}/items/${summary.id}`);
  const fieldName = rest[rest.length - 1];
  const sectionName = rest.length === 2 ? rest[0] : undefined;
  const sectionId = sectionName && item.sections.find((s) => s.label === sectionName)?.id;
  const field = item.fields.find((f) => f.label === fieldName && (sectionName === undefined || f.section?.id === sectionId));
  if (!field) throw new Error(`${ref}: field not found`);
  const target = join(values.out, `s${index++}`);
  const handle = await open(`${target}.tmp`, "wx", 0o600);
  await handle.writeFile(field.value ?? "");
  await handle.sync();
  await handle.close();
  await rename(`${target}.tmp`, target);
}
