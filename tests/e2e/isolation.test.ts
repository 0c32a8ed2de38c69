// The harness's isolation from the host. Network: each container has its own loopback, so a
// server a test (or another suite run) starts on the host never answers a container by accident;
// a test reaches the container only through an explicit forward, which refuses again once closed.
// Accounts: containers share the host's uids, so the accounts created inside get uids the host
// never hands out (a host test ending "every process of uid N" must not hit a container's).
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { namedAccounts, specsOf } from "./render-units.js";
import { bootScenario, containerAccountIds, describeE2E, type Scenario } from "./scenario.js";

describeE2E("e2e harness: isolation from the host", () => {
  let s: Scenario;
  let host: Server;
  let port = 0;
  beforeAll(async () => {
    s = await bootScenario("network");
    host = createServer((socket) => socket.end("hello from the host\n"));
    await new Promise<void>((r) => host.listen(0, "127.0.0.1", () => r()));
    port = (host.address() as { port: number }).port;
  }, 120_000);
  afterAll(async () => {
    await new Promise<void>((r) => host?.close(() => r()));
    await s?.c.teardown();
  }, 60_000);

  /** Connect from inside the container to its 127.0.0.1:port; what it read, or the error code. */
  const dialInside = async () =>
    (await s.c.cx(["/usr/local/bin/node", "-e", `
      const c = require("node:net").connect(${port}, "127.0.0.1");
      let got = ""; c.on("data", (b) => (got += b)); c.on("end", () => console.log(got.trim()));
      c.on("error", (e) => console.log(e.code));`])).stdout.trim();

  it("a server on the host's loopback is not reachable from the container", async () => {
    expect(await dialInside()).toBe("ECONNREFUSED");
  });

  it("a forward reaches it, and the port refuses again once the forward is closed", async () => {
    const forward = await s.c.forward(port, port);
    expect(await dialInside()).toBe("hello from the host");
    await forward.close();
    expect(await dialInside()).toBe("ECONNREFUSED");
  });

  it("accounts created in the container get uids outside every range the host allocates from", async () => {
    const defs = readFileSync("/etc/login.defs", "utf8");
    const def = (key: string, fallback: number) => Number(new RegExp(`^${key}\\s+(\\d+)`, "m").exec(defs)?.[1] ?? fallback);
    const uidMin = def("UID_MIN", 1000);
    const hostRanges = [[def("SYS_UID_MIN", 101), def("SYS_UID_MAX", uidMin - 1)], [uidMin, def("UID_MAX", 60000)], [61184, 65519]];
    const hostUids = new Set(readFileSync("/etc/passwd", "utf8").split("\n").filter(Boolean).map((l) => Number(l.split(":")[2])));
    await s.c.cx(["useradd", "--system", "--no-create-home", "e2e-sys"]);
    await s.c.cx(["useradd", "--no-create-home", "e2e-user"]);
    const { users } = namedAccounts(s.golden, [...specsOf(s.golden).values()]);
    expect(users.size, "the golden units name accounts").toBeGreaterThan(0);
    const created = new Map<string, number>();
    for (const user of [...users, "e2e-sys", "e2e-user"]) created.set(user, await s.uid(user));
    const clashes = [...created].filter(([, uid]) => hostUids.has(uid) || hostRanges.some(([lo, hi]) => uid >= lo! && uid <= hi!));
    expect(clashes, `host ranges ${JSON.stringify(hostRanges)}`).toEqual([]);
    expect(created.get("e2e-user")).toBeGreaterThanOrEqual(containerAccountIds.normal[0]);
    expect(created.get("e2e-sys")).toBeGreaterThanOrEqual(containerAccountIds.system[0]);
  });
});
