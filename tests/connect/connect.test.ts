// The connect source against the fake Connect server, over real HTTP on 127.0.0.1.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HomelabError } from "../../helper/src/errors.js";
import { createLogger } from "../../helper/src/log.js";
import { parseReference } from "../../helper/src/reference.js";
import { createDeadline } from "../../helper/src/retry.js";
import { createConnectSource, parseRetryAfter } from "../../helper/src/sources/connect.js";
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
  "admin", "pw-transmission", "key-transmission", "admin@example.org", "pin-admin", "pin-other", "pw-grafana",
  "grafana-admin", "pw-nextcloud", "dup-top", "dup-section", "pw-router", "pw-db", "JBSWY3DPEHPK3PXP",
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
    return await (options.src ?? source()).resolveAll(raws.map((raw) => parseReference(raw)), { signal: deadline.signal, log });
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

const itemPath = (vaultName: string, item: string) =>
  `/v1/vaults/${fake.ids.vaults[vaultName]}/items/${fake.ids.items[vaultName]![item]}`;

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
    const values = await resolve(["op://Homelab/Router/one-time password?attribute=otp", "op://Homelab/Router/one-time password?attribute=totp"]);
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
    // 3 round trips (vault, item title, item) of 50 ms; sequential would be 7 or more.
    expect(elapsed).toBeLessThan(350); // the floor for 7 sequential round trips
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
    const error = await failure(resolve(["op://Homelab/Grafana/password"], { src: source({ retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 } }) }));
    expect(error.exitCode).toBe(75);
    expect(error.message).toContain("HTTP 503");
    expect(fake.requests).toHaveLength(3);
  });

  it("an unreachable host is a transient failure (75)", async () => {
    const closed = await startFakeConnect({ vault, token });
    const url = closed.url;
    await closed.close();
    const error = await failure(resolve(["op://Homelab/Grafana/password"], { src: createConnectSource({ host: url, token, retry: { retries: 1, minTimeoutMs: 10 } }) }));
    expect(error.exitCode).toBe(75);
    expect(error.message).toMatch(/cannot reach the Connect server.*ECONNREFUSED/);
  });
});

describe("permanent failures", () => {
  it("a wrong token is 77, fails fast and never shows the token", async () => {
    const wrong = "wrong-token-value-that-must-not-leak";
    const started = performance.now();
    const error = await failure(
      resolve(["op://Homelab/Grafana/password", "op://Second Vault/Db Creds/password"], { src: source({ token: wrong }) }),
    );
    expect(error.exitCode).toBe(77);
    expect(error.message).toContain("Connect rejected the token");
    expect(error.message).not.toContain(wrong);
    expect(error.message).not.toContain(token);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(fake.requests.every((r) => r.status === 401)).toBe(true);
    expect(fake.requests).toHaveLength(2); // no retries
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

  it("a redirect is a configuration error, not followed", async () => {
    fake.setFaults([{ type: "status", status: 301, body: "", times: 1 }]);
    const error = await failure(resolve(["op://Homelab/Grafana/password"]));
    expect(error.exitCode).toBe(78);
    expect(fake.requests).toHaveLength(1);
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
