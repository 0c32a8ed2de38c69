// The Connect source's field picking and batch error aggregation, without a server.
import { describe, expect, it } from "vitest";
import { HomelabError, permissionError, tempFailError } from "../../helper/src/errors.js";
import { parseReference } from "../../helper/src/reference.js";
import type { ConnectItem } from "../../helper/src/sources/connect/api.js";
import { interpret } from "../../helper/src/sources/connect/api.js";
import { collectOutcomes, pickByName, pickValue, ReferenceProblem } from "../../helper/src/sources/connect/fields.js";

const item: ConnectItem = {
  id: "i".repeat(26),
  title: "Grafana",
  sections: [
    { id: "sec1", label: "Admin" },
    { id: "sec2", label: "Reader" },
  ],
  fields: [
    { id: "password", label: "password", value: "top-level" },
    { id: "f1", label: "password", value: "admin-pw", section: { id: "sec1" } },
    { id: "f2", label: "password", value: "reader-pw", section: { id: "sec2" } },
    { id: "f3", label: "Token", value: "tok", section: { id: "sec1" } },
    { id: "otp", label: "one-time", type: "OTP", value: "otpauth://…", totp: "123456" },
    { id: "key", label: "key", type: "SSHKEY", value: "-----BEGIN PRIVATE KEY-----" },
  ],
};

const problemOf = (fn: () => unknown): ReferenceProblem => {
  try {
    fn();
  } catch (error) {
    if (error instanceof ReferenceProblem) return error;
    throw error;
  }
  throw new Error("no problem thrown");
};

describe("pickValue", () => {
  it("an exact field ID wins over labels", () => {
    expect(pickValue(item, parseReference("op://V/Grafana/password"))).toBe("top-level");
  });

  it("a section narrows by label or id, case-insensitively", () => {
    expect(pickValue(item, parseReference("op://V/Grafana/admin/password"))).toBe("admin-pw");
    expect(pickValue(item, parseReference("op://V/Grafana/sec2/password"))).toBe("reader-pw");
    expect(pickValue(item, parseReference("op://V/Grafana/Admin/token"))).toBe("tok");
  });

  it("a missing section or field is a 'missing' problem naming it", () => {
    const section = problemOf(() => pickValue(item, parseReference("op://V/Grafana/Nope/password")));
    expect(section.kind).toBe("missing");
    expect(section.message).toBe('section "Nope" not found in item "Grafana"');
    const field = problemOf(() => pickValue(item, parseReference("op://V/Grafana/Admin/nothing")));
    expect(field.message).toBe('field "nothing" not found in section "Admin" of item "Grafana"');
  });

  it("two fields with one label are ambiguous, with a hint", () => {
    const twice: ConnectItem = {
      id: "x",
      fields: [
        { label: "pw", value: "a" },
        { label: "PW", value: "b" },
      ],
    };
    const problem = problemOf(() => pickValue(twice, parseReference("op://V/I/pw")));
    expect(problem.kind).toBe("ambiguous");
    expect(problem.message).toMatch(/^tooManyMatchingFields: 2 fields named "pw" in item "I"; add the section/);
  });

  it("?attribute=otp gives the server's current code, and only for OTP fields", () => {
    expect(pickValue(item, parseReference("op://V/Grafana/one-time?attribute=otp"))).toBe("123456");
    const wrong = problemOf(() => pickValue(item, parseReference("op://V/Grafana/password?attribute=otp")));
    expect(wrong.kind).toBe("unsupported");
  });

  it("?ssh-format=openssh refuses a PKCS#8-only key instead of mangling it", () => {
    const problem = problemOf(() => pickValue(item, parseReference("op://V/Grafana/key?ssh-format=openssh")));
    expect(problem.kind).toBe("unsupported");
    expect(problem.message).toMatch(/only in PKCS#8 form/);
  });
});

describe("pickByName", () => {
  it("exact case wins; otherwise every case-insensitive match", () => {
    const list = [{ n: "Home" }, { n: "home" }, { n: "HOME" }];
    expect(pickByName(list, (e) => e.n, "home")).toEqual([{ n: "home" }]);
    expect(pickByName(list, (e) => e.n, "hOmE")).toHaveLength(3);
  });
});

describe("collectOutcomes", () => {
  const refs = ["op://V/A/x", "op://V/B/y", "op://V/C/z"].map((r) => parseReference(r));
  const ok = (value: string): PromiseSettledResult<string> => ({ status: "fulfilled", value });
  const no = (reason: unknown): PromiseSettledResult<string> => ({ status: "rejected", reason });

  it("all fulfilled: every value by its raw reference", () => {
    expect([...collectOutcomes(refs, [ok("1"), ok("2"), ok("3")])]).toEqual([
      ["op://V/A/x", "1"],
      ["op://V/B/y", "2"],
      ["op://V/C/z", "3"],
    ]);
  });

  it("missing references: one 69 naming every one, unusable ones listed too", () => {
    const error = (() => {
      try {
        collectOutcomes(refs, [no(new ReferenceProblem("missing", "gone")), ok("2"), no(new ReferenceProblem("ambiguous", "twice"))]);
      } catch (e) {
        return e as HomelabError;
      }
      throw new Error("did not throw");
    })();
    expect(error.exitCode).toBe(69);
    expect(error.message).toBe("1Password Connect: 1 reference not found: op://V/A/x (gone); also unusable: op://V/C/z (twice)");
  });

  it("only unusable references: 65", () => {
    expect(() => collectOutcomes(refs, [ok("1"), no(new ReferenceProblem("unsupported", "no")), ok("3")])).toThrow(
      expect.objectContaining({ exitCode: 65 }),
    );
  });

  it("a fatal error wins over reference problems; a permission error over a transient one", () => {
    const denied = permissionError("bad token");
    const down = tempFailError("down");
    expect(() => collectOutcomes(refs, [no(down), no(new ReferenceProblem("missing", "gone")), no(denied)])).toThrow(denied);
    expect(() => collectOutcomes(refs, [no(down), ok("2"), ok("3")])).toThrow(down);
  });
});

describe("interpret (status → exit class)", () => {
  const context = { allowMissing: false, display: "http://127.0.0.1:8080", scrub: (t: string) => t };
  const raw = (status: number, text = "{}", retryAfter: string | null = null) => ({ status, text, retryAfter });
  const codeOf = (status: number, text?: string, retryAfter?: string | null): number => {
    try {
      interpret(raw(status, text, retryAfter), "Connect GET /v1/vaults", context);
    } catch (error) {
      return (error as HomelabError).exitCode;
    }
    return 0;
  };

  it.each([
    [200, 0],
    [404, 0],
    [400, 65],
    [401, 77],
    [403, 77],
    [429, 75],
    [503, 75],
    [302, 78],
    [418, 65],
  ])("HTTP %i → %i", (status, code) => {
    expect(codeOf(status)).toBe(code);
  });

  it("400 is 'missing' when allowed (an ID probe), and Retry-After is kept on 429", () => {
    expect(interpret(raw(400), "w", { ...context, allowMissing: true })).toEqual({ status: 400, body: undefined });
    try {
      interpret(raw(429, "{}", "7"), "w", context);
    } catch (error) {
      expect((error as HomelabError).retryAfterMs).toBe(7000);
    }
    expect.assertions(2);
  });

  it("a 2xx answer that is not JSON is 65 and never quotes the body", () => {
    expect(() => interpret(raw(200, "secret-body{"), "w", context)).toThrow(/is not JSON/);
    expect(() => interpret(raw(200, "secret-body{"), "w", context)).not.toThrow(/secret-body/);
  });
});
