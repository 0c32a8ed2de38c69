/**
 * The README's sandbox list and the shipped template unit say the same thing: a unit written
 * from the README must not miss a setting (without SystemCallErrorNumber=EPERM node dies with
 * status=31/SYS), and every value the README gives is the template's.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../helpers.js";

/** The template's hardening block: the [Service] settings after its first blank line. */
function templateSandbox(): Map<string, string> {
  const unit = readFileSync(join(repoRoot, "packaging", "systemd", "homelab-secrets@.service"), "utf8");
  const service = unit.split(/^\[Service\]\n/m)[1]!.split(/^\[/m)[0]!;
  const block = service.split(/\n\n/)[1]!;
  const settings = new Map<string, string>();
  for (const line of block.split("\n")) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match) settings.set(match[1]!, match[2]!);
  }
  return settings;
}

/** The settings the README's "Sandbox" section names in backticks, with a value where it gives one. */
function readmeSandbox(): { key: string; value: string | undefined }[] {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const section = readme.split(/^#### Sandbox\n/m)[1]!.split(/^#/m)[0]!;
  const named: { key: string; value: string | undefined }[] = [];
  for (const match of section.replace(/\n/g, " ").matchAll(/`([^`]+)`/g)) {
    for (const part of match[1]!.split("/")) {
      const setting = /^([A-Z][A-Za-z]+\*?)(?:=(.*))?$/.exec(part);
      if (setting) named.push({ key: setting[1]!, value: setting[2] });
    }
  }
  return named;
}

describe("README sandbox list", () => {
  it("names every hardening setting of the shipped template", () => {
    const named = readmeSandbox().map((s) => s.key);
    const covered = (key: string) => named.some((n) => n === key || (n.endsWith("*") && key.startsWith(n.slice(0, -1))));
    const template = [...templateSandbox().keys()];
    expect(template.length).toBeGreaterThan(20);
    expect(template.filter((key) => !covered(key))).toEqual([]);
  });

  it("gives the template's value wherever it gives one", () => {
    const template = templateSandbox();
    // PrivateNetwork= and the file source's AF_UNIX are the NixOS unit's own (the template may reach the network).
    const nixOnly = new Set(["PrivateNetwork=yes", "RestrictAddressFamilies=AF_UNIX"]);
    const wrong = readmeSandbox()
      .filter((s) => s.value !== undefined && template.has(s.key) && !nixOnly.has(`${s.key}=${s.value}`))
      .filter((s) => template.get(s.key) !== s.value)
      .map((s) => `${s.key}=${s.value} (template: ${template.get(s.key)})`);
    expect(wrong).toEqual([]);
  });
});
