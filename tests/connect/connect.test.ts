// The connect source against the fake Connect server, over real HTTP on 127.0.0.1.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { Agent, ClientRequest, RequestOptions } from "node:http";
import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer, request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HomelabError } from "../../helper/src/errors.js";
import { createLogger } from "../../helper/src/log.js";
import { parseReference } from "../../helper/src/reference.js";
import { createDeadline } from "../../helper/src/retry.js";
import { createConnectSource, defaultMaxResponseBytes, httpModuleFor, parseRetryAfter } from "../../helper/src/sources/connect.js";
import { startFakeConnect, stableId, totp } from "./fake-connect.mjs";

const token = "test-connect-token.eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXRva2VuLWJvZHk";
const otpUri = "otpauth://totp/Homelab:admin?secret=JBSWY3DPEHPK3PXP&issuer=Homelab";
const pkcs8 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAK\n-----END PRIVATE KEY-----\n";
const openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQFAKE=\n-----END OPENSSH PRIVATE KEY-----\n";

const vault = {
  vaults: {
    Homelab: {
      items: {
        Transmission: {
          fields: { username: "admin", password: "pw-transmission", "API Key": "key-transmission" },
          sections: { Admin: { email: "admin@example.org", pin: "pin-admin" }, Other: { pin: "pin-other" } },
        },
        Grafana: { fields: { password: "pw-grafana", "admin user": "grafana-admin" } },
        Nextcloud: { fields: { password: "pw-nextcloud", dup: "dup-top" }, sections: { S: { dup: "dup-section" } } },
        Router: { fields: { "one-time password": otpUri, password: "pw-router" } },
        Deploy: { fields: { "private key": pkcs8, "openssh key": openssh } },
      },
    },
    "Second Vault": { items: { "Db Creds": { fields: { password: "pw-db" } } } },
  },
};
const allValues = [
  "admin",
  "pw-transmission",
  "key-transmission",
  "admin@example.org",
  "pin-admin",
  "pin-other",
  "pw-grafana",
  "grafana-admin",
  "pw-nextcloud",
  "dup-top",
  "dup-section",
  "pw-router",
  "pw-db",
  "JBSWY3DPEHPK3PXP",
];

type Fake = Awaited<ReturnType<typeof startFakeConnect>>;
let fake: Fake;
let lines: string[] = [];
const log = createLogger({ verbose: true, journal: false, write: (line) => void lines.push(line) });
const fastRetry = { retries: 3, minTimeoutMs: 20, maxTimeoutMs: 50 };

beforeAll(async () => {
  fake = await startFakeConnect({ vault, token });
});
afterAll(async () => {
  await fake.close();
});
afterEach(() => {
  fake.setFaults([]);
  fake.setLatency(0);
  fake.clearRequests();
  // Whatever happened in a test, neither the token nor a value may have reached a log line.
  for (const line of lines) {
    expect(line).not.toContain(token);
    for (const value of allValues) if (value !== "admin") expect(line).not.toContain(value);
  }
  lines = [];
});

function source(overrides: Partial<Parameters<typeof createConnectSource>[0]> = {}) {
  return createConnectSource({ host: fake.url, token, retry: fastRetry, ...overrides });
}

async function resolve(raws: string[], options: { deadlineSeconds?: number; src?: ReturnType<typeof source> } = {}) {
  const deadline = createDeadline(options.deadlineSeconds ?? 20);
  try {
    return await (options.src ?? source()).resolveAll(
      raws.map((raw) => parseReference(raw)),
      { signal: deadline.signal, log },
    );
  } finally {
    deadline.dispose();
  }
}

async function failure(promise: Promise<unknown>): Promise<HomelabError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(HomelabError);
    return error as HomelabError;
  }
  throw new Error("expected the promise to reject");
}

