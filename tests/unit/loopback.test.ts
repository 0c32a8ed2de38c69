// The socket-table parsing behind the loopback Connect check (security issue 13, item 4).
import { describe, expect, it } from "vitest";
import {
  assertTrustedListener,
  canonicalAddress,
  isLoopbackAddress,
  parseSocketTable,
  serverOwners,
} from "../../helper/src/sources/loopback.js";

const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
// As an x86 (little-endian) kernel prints them: 127.0.0.1:8080 listening as uid 1001, and
// the accepted end of a connection from 127.0.0.1:40000.
const tcp =
  header +
  "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 1 1 0 100 0 0 10 0\n" +
  "   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1001        0 2 1 0 20 4 30 10 -1\n" +
  "   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n";
const tcp6 =
  header +
  "   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   0        0 4 1 0 100 0 0 10 0\n" +
  "   1: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1002        0 5 1 0 100 0 0 10 0\n" +
  "   2: 00000000000000000000000000000000:1F93 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1003        0 6 1 0 100 0 0 10 0\n";

describe("loopback listener check", () => {
  const entries = [...parseSocketTable(tcp, true), ...parseSocketTable(tcp6, true)];

  it("decodes addresses, ports, states and uids (little-endian words)", () => {
    expect(entries.map((e) => `${e.local}:${e.localPort} ${e.remote}:${e.remotePort} ${e.state} ${e.uid}`)).toEqual([
      "127.0.0.1:8080 0.0.0.0:0 0A 1001",
      "127.0.0.1:8080 127.0.0.1:40000 01 1001",
      "127.0.0.1:40000 127.0.0.1:8080 01 0",
      "::1:8081 :::0 0A 0",
      "127.0.0.1:8082 :::0 0A 1002",
      ":::8083 :::0 0A 1003",
    ]);
  });

  it("decodes big-endian words too", () => {
    const be = parseSocketTable(header + "   0: 7F000001:1F90 00000000:0000 0A 0 0 0 42 0 1\n", false);
    expect([be[0]!.local, be[0]!.uid]).toEqual(["127.0.0.1", 42]);
  });

  it("finds the listener and the accepted end, and wildcard listeners on the port", () => {
    expect(serverOwners(entries, { address: "127.0.0.1", port: 8080 }, { address: "127.0.0.1", port: 40000 })).toEqual({
      listeners: [1001],
      accepted: [1001],
    });
    expect(serverOwners(entries, { address: "::ffff:127.0.0.1", port: 8082 }, { address: "::ffff:127.0.0.1", port: 1 }).listeners).toEqual([
      1002,
    ]);
    expect(serverOwners(entries, { address: "::1", port: 8083 }, { address: "::1", port: 1 }).listeners).toEqual([1003]);
  });

  it("refuses (77) a stranger's server and an address nobody listens on; trusts allowed uids", async () => {
    const policy = { allowed: new Set([0]), describe: "root" };
    const server = { address: "127.0.0.1", port: 8080 };
    const client = { address: "127.0.0.1", port: 40000 };
    await expect(assertTrustedListener(server, client, policy, entries)).rejects.toMatchObject({
      exitCode: 77,
      message: expect.stringMatching(/runs as uid 1001, not root/) as unknown,
    });
    await expect(assertTrustedListener({ address: "127.0.0.1", port: 9999 }, client, policy, entries)).rejects.toMatchObject({
      exitCode: 77,
      message: expect.stringMatching(/no listening socket/) as unknown,
    });
    await expect(
      assertTrustedListener(server, client, { allowed: new Set([0, 1001]), describe: "root or 1001" }, entries),
    ).resolves.toBeUndefined();
    await expect(
      assertTrustedListener({ address: "::1", port: 8081 }, { address: "::1", port: 5 }, policy, entries),
    ).resolves.toBeUndefined();
  });

  it("knows loopback addresses", () => {
    expect(["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "[::1]", "0:0:0:0:0:0:0:1"].map(isLoopbackAddress)).toEqual([
      true,
      true,
      true,
      true,
      true,
      true,
    ]);
    expect(["10.0.0.1", "::", "192.0.2.1", "::ffff:10.0.0.1", "fe80::1"].map(isLoopbackAddress)).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(canonicalAddress("::FFFF:127.0.0.1")).toBe("127.0.0.1");
  });
});
