// Security issue 13, item 4: `doctor` flags a plain-http Connect host whose loopback port a
// stranger holds, and plain http off the host.
import { createServer, type Server } from "node:net";
import { execa } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { cliPath, createHost, describeAsRoot, type Account, type Host } from "./harness.js";

describeAsRoot("doctor: the Connect host", () => {
  let host: Host;
  let u0: Account;

  beforeAll(async () => {
    host = await createHost({ users: 1 });
    [u0] = host.users as [Account];
    host.writeMapfile(`${u0.name} op://V/A/one one.txt\n`);
  });
  afterAll(async () => {
    await host?.destroy();
  });

  const doctor = () =>
    execa(
      process.execPath,
      [cliPath(), "doctor", "--config-dir", host.configDir, "--wrapper", host.wrapper, "--service-user", host.svc.name],
      { reject: false },
    );
  const connectLine = (stdout: string) => stdout.split("\n").find((line) => line.includes("connect host:"));

  /** A listener on a free loopback port, opened by `user` (root when undefined), until stopped. */
  async function listenAs(user: Account | undefined): Promise<{ port: number; stop: () => Promise<void> }> {
    if (!user) {
      const server: Server = createServer();
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return { port: (server.address() as { port: number }).port, stop: () => new Promise((resolve) => server.close(() => resolve())) };
    }
    const script =
      "const s=require('net').createServer().listen(0,'127.0.0.1',()=>console.log(s.address().port));process.on('SIGTERM',()=>process.exit(0))";
    const child = host.runAs(user, process.execPath, ["-e", script]);
    const port = await new Promise<number>((resolve) =>
      child.stdout.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim()))),
    );
    return {
      port,
      stop: async () => {
        child.kill("SIGTERM");
        await child;
      },
    };
  }

  it("UNSAFE (78) when another user's process holds the loopback port", async () => {
    const squatter = await listenAs(u0);
    try {
      host.writeConfig({ source: { type: "connect", host: `http://127.0.0.1:${squatter.port}` } });
      const r = await doctor();
      expect(connectLine(r.stdout)).toMatch(
        new RegExp(
          `^UNSAFE  connect host: http://127\\.0\\.0\\.1:${squatter.port}: the server listening there runs as uid ${u0.uid}, not root, ${host.svc.name}`,
        ),
      );
      expect(r.exitCode).toBe(78);
      host.writeConfig({ source: { type: "connect", host: `http://127.0.0.1:${squatter.port}`, listenerUser: u0.name } });
      expect(connectLine((await doctor()).stdout)).toMatch(/^ok {6}connect host: .*server run by uid/);
    } finally {
      await squatter.stop();
    }
  });

  it("ok for a root-run server, and for nothing listening (fetch refuses a stranger later)", async () => {
    const server = await listenAs(undefined);
    const url = `http://127.0.0.1:${server.port}`;
    host.writeConfig({ source: { type: "connect", host: url } });
    expect(connectLine((await doctor()).stdout)).toBe(`ok      connect host: ${url}: plain http on loopback, server run by uid 0`);
    await server.stop();
    expect(connectLine((await doctor()).stdout)).toMatch(/^ok {6}connect host: .*nothing listens there now/);
  });

  it("UNSAFE for plain http to another host; ok for https", async () => {
    host.writeConfig({ source: { type: "connect", host: "http://connect.example.org:8080" } });
    const r = await doctor();
    expect(connectLine(r.stdout)).toMatch(/^UNSAFE {2}connect host: .*plain http to a non-loopback host/);
    expect(r.exitCode).toBe(78);
    host.writeConfig({ source: { type: "connect", host: "https://connect.example.org" } });
    expect(connectLine((await doctor()).stdout)).toBe("ok      connect host: https://connect.example.org: https");
  });
});