/** Wait until `done()` or `ms` pass (requests destroyed in flight may still reach the server). */
async function settle(done: () => boolean, ms = 300) {
  const until = performance.now() + ms;
  while (!done() && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
}

const itemPath = (vaultName: string, item: string) => `/v1/vaults/${fake.ids.vaults[vaultName]}/items/${fake.ids.items[vaultName]![item]}`;

describe("resolving", () => {
  it("resolves top-level fields, section fields and names with spaces", async () => {
    const values = await resolve([
      "op://Homelab/Transmission/password",
      "op://Homelab/Transmission/username",
      "op://Homelab/Transmission/API Key",
      "op://Homelab/Transmission/Admin/email",
      "op://Homelab/Transmission/Other/pin",
      "op://Second Vault/Db Creds/password",
    ]);
    expect(Object.fromEntries(values)).toEqual({
      "op://Homelab/Transmission/password": "pw-transmission",
      "op://Homelab/Transmission/username": "admin",
      "op://Homelab/Transmission/API Key": "key-transmission",
      "op://Homelab/Transmission/Admin/email": "admin@example.org",
      "op://Homelab/Transmission/Other/pin": "pin-other",
      "op://Second Vault/Db Creds/password": "pw-db",
    });
  });

  it("accepts IDs for vault, item, section and field, as op does", async () => {
    const vaultId = fake.ids.vaults["Homelab"]!;
    const itemId = fake.ids.items["Homelab"]!["Transmission"]!;
    const sectionId = fake.ids.sections["Homelab"]!["Transmission"]!["Admin"]!;
    const emailFieldId = stableId("field", "Homelab", "Transmission", sectionId, "email");
    const apiKeyId = stableId("field", "Homelab", "Transmission", "", "API Key");
    const values = await resolve([
      `op://${vaultId}/${itemId}/password`,
      `op://${vaultId}/Transmission/${sectionId}/${emailFieldId}`,
      `op://Homelab/${itemId}/${apiKeyId}`,
    ]);
    expect([...values.values()]).toEqual(["pw-transmission", "admin@example.org", "key-transmission"]);
    // An item ID is fetched directly: no title search for it, and the item is fetched once.
    expect(fake.requestsTo(/\/items\?filter=/).map((r) => r.query["filter"])).toEqual(['title eq "Transmission"']);
    expect(fake.requestsTo(itemPath("Homelab", "Transmission"))).toHaveLength(1);
    expect(fake.requestsTo(`/v1/vaults/${vaultId}`)).toHaveLength(1);
  });

  it("falls back to a title search when a 26-character name is not an ID", async () => {
    const error = await failure(resolve(["op://Homelab/abcdefghijklmnopqrstuvwxyz/password"]));
    expect(error.exitCode).toBe(69);
    expect(error.message).toContain('item "abcdefghijklmnopqrstuvwxyz" not found in vault "Homelab"');
  });

  it("vault and item IDs: one request for the item, shared by every reference to it", async () => {
    const vaultId = fake.ids.vaults["Homelab"]!;
    const itemId = fake.ids.items["Homelab"]!["Transmission"]!;
    const values = await resolve([`op://${vaultId}/${itemId}/password`, `op://${vaultId}/${itemId}/Admin/email`]);
    expect([...values.values()]).toEqual(["pw-transmission", "admin@example.org"]);
    expect(fake.requests.map((r) => r.path + r.search)).toEqual([itemPath("Homelab", "Transmission")]);
  });

  it("vault and item names that only look like IDs: a 404 on the direct fetch falls back to titles", async () => {
    const vaultName = "abcdefghijklmnopqrstuvwxyz";
    const itemName = "zyxwvutsrqponmlkjihgfedcba";
    const other = await startFakeConnect({
      vault: { vaults: { [vaultName]: { items: { [itemName]: { fields: { password: "pw-lookalike" } } } } } },
      token,
    });
    try {
      const values = await resolve([`op://${vaultName}/${itemName}/password`], {
        src: createConnectSource({ host: other.url, token, retry: fastRetry }),
      });
      expect(values.get(`op://${vaultName}/${itemName}/password`)).toBe("pw-lookalike");
      const vaultId = other.ids.vaults[vaultName]!;
      expect(other.requests.map((r) => `${r.status} ${r.path}${r.search}`)).toEqual([
        `404 /v1/vaults/${vaultName}/items/${itemName}`, // both look like IDs: tried directly
        `404 /v1/vaults/${vaultName}`,
        `200 /v1/vaults?filter=title eq "${vaultName}"`,
        `404 /v1/vaults/${vaultId}/items/${itemName}`,
        `200 /v1/vaults/${vaultId}/items?filter=title eq "${itemName}"`,
        `200 /v1/vaults/${vaultId}/items/${other.ids.items[vaultName]![itemName]}`,
      ]);
    } finally {
      await other.close();
    }
  });

  it("a vault ID with a missing item ID is 69", async () => {
    const vaultId = fake.ids.vaults["Homelab"]!;
    const error = await failure(resolve([`op://${vaultId}/abcdefghijklmnopqrstuvwxyz/password`]));
    expect(error.exitCode).toBe(69);
    expect(error.message).toContain(`op://${vaultId}/abcdefghijklmnopqrstuvwxyz/password`);
  });

  it("matches names case-insensitively (the filter is exact, so it searches the list)", async () => {
    const values = await resolve(["op://homelab/TRANSMISSION/admin/EMAIL", "op://HOMELAB/grafana/Admin User"]);
    expect([...values.values()]).toEqual(["admin@example.org", "grafana-admin"]);
  });

  it("URL-encodes the title filter", async () => {
    await resolve(["op://Second Vault/Db Creds/password"]);
    const vaultQuery = fake.requests.find((r) => r.path === "/v1/vaults")!;
    expect(vaultQuery.query).toEqual({ filter: 'title eq "Second Vault"' });
    const itemQuery = fake.requests.find((r) => r.path.endsWith("/items"))!;
    expect(itemQuery.query).toEqual({ filter: 'title eq "Db Creds"' });
  });

  it("returns an empty map for no references without a request", async () => {
    expect((await resolve([])).size).toBe(0);
    expect(fake.requests).toHaveLength(0);
  });

  it("refuses an ambiguous field with 65 (tooManyMatchingFields) naming the reference; a section disambiguates", async () => {
    const error = await failure(resolve(["op://Homelab/Nextcloud/dup", "op://Homelab/Nextcloud/password"]));
    expect(error.exitCode).toBe(65);
    expect(error.message).toContain("op://Homelab/Nextcloud/dup");
    expect(error.message).toContain("tooManyMatchingFields");
    expect(error.message).not.toContain("dup-top");
    const values = await resolve(["op://Homelab/Nextcloud/S/dup"]);
    expect(values.get("op://Homelab/Nextcloud/S/dup")).toBe("dup-section");
  });

  it("returns the current TOTP code for ?attribute=otp and ?attribute=totp", async () => {
    const before = totp(otpUri);
    const values = await resolve([
      "op://Homelab/Router/one-time password?attribute=otp",
      "op://Homelab/Router/one-time password?attribute=totp",
    ]);
    const after = totp(otpUri);
    for (const code of values.values()) {
      expect(code).toMatch(/^\d{6}$/);
      expect([before, after]).toContain(code);
    }
    // Without the attribute the field's value is the otpauth URI itself.
    expect((await resolve(["op://Homelab/Router/one-time password"])).get("op://Homelab/Router/one-time password")).toBe(otpUri);
  });

  it("refuses ?attribute=otp on a field that is not a one-time password (65)", async () => {
    const error = await failure(resolve(["op://Homelab/Router/password?attribute=otp"]));
    expect(error.exitCode).toBe(65);
    expect(error.message).toContain("op://Homelab/Router/password?attribute=otp");
    expect(error.message).not.toContain("pw-router");
  });

  it("?ssh-format=openssh: returns an OpenSSH key, refuses a PKCS#8 key clearly (65)", async () => {
    const values = await resolve(["op://Homelab/Deploy/openssh key?ssh-format=openssh"]);
    expect(values.get("op://Homelab/Deploy/openssh key?ssh-format=openssh")).toBe(openssh);
    const error = await failure(resolve(["op://Homelab/Deploy/private key?ssh-format=openssh"]));
    expect(error.exitCode).toBe(65);
    expect(error.message).toMatch(/PKCS#8.*OpenSSH/);
    expect(error.message).not.toContain("PRIVATE KEY-----");
  });
});

describe("batching", () => {
  it("looks each vault up once and fetches each item once, concurrently", async () => {
    fake.setLatency(50);
    const refs = [
      "op://Homelab/Transmission/password",
      "op://Homelab/Transmission/username",
      "op://Homelab/Transmission/API Key",
      "op://Homelab/Transmission/Admin/email",
      "op://Homelab/Transmission/Admin/pin",
      "op://Homelab/Grafana/password",
      "op://Homelab/Grafana/admin user",
      "op://Homelab/Nextcloud/password",
      "op://Homelab/Nextcloud/S/dup",
      "op://homelab/nextcloud/S/DUP",
    ];
    const started = performance.now();
    const values = await resolve(refs);
    const elapsed = performance.now() - started;
    expect(values.size).toBe(10);

    expect(fake.requestsTo("/v1/vaults")).toHaveLength(1); // one vault lookup for 10 references
    const itemFetches = ["Transmission", "Grafana", "Nextcloud"].map((item) => fake.requestsTo(itemPath("Homelab", item)));
    for (const fetches of itemFetches) expect(fetches).toHaveLength(1);
    // Concurrent: every item fetch started before any of them finished.
    const starts = itemFetches.map((f) => f[0]!.start);
    const ends = itemFetches.map((f) => f[0]!.end!);
    expect(Math.max(...starts)).toBeLessThan(Math.min(...ends));
    // 3 round trips on the critical path (vault, item title, item): every item lookup waits only for the vault lookup.
    const vaultDone = fake.requestsTo("/v1/vaults")[0]!.end!;
    expect(itemFetches.every((f) => f[0]!.start >= vaultDone)).toBe(true);
    console.info(`connect batch: 10 refs over 3 items at 50 ms latency took ${Math.round(elapsed)} ms, ${fake.requests.length} requests`);
  });

  it("keeps at most maxConcurrency requests in flight", async () => {
    fake.setLatency(30);
    await resolve(["op://Homelab/Transmission/password", "op://Homelab/Grafana/password", "op://Homelab/Nextcloud/password"], {
      src: source({ maxConcurrency: 1 }),
    });
    const sorted = [...fake.requests].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.start).toBeGreaterThanOrEqual(sorted[i - 1]!.end! - 1);
  });
});

describe("transient failures", () => {
  it("retries 503 twice, then succeeds", async () => {
    const path = itemPath("Homelab", "Grafana");
    fake.setFaults([{ match: path, type: "status", status: 503, times: 2 }]);
    const values = await resolve(["op://Homelab/Grafana/password"]);
    expect(values.get("op://Homelab/Grafana/password")).toBe("pw-grafana");
    expect(fake.requestsTo(path).map((r) => r.status)).toEqual([503, 503, 200]);
    expect(lines.filter((l) => l.includes("attempt") && l.includes("retrying"))).toHaveLength(2);
  });

  it("honours 429 with Retry-After: 1", async () => {
    fake.setFaults([{ match: "/v1/vaults", type: "status", status: 429, retryAfter: 1, times: 1 }]);
    const values = await resolve(["op://Homelab/Grafana/password"]);
    expect(values.size).toBe(1);
    const [first, second] = fake.requestsTo("/v1/vaults");
    expect(first!.status).toBe(429);
    expect(second!.status).toBe(200);
    expect(second!.start - first!.end!).toBeGreaterThanOrEqual(995);
    expect(lines.some((l) => l.includes("asked to wait 1s"))).toBe(true);
  });

  it("retries a connection reset", async () => {
    const path = itemPath("Homelab", "Grafana");
    fake.setFaults([{ match: path, type: "reset", times: 1 }]);
    const values = await resolve(["op://Homelab/Grafana/password"]);
    expect(values.get("op://Homelab/Grafana/password")).toBe("pw-grafana");
    expect(fake.requestsTo(path).map((r) => r.fault ?? "ok")).toEqual(["reset", "ok"]);
  });

  it("times out a request that is never answered and retries it", async () => {
    fake.setFaults([{ match: "/v1/vaults", type: "hang", times: 1 }]);
    const started = performance.now();
    const values = await resolve(["op://Homelab/Grafana/password"], { src: source({ requestTimeoutMs: 300 }) });
    expect(values.size).toBe(1);
    expect(performance.now() - started).toBeGreaterThanOrEqual(300);
    expect(fake.requestsTo("/v1/vaults").map((r) => r.fault ?? "ok")).toEqual(["hang", "ok"]);
  });

  it("a server that never answers is bounded by the run's deadline → 75", async () => {
    fake.setFaults([{ type: "hang" }]);
    const started = performance.now();
    const error = await failure(resolve(["op://Homelab/Grafana/password"], { deadlineSeconds: 2, src: source({ retry: undefined }) }));
    const elapsed = performance.now() - started;
    expect(error.exitCode).toBe(75);
    expect(error.message).toContain("deadline");
    expect(elapsed).toBeGreaterThanOrEqual(1950);
    expect(elapsed).toBeLessThan(3000);
  });

  it("gives up with 75 when every retry fails", async () => {
    fake.setFaults([{ type: "status", status: 503 }]);
    const error = await failure(
      resolve(["op://Homelab/Grafana/password"], { src: source({ retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 } }) }),
    );
    expect(error.exitCode).toBe(75);
    expect(error.message).toContain("HTTP 503");
    expect(fake.requests).toHaveLength(3);
  });

  it("an unreachable host is a transient failure (75)", async () => {
    const closed = await startFakeConnect({ vault, token });
    const url = closed.url;
    await closed.close();
    const error = await failure(
      resolve(["op://Homelab/Grafana/password"], {
        src: createConnectSource({ host: url, token, retry: { retries: 1, minTimeoutMs: 10 } }),
      }),
    );
    expect(error.exitCode).toBe(75);
    expect(error.message).toMatch(/cannot reach the Connect server.*ECONNREFUSED/);
  });
});

