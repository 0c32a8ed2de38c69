// Fixtures for the benchmark: file vaults and specs of N secrets, a Connect vault with 10
// secrets over 3 items, tokens. Everything lives under one temp dir the caller removes.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const perItem = 100;

function value(i) {
  return `v${String(i).padStart(4, "0")}-${randomBytes(12).toString("hex")}`;
}

/** A file vault "Bench" holding `count` fields, 100 per item (item000, item001, …). */
export function writeFileVault(dir, count) {
  const items = {};
  const refs = [];
  for (let i = 0; i < count; i++) {
    const item = `item${String(Math.floor(i / perItem)).padStart(3, "0")}`;
    const field = `f${String(i % perItem).padStart(3, "0")}`;
    (items[item] ??= { fields: {} }).fields[field] = value(i);
    refs.push(`op://Bench/${item}/${field}`);
  }
  const path = join(dir, "vault.json");
  writeFileSync(path, JSON.stringify({ vaults: { Bench: { items } } }));
  return { path, refs };
}

/**
 * A spec resolving the first `count` refs, one raw file per secret (layout "files"), or all
 * of them as variables of one env file (layout "env").
 */
export function writeSpec(dir, name, { refs, count, source, outputDir, layout = "files" }) {
  const spec = { version: 1, name, outputDir, dirMode: "0750", source };
  const chosen = refs.slice(0, count);
  if (chosen.length < count) throw new Error(`only ${refs.length} refs for a spec of ${count}`);
  if (layout === "env") {
    spec.envFiles = {
      "all.env": { mode: "0400", vars: Object.fromEntries(chosen.map((ref, i) => [`S${String(i).padStart(4, "0")}`, ref])) },
    };
  } else {
    spec.files = Object.fromEntries(chosen.map((ref, i) => [`s${String(i).padStart(4, "0")}`, { ref, mode: "0400" }]));
  }
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(spec, null, 1));
  return path;
}

/** 10 secrets spread over 3 items (4 + 3 + 3, one item with a section), vault "Homelab". */
export function connectVault() {
  const vault = {
    vaults: {
      Homelab: {
        items: {
          Transmission: { fields: { username: "transmission", password: value(1), "rpc-token": value(2), "peer-id": value(3) } },
          Postgres: { fields: { username: "app", password: value(4), host: "db.lan" } },
          Grafana: { fields: { password: value(5) }, sections: { oauth: { "client-id": value(6), "client-secret": value(7) } } },
        },
      },
    },
  };
  const refs = [
    "op://Homelab/Transmission/username",
    "op://Homelab/Transmission/password",
    "op://Homelab/Transmission/rpc-token",
    "op://Homelab/Transmission/peer-id",
    "op://Homelab/Postgres/username",
    "op://Homelab/Postgres/password",
    "op://Homelab/Postgres/host",
    "op://Homelab/Grafana/password",
    "op://Homelab/Grafana/oauth/client-id",
    "op://Homelab/Grafana/oauth/client-secret",
  ];
  return { vault, refs };
}

/**
 * A well-formed service-account token ("ops_" + unpadded base64 of the JSON the SDK expects)
 * whose sign-in address is a closed local port: the SDK loads, creates its client and fails
 * on the first request without touching any network beyond 127.0.0.1.
 */
export function serviceAccountToken(port) {
  const b64url = (bytes) => bytes.toString("base64url");
  const body = {
    signInAddress: `127.0.0.1:${port}`,
    email: "svc@example.invalid",
    secretKey: "A3-ABCDEF-GHJKLM-NPQRS-TVWXY-Z2345-6789A",
    srpX: "a".repeat(64),
    muk: { alg: "A256GCM", ext: true, k: b64url(randomBytes(32)), key_ops: ["encrypt", "decrypt"], kty: "oct", kid: "mp" },
    userAuth: { method: "SRPg-4096", alg: "PBES2g-HS256", iterations: 100000, salt: b64url(randomBytes(16)) },
    deviceUuid: "abcdefghijklmnopqrstuvwxyz",
    throttleSecret: { seed: "a".repeat(64), uuid: "abcdefghijklmnopqrstuvwxyz" },
  };
  return `ops_${Buffer.from(JSON.stringify(body)).toString("base64").replace(/=+$/, "")}`;
}

export function writeSecretFile(path, text) {
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

export function mkdirp(path) {
  mkdirSync(path, { recursive: true });
  return path;
}
