// Probe: the bare cost of @1password/sdk in a fresh Node process, without the CLI.
//   node bench/probes/sdk.mjs import            import only (reads + compiles the WASM)
//   node bench/probes/sdk.mjs client TOKENFILE  import + createClient (fails offline: the
//                                               token's sign-in address is a closed port)
import { readFileSync } from "node:fs";

const [mode, tokenFile] = process.argv.slice(2);
const sdk = await import("@1password/sdk");
if (mode === "client") {
  const auth = readFileSync(tokenFile, "utf8").trim();
  try {
    await sdk.createClient({ auth, integrationName: "homelab-secrets-bench", integrationVersion: "0.0.0" });
    process.stderr.write("unexpected: createClient succeeded offline\n");
    process.exit(1);
  } catch {
    // expected: no network at the token's sign-in address
  }
} else if (mode !== "import") {
  process.stderr.write("usage: sdk.mjs import | client TOKENFILE\n");
  process.exit(64);
}
process.exit(0);
