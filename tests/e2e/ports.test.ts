// claimPort: the cross-process lock that lets both distros' projects (and concurrent suite
// runs) use the golden units' fixed loopback ports without answering each other's containers.
import { spawn } from "node:child_process";
import { expect, it } from "vitest";
import { claimPort, describeE2E, portLockCommand } from "./scenario.js";

// Port 1 (tcpmux) is never served by a test; only its lock file is used here.
const port = 1;
const settled = async (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describeE2E("e2e harness: fixed loopback ports are claimed across processes", () => {
  it("a second claim waits until the first is released", async () => {
    const release = await claimPort(port);
    const second = claimPort(port);
    expect(await settled(second, 500), "second claim while the first is held").toBe(false);
    await release();
    await (await second)();
  });

  it("a claim is freed when the process that holds it is killed", async () => {
    // Another process starts the same lock holder claimPort starts, then dies by SIGKILL.
    const [cmd, args] = portLockCommand(port);
    const owner = spawn(process.execPath, ["-e", `require("node:child_process").spawn(${JSON.stringify(cmd)}, ${JSON.stringify(args)}, { stdio: ["pipe", "inherit", "inherit"] }); setInterval(() => {}, 1e6);`], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((r) => owner.stdout.once("data", () => r()));
      const mine = claimPort(port);
      expect(await settled(mine, 500), "claim while the other process holds it").toBe(false);
      owner.kill("SIGKILL");
      await (await mine)();
    } finally {
      owner.kill("SIGKILL");
    }
  });
});