describe("permanent failures", () => {
  it("a wrong token is 77, fails fast and never shows the token", async () => {
    const wrong = "wrong-token-value-that-must-not-leak";
    const error = await failure(
      resolve(["op://Homelab/Grafana/password", "op://Second Vault/Db Creds/password"], { src: source({ token: wrong }) }),
    );
    expect(error.exitCode).toBe(77);
    expect(error.message).toContain("Connect rejected the token");
    expect(error.message).not.toContain(wrong);
    expect(error.message).not.toContain(token);
    // The first 401 aborts the rest of the batch: the other reference's request is destroyed
    // in flight, so the server may see it a moment later, or (not yet sent) never.
    await settle(() => fake.requests.length >= 2);
    expect(fake.requests.every((r) => r.status === 401)).toBe(true);
    expect(fake.requests.length).toBeLessThanOrEqual(2); // no retry of a rejected token
    const paths = fake.requests.map((r) => r.path + r.search);
    expect(new Set(paths).size).toBe(paths.length); // no retries
    expect(paths.length).toBeLessThanOrEqual(2);
    for (const line of lines) expect(line).not.toContain(wrong);
  });

  it("403 is 77 as well", async () => {
    fake.setFaults([{ type: "status", status: 403, body: { status: 403, message: "token does not have access" } }]);
    const error = await failure(resolve(["op://Homelab/Grafana/password"]));
    expect(error.exitCode).toBe(77);
    expect(fake.requests).toHaveLength(1);
  });

  it("a token with whitespace inside is refused (78) without echoing it", () => {
    try {
      createConnectSource({ host: fake.url, token: "abc def-secret" });
      expect.unreachable();
    } catch (error) {
      expect((error as HomelabError).exitCode).toBe(78);
      expect((error as Error).message).not.toContain("def-secret");
    }
  });

  it("a bad host URL is a configuration error (78)", () => {
    expect(() => createConnectSource({ host: "connect.local:8080", token })).toThrow(HomelabError);
    expect(() => createConnectSource({ host: "ftp://connect.local", token })).toThrow(/http/);
  });

  it("missing vault, item and field → one 69 naming every missing reference", async () => {
    const refs = [
      "op://Nope/Grafana/password",
      "op://Nope/Other/password",
      "op://Homelab/Missing Item/password",
      "op://Homelab/Grafana/no such field",
      "op://Homelab/Transmission/No Section/pin",
      "op://Homelab/Grafana/password",
    ];
    const error = await failure(resolve(refs));
    expect(error.exitCode).toBe(69);
    for (const ref of refs.slice(0, 5)) expect(error.message).toContain(ref);
    expect(error.message).toContain("5 references not found");
    expect(error.message).not.toMatch(/op:\/\/Homelab\/Grafana\/password[^?]/);
    for (const value of allValues) if (value !== "admin") expect(error.message).not.toContain(value);
    // The missing vault was looked up once for both references that use it.
    expect(fake.requests.filter((r) => r.query["filter"] === 'title eq "Nope"')).toHaveLength(1);
  });

  it("a 69 also mentions unusable references found in the same batch", async () => {
    const error = await failure(resolve(["op://Homelab/Missing/password", "op://Homelab/Nextcloud/dup"]));
    expect(error.exitCode).toBe(69);
    expect(error.message).toContain("op://Homelab/Missing/password");
    expect(error.message).toContain("also unusable: op://Homelab/Nextcloud/dup");
  });

  it("a non-JSON answer is refused without quoting the body", async () => {
    fake.setFaults([{ type: "status", status: 200, body: "<html>pw-grafana</html>" }]);
    const error = await failure(resolve(["op://Homelab/Grafana/password"]));
    expect(error.exitCode).toBe(65);
    expect(error.message).toContain("not JSON");
    expect(error.message).not.toContain("pw-grafana");
  });

  it("a UTF-8 byte order mark before the JSON is ignored, as fetch's text() did", async () => {
    fake.setFaults([{ match: "/v1/vaults", type: "status", status: 200, body: "\uFEFF[]", times: 2 }]);
    const error = await failure(resolve(["op://Homelab/Grafana/password"]));
    expect(error.exitCode).toBe(69); // an empty vault list, not "not JSON"
    expect(error.message).toContain('vault "Homelab" not found');
  });

  it("a redirect is a configuration error, not followed", async () => {
    fake.setFaults([{ type: "status", status: 301, body: "", times: 1 }]);
    const error = await failure(resolve(["op://Homelab/Grafana/password"]));
    expect(error.exitCode).toBe(78);
    expect(fake.requests).toHaveLength(1);
  });
});

