// `npx vitest run --config bench/agent/vitest.config.mts`: the agent boot-storm benchmark
// (real systemd in nspawn, as root; see storm.test.ts). Not part of `npm test`.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: { include: ["bench/agent/*.test.ts"], pool: "forks", maxWorkers: 1, testTimeout: 900_000, hookTimeout: 300_000 },
});
