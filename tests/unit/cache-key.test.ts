// The cache's keying: which spec changes make cached values unusable, and which do not.
import { describe, expect, it } from "vitest";
import { cacheKey, credentialName, uncacheableReferences } from "../../helper/src/cache/key.js";
import { parseReference } from "../../helper/src/reference.js";
import { parseSpec, specReferences } from "../../helper/src/spec.js";
import type { SourceConfig } from "../../helper/src/spec.js";

const refs = (...raw: string[]) => raw.map((r) => parseReference(r));
const connect: SourceConfig = { type: "connect", host: "http://127.0.0.1:8080", tokenCredential: "op-connect-token" };

describe("cache key", () => {
  it("is the same for the same source and references, whatever their order or repetition", () => {
    const a = cacheKey(connect, refs("op://V/a/f", "op://V/b/f"));
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey(connect, refs("op://V/b/f", "op://V/a/f", "op://V/b/f"))).toBe(a);
  });

  it("changes with any reference, the source type, its host or its vault path", () => {
    const base = cacheKey(connect, refs("op://V/a/f"));
    expect(cacheKey(connect, refs("op://V/a/f", "op://V/c/f"))).not.toBe(base);
    expect(cacheKey(connect, refs("op://V/a/g"))).not.toBe(base);
    expect(cacheKey({ ...connect, host: "http://127.0.0.1:8081" }, refs("op://V/a/f"))).not.toBe(base);
    expect(cacheKey({ type: "onepassword" }, refs("op://V/a/f"))).not.toBe(base);
    expect(cacheKey({ type: "file", path: "/a.json" }, refs("op://V/a/f"))).not.toBe(
      cacheKey({ type: "file", path: "/b.json" }, refs("op://V/a/f")),
    );
  });

  it("does not change with how the backend is signed in to (token credential or file, listener account)", () => {
    const base = cacheKey(connect, refs("op://V/a/f"));
    expect(cacheKey({ ...connect, tokenCredential: "other" }, refs("op://V/a/f"))).toBe(base);
    expect(cacheKey({ ...connect, tokenFile: "/run/agenix/new-token", listenerUser: "connect" }, refs("op://V/a/f"))).toBe(base);
    expect(cacheKey({ type: "onepassword", tokenFile: "/x" }, refs("op://V/a/f"))).toBe(
      cacheKey({ type: "onepassword" }, refs("op://V/a/f")),
    );
  });

  it("does not change with output names, modes or template text: those say how values are rendered, not which", () => {
    const spec = (extra: string) =>
      parseSpec(
        JSON.stringify({
          version: 1,
          name: "app",
          outputDir: "/run/app-secrets",
          files: { [`pw${extra}`]: { ref: "op://V/db/password", mode: extra ? "0440" : "0400" } },
          templates: { "c.ini": { content: `user=${extra}{{ op://V/db/user }}` } },
        }),
        "spec.json",
      );
    expect(cacheKey(connect, specReferences(spec("")))).toBe(cacheKey(connect, specReferences(spec("-renamed"))));
  });

  it("binds the spec name and the key into the systemd-creds name", () => {
    const key = cacheKey(connect, refs("op://V/a/f"));
    expect(credentialName("grafana", key)).toBe(`homelab-secrets.grafana.${key.slice(0, 16)}`);
    expect(credentialName("grafana", key)).not.toBe(credentialName("grafana2", key));
  });

  it("names one-time-password references, which are never cached", () => {
    expect(
      uncacheableReferences(refs("op://V/a/f", "op://V/gh/otp?attribute=otp", "op://V/ssh/key?ssh-format=openssh")).map((r) => r.raw),
    ).toEqual(["op://V/gh/otp?attribute=otp"]);
  });
});