describe("HTTP transport (node:http / node:https, not global fetch)", () => {
  it("picks node:https for https:// hosts and node:http otherwise", async () => {
    expect(await httpModuleFor(new URL("https://connect.invalid"))).toBe(await import("node:https"));
    expect(await httpModuleFor(new URL("http://connect.invalid"))).toBe(await import("node:http"));
  });

  it("does not use global fetch", async () => {
    const original = globalThis.fetch;
    globalThis.fetch = () => Promise.reject(new Error("global fetch must not be used"));
    try {
      expect((await resolve(["op://Homelab/Grafana/password"])).size).toBe(1);
    } finally {
      globalThis.fetch = original;
    }
  });

  it("sends Bearer auth over one keep-alive agent per batch, limited to maxConcurrency, destroyed at the end", async () => {
    const seen: { agent: Agent; headers: unknown }[] = [];
    const sockets = new Set<Socket>();
    const http = await import("node:http");
    const request = (url: URL, options: RequestOptions): ClientRequest => {
      seen.push({ agent: options.agent as Agent, headers: options.headers });
      return http.request(url, options).on("socket", (socket) => void sockets.add(socket));
    };
    const values = await resolve(["op://Homelab/Transmission/password", "op://Homelab/Grafana/password"], {
      src: source({ request, maxConcurrency: 3 }),
    });
    expect(values.size).toBe(2);
    expect(seen.length).toBe(fake.requests.length);
    const agent = seen[0]!.agent;
    expect(agent).toBeInstanceOf(http.Agent);
    expect(seen.every((s) => s.agent === agent)).toBe(true);
    // Agent#keepAlive is set by the constructor at run time but not declared by @types/node.
    expect((agent as Agent & { readonly keepAlive?: boolean }).keepAlive).toBe(true);
    expect(agent.maxSockets).toBe(3);
    expect(seen[0]!.headers).toMatchObject({ authorization: `Bearer ${token}` });
    expect(fake.requests.every((r) => r.authorized)).toBe(true);
    // Keep-alive: 5 requests (vault, 2 item searches, 2 items) over at most 2 connections at once.
    expect(fake.requests).toHaveLength(5);
    expect(sockets.size).toBeLessThan(5);
    // The batch destroyed the agent: no socket is left to hold the process open.
    expect([...sockets].every((socket) => socket.destroyed)).toBe(true);
    await settle(() => Object.keys(agent.freeSockets).length === 0);
    expect(Object.keys(agent.sockets)).toHaveLength(0);
    expect(Object.keys(agent.freeSockets)).toHaveLength(0);
  });

  it("the run's abort destroys the request in flight", async () => {
    fake.setFaults([{ type: "hang" }]);
    const error = await failure(resolve(["op://Homelab/Grafana/password"], { deadlineSeconds: 0.3 }));
    expect(error.exitCode).toBe(75);
    expect(error.message).toContain("deadline");
    await settle(() => fake.requests[0]?.end !== undefined);
    const [only] = fake.requests;
    expect(only!.end).toBeDefined(); // the server saw the connection close
    expect(only!.end! - only!.start).toBeLessThan(1000);
  });

  it("refuses an answer over the size limit (65, no retry, body not quoted)", async () => {
    fake.setFaults([{ type: "status", status: 200, body: `{"secret":"pw-grafana","pad":"${"x".repeat(5000)}"}` }]);
    const error = await failure(resolve(["op://Homelab/Grafana/password"], { src: source({ maxResponseBytes: 4096 }) }));
    expect(error.exitCode).toBe(65);
    expect(error.message).toContain("larger than 4 KiB");
    expect(error.message).not.toContain("pw-grafana");
    expect(fake.requests).toHaveLength(1);
  });

  it("stops reading a streamed answer without Content-Length once it passes 16 MiB", async () => {
    expect(defaultMaxResponseBytes).toBe(16 * 1024 * 1024);
    let sent = 0;
    let closedEarly = false;
    const chunk = Buffer.alloc(1024 * 1024, "a");
    const server = createHttpServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }); // chunked: no Content-Length
      res.write("[");
      const pump = () => {
        while (sent < 64 && !res.destroyed) {
          sent += 1;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        if (!res.destroyed) res.end("]");
      };
      res.on("close", () => (closedEarly = !res.writableFinished));
      pump();
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const { port } = server.address() as { port: number };
    try {
      const error = await failure(
        resolve(["op://Homelab/Grafana/password"], {
          src: createConnectSource({ host: `http://127.0.0.1:${port}`, token, retry: fastRetry }),
        }),
      );
      expect(error.exitCode).toBe(65);
      expect(error.message).toContain("larger than 16384 KiB");
      await settle(() => closedEarly);
      expect(closedEarly).toBe(true);
      expect(sent).toBeLessThan(64);
    } finally {
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
    }
  });

  const openssl = (() => {
    try {
      execFileSync("openssl", ["version"], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!openssl)("talks to an https:// server through node:https (self-signed certificate)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hs-connect-tls-"));
    try {
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
          "-keyout",
          join(dir, "key.pem"),
          "-out",
          join(dir, "cert.pem"),
        ],
        { stdio: "ignore", timeout: 20_000 },
      );
      const cert = readFileSync(join(dir, "cert.pem"));
      const vaultId = fake.ids.vaults["Homelab"]!;
      const itemId = fake.ids.items["Homelab"]!["Grafana"]!;
      const paths: string[] = [];
      const server = createHttpsServer({ key: readFileSync(join(dir, "key.pem")), cert }, (req, res) => {
        paths.push(req.url ?? "");
        if (req.headers.authorization !== `Bearer ${token}`) return void res.writeHead(401).end("{}");
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ id: itemId, title: "Grafana", fields: [{ id: "password", label: "password", value: "pw-tls" }] }));
      });
      await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
      const { port } = server.address() as { port: number };
      const agents: unknown[] = [];
      // Trust the test certificate; everything else is the source's own choice (module, agent).
      const request = (url: URL, options: RequestOptions): ClientRequest => {
        agents.push(options.agent);
        expect(url.protocol).toBe("https:");
        return httpsRequest(url, { ...options, ca: cert });
      };
      try {
        const src = createConnectSource({ host: `https://127.0.0.1:${port}`, token, retry: fastRetry, request });
        const values = await resolve([`op://${vaultId}/${itemId}/password`], { src });
        expect(values.get(`op://${vaultId}/${itemId}/password`)).toBe("pw-tls");
        expect(paths).toEqual([`/v1/vaults/${vaultId}/items/${itemId}`]);
        const https = await import("node:https");
        expect(agents[0]).toBeInstanceOf(https.Agent);
        // Without trusting it, the self-signed certificate is a (transient) network failure.
        const untrusting = createConnectSource({ host: `https://127.0.0.1:${port}`, token, retry: { retries: 0 } });
        const error = await failure(resolve([`op://${vaultId}/${itemId}/password`], { src: untrusting }));
        expect(error.exitCode).toBe(75);
        expect(error.message).toMatch(/cannot reach the Connect server.*(self.signed|certificate)/i);
        expect(error.message).not.toContain(token);
      } finally {
        server.closeAllConnections();
        await new Promise((done) => server.close(done));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("parseRetryAfter", () => {
  it("reads delta-seconds and HTTP dates", () => {
    const now = Date.parse("2025-01-01T00:00:00Z");
    expect(parseRetryAfter("1", now)).toBe(1000);
    expect(parseRetryAfter(" 120 ", now)).toBe(120_000);
    expect(parseRetryAfter("Wed, 01 Jan 2025 00:00:05 GMT", now)).toBe(5000);
    expect(parseRetryAfter("Tue, 31 Dec 2024 23:59:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });

  it("honours an HTTP-date Retry-After from the server", async () => {
    const at = new Date(Date.now() + 2000).toUTCString(); // second resolution: waits ~1–2 s
    fake.setFaults([{ match: "/v1/vaults", type: "status", status: 503, retryAfter: at, times: 1 }]);
    await resolve(["op://Homelab/Grafana/password"]);
    const [first, second] = fake.requestsTo("/v1/vaults");
    expect(second!.start - first!.end!).toBeGreaterThanOrEqual(900);
  });
});
