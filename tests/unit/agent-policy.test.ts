import { describe, expect, it } from "vitest";
import { HomelabError } from "../../helper/src/errors.js";
import { credentialSizeMax, lookupCredential, parsePolicy, policyReferences, renderCredential } from "../../helper/src/agent/policy.js";

const policyText = `{
  "version": 1,
  "source": { "type": "connect", "host": "http://127.0.0.1:8080" },
  "units": {
    "web.service": {
      "files": { "db-password": { "ref": "op://V/db/password" } },
      "envFiles": { "env": { "vars": { "API_KEY": "op://V/api/key", "DB": "op://V/db/password" } } },
      "templates": { "config.ini": { "content": "[db]\\npassword = {{ op://V/db/password }}\\n" } }
    },
    "worker@a.service": { "files": { "token": { "ref": "op://V/api/key" } } }
  }
}
`;

const values = new Map([
  ["op://V/db/password", 'pa$s "word"'],
  ["op://V/api/key", "k-123"],
]);

function thrown(f: () => unknown): HomelabError {
  try {
    f();
  } catch (e) {
    if (e instanceof HomelabError) return e;
    throw e;
  }
  throw new Error("did not throw");
}

describe("agent policy", () => {
  it("takes a Connect source's listenerUser, as a spec does (the loopback listener the token may go to)", () => {
    const policy = parsePolicy(
      '{"version": 1, "units": {}, "source": {"type": "connect", "host": "http://127.0.0.1:8080", "listenerUser": 990}}',
      "p.json",
    );
    expect(policy.source).toEqual({ type: "connect", host: "http://127.0.0.1:8080", listenerUser: 990 });
  });

  it("maps unit → credential ID → the entry to render, rendered exactly as a spec's entry", () => {
    const policy = parsePolicy(policyText, "policy.json");
    expect(policy.source).toEqual({ type: "connect", host: "http://127.0.0.1:8080" });
    expect([...policy.units.keys()]).toEqual(["web.service", "worker@a.service"]);
    const file = lookupCredential(policy, "web.service", "db-password")!;
    expect(renderCredential(file, values).toString()).toBe('pa$s "word"');
    const env = lookupCredential(policy, "web.service", "env")!;
    expect(env.refs.map((r) => r.raw)).toEqual(["op://V/api/key", "op://V/db/password"]);
    expect(renderCredential(env, values).toString()).toBe('API_KEY="k-123"\nDB="pa\\$s \\"word\\""\n');
    const template = lookupCredential(policy, "web.service", "config.ini")!;
    expect(renderCredential(template, values).toString()).toBe('[db]\npassword = pa$s "word"\n');
    expect(renderCredential(lookupCredential(policy, "worker@a.service", "token")!, values).toString()).toBe("k-123");
    expect(policyReferences(policy).map((r) => r.raw)).toEqual(["op://V/db/password", "op://V/api/key"]);
  });

  it("gives nothing for an unknown unit or an ID the unit does not have", () => {
    const policy = parsePolicy(policyText, "policy.json");
    expect(lookupCredential(policy, "other.service", "db-password")).toBeUndefined();
    expect(lookupCredential(policy, "worker@b.service", "token"), "another instance of the template").toBeUndefined();
    expect(lookupCredential(policy, "web.service", "token")).toBeUndefined();
    expect(lookupCredential(policy, "web.service", "__proto__")).toBeUndefined();
  });

  it("never renders an empty credential, nor one systemd would refuse for its size", () => {
    const policy = parsePolicy(policyText, "policy.json");
    const file = lookupCredential(policy, "web.service", "db-password")!;
    const empty = thrown(() => renderCredential(file, new Map([["op://V/db/password", ""]])));
    expect(empty.exitCode).toBe(65);
    expect(empty.message).toBe(
      "web.service: credential db-password renders to 0 bytes; an empty credential cannot be told from a failed one, so it is refused",
    );
    const big = thrown(() => renderCredential(file, new Map([["op://V/db/password", "x".repeat(credentialSizeMax)]])));
    expect(big.message).toMatch(/renders to 1048576 bytes; systemd takes credentials under 1048576 bytes/);
    expect(renderCredential(file, new Map([["op://V/db/password", "x".repeat(credentialSizeMax - 1)]])).length).toBe(credentialSizeMax - 1);
  });

  it("bad input: an error naming file and line", () => {
    const bad = (text: string) => thrown(() => parsePolicy(text, "/etc/p.json")).message;
    expect(bad('{"version": 1,\n "units": {\n  "web.target": {"files": {}}}}')).toMatch(
      /^\/etc\/p\.json:3: units\.web\.target: "web\.target" is not a unit name/,
    );
    expect(bad('{"version": 1,\n "units": {"a.service": {\n  "files": {"x": {"ref": "op://V/i"}}}}}')).toMatch(
      /^\/etc\/p\.json:3: units\.a\.service\.files\.x\.ref: invalid secret reference/,
    );
    expect(
      bad('{"version": 1, "units": {"a.service": {"files": {"x": {"ref": "op://V/i/f"}}, "templates": {"x": {"content": "y"}}}}}'),
    ).toMatch(/credential "x" is already defined for a\.service/);
    expect(bad('{"version": 1, "units": {"a.service": {"files": {"a:b": {"ref": "op://V/i/f"}}}}}')).toMatch(
      /"a:b" is not a valid credential ID/,
    );
    expect(bad('{"version": 1, "units": {"a.service": {}}}')).toMatch(/defines no files, envFiles or templates/);
    expect(bad('{"version": 2, "units": {}}')).toMatch(/:1: version: must be 1/);
    expect(bad('{"version": 1, "units": {}, "extra": 1}')).toMatch(/:1: extra: unknown key/);
    expect(bad('{"version": 1,\n "source": {"type": "connect"}}')).toMatch(/^\/etc\/p\.json:2: source\.host: is required/);
    expect(bad('{"version": 1, "units": {}, "source": {"type": "connect", "host": "http://127.0.0.1:1", "listenerUser": "a b"}}')).toMatch(
      /source\.listenerUser: must be a user\/group name or a numeric id/,
    );
    expect(bad('{"version": 1, "units": {"a.service": {"envFiles": {"e": {"vars": {"1X": "op://V/i/f"}}}}}}')).toMatch(
      /"1X" is not a valid variable name/,
    );
  });
  it('a "refreshes" entry: the named unit\'s credentials, marked fresh with every reference of that unit', () => {
    const text = policyText.replace(
      '"worker@a.service"',
      '"web-secrets-refresh.service": { "refreshes": "web.service" },\n    "worker@a.service"',
    );
    const policy = parsePolicy(text, "p.json");
    const web = policy.units.get("web.service")!;
    const refresher = policy.units.get("web-secrets-refresh.service")!;
    expect([...refresher.keys()].sort()).toEqual([...web.keys()].sort());
    const env = lookupCredential(policy, "web-secrets-refresh.service", "env")!;
    expect(env.unit).toBe("web-secrets-refresh.service");
    expect(env.fresh?.refreshes).toBe("web.service");
    expect(env.fresh?.unitRefs.map((r) => r.raw).sort()).toEqual(["op://V/api/key", "op://V/db/password"]);
    expect(renderCredential(env, values)).toEqual(renderCredential(lookupCredential(policy, "web.service", "env")!, values));
    expect(lookupCredential(policy, "web.service", "env")!.fresh, "the service's own loads still use the cache").toBeUndefined();
    expect(policyReferences(policy).length).toBe(2);
  });

  it('a "refreshes" entry: refused when it names no unit of the policy, itself, or has credentials of its own', () => {
    const bad = (text: string) => thrown(() => parsePolicy(text, "/etc/p.json")).message;
    expect(bad('{"version": 1, "units": {\n "r.service": {"refreshes": "web.service"}}}')).toMatch(
      /^\/etc\/p\.json:2: units\.r\.service\.refreshes: names web\.service, which has no credentials in this policy/,
    );
    expect(bad('{"version": 1, "units": {"r.service": {"refreshes": "r.service"}}}')).toMatch(/a unit cannot refresh itself/);
    expect(bad('{"version": 1, "units": {"r.service": {"refreshes": "web.target"}}}')).toMatch(/"web\.target" is not a unit name/);
    expect(
      bad(
        '{"version": 1, "units": {"a.service": {"files": {"x": {"ref": "op://V/i/f"}}}, "r.service": {"refreshes": "a.service", "files": {}}}}',
      ),
    ).toMatch(/units\.r\.service\.files: unknown key/);
  });
});
