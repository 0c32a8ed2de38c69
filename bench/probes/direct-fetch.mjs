// What-if probe: the CLI's fetch path without the command-line parser. It calls the compiled
// runFetch as helper/dist/cli.js does for `fetch --spec FILE`, minus any argument parsing, to show
// what a parser-free fast path for `fetch` would cost.
//   node bench/probes/direct-fetch.mjs SPEC
import { runFetch } from "../../helper/dist/commands/fetch.js";
import { createLogger } from "../../helper/dist/log.js";

const log = createLogger();
let code = 0;
try {
  await runFetch({ specFile: process.argv[2], overrides: {}, deadlineSeconds: 45, serialize: false, log });
} catch (error) {
  log.error(error instanceof Error ? error.message : String(error));
  code = 1;
}
process.exit(code);
