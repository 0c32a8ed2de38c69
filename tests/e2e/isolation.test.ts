// The harness's network isolation: each container has its own loopback, so a server a test (or
// another suite run) starts on the host never answers a container by accident; a test reaches
// the container only through an explicit forward, which refuses again once closed.
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootScenario, describeE2E, type Scenario } from "./scenario.js";

describeE2E("e2e harness: a private loopback per container", () => {
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
    (
      await s.c.cx([
        "/usr/local/bin/node",
        "-e",
        `
      const c = require("node:net").connect(${port}, "127.0.0.1");
      let got = ""; c.on("data", (b) => (got += b)); c.on("end", () => console.log(got.trim()));
      c.on("error", (e) => console.log(e.code));`,
      ])
    ).stdout.trim();

  it("a server on the host's loopback is not reachable from the container", async () => {
    expect(await dialInside()).toBe("ECONNREFUSED");
  });

  it("a forward reaches it, and the port refuses again once the forward is closed", async () => {
    const forward = await s.c.forward(port, port);
    expect(await dialInside()).toBe("hello from the host");
    await forward.close();
    expect(await dialInside()).toBe("ECONNREFUSED");
  });
});
