import { configDefaults, defineConfig } from "vitest/config";

// The real-systemd suite (tests/e2e) runs once per Debian release it boots — bookworm's
// systemd 252 and trixie's 257 — as the projects e2e-bookworm and e2e-trixie; every other
// test runs once, in the project "host". Each e2e project picks its rootfs by HS_E2E_DISTRO.
const e2eDistros = ["bookworm", "trixie"] as const;

export default defineConfig({
  test: {
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 300_000,
    reporters: ["default"],
    projects: [
      {
        extends: true,
        test: { name: "host", include: ["tests/**/*.test.ts"], exclude: [...configDefaults.exclude, "tests/e2e/**"] },
      },
      ...e2eDistros.map((distro) => ({
        extends: true,
        test: { name: `e2e-${distro}`, include: ["tests/e2e/**/*.test.ts"], env: { HS_E2E_DISTRO: distro } },
      })),
    ],
  },
});
