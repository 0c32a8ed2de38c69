import { afterAll, describe, expect, it } from "vitest";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { HomelabError } from "../../helper/src/errors.js";
import { loadSpec, parseSpec, specOutputNames, specReferences } from "../../helper/src/spec.js";
import { makeTempDir, removeTempDirs } from "../helpers.js";

afterAll(removeTempDirs);

/** A spec as text, one key or entry per line, so every value has its own line. */
function specText(extra: string[] = [], base: { version?: string; name?: string; outputDir?: string } = {}): string {
  const lines = ["{"];
  const entries = [
    base.version ?? `"version": 1`,
    base.name ?? `"name": "svc"`,
    base.outputDir ?? `"outputDir": "/run/svc-secrets"`,
    ...extra,
  ].filter((l) => l !== "");
  entries.forEach((entry, i) => lines.push(`  ${entry}${i < entries.length - 1 ? "," : ""}`));
  lines.push("}");
  return lines.join("\n");
}

/** 1-based line of the only line that contains `snippet`. */
function lineOf(text: string, snippet: string): number {
  const hits = text.split("\n").flatMap((line, i) => (line.includes(snippet) ? [i + 1] : []));
  if (hits.length !== 1) throw new Error(`snippet ${JSON.stringify(snippet)} is on ${hits.length} lines`);
  return hits[0]!;
}

function errorOf(text: string, file = "spec.json"): HomelabError {
  try {
    parseSpec(text, file);
  } catch (error) {
    expect(error).toBeInstanceOf(HomelabError);
    return error as HomelabError;
  }
  throw new Error(`spec was accepted:\n${text}`);
}

/** The error must be class 65 and start with `spec.json:LINE: FIELD: `; returns the rest. */
function expectError(text: string, line: number, field: string, why?: RegExp): string {
  const error = errorOf(text);
  expect(error.exitCode).toBe(65);
  const head = `spec.json:${line}: ${field}: `;
  expect(error.message.startsWith(head), `"${error.message}" should start with "${head}"`).toBe(true);
  const rest = error.message.slice(head.length);
  if (why) expect(rest).toMatch(why);
  return rest;
}

const fileEntry = (name: string, body: string) => `"files": {\n    "${name}": ${body}\n  }`;
const goodFile = fileEntry("pw", `{ "ref": "op://V/I/f", "mode": "0400" }`);

describe("spec: top level", () => {
  it("accepts a minimal spec", () => {
    const spec = parseSpec(specText([goodFile]), "spec.json");
    expect(spec.name).toBe("svc");
    expect(spec.files.map((f) => f.name)).toEqual(["pw"]);
  });

  it.each([
    ["2", /must be 1/],
    [`"1"`, /must be 1/],
    ["1.5", /must be 1/],
    ["null", /must be 1/],
  ])("refuses version %s on its line", (version, why) => {
    const text = specText([goodFile], { version: `"version": ${version}` });
    expectError(text, lineOf(text, `"version"`), "version", why);
  });

  it("refuses a missing version", () => {
    expectError(specText([goodFile], { version: "" }), 1, "version", /must be 1/);
  });

  it("refuses a missing name and a missing outputDir", () => {
    expectError(specText([goodFile], { name: "" }), 1, "name", /is required/);
    expectError(specText([goodFile], { outputDir: "" }), 1, "outputDir", /is required/);
  });

  it.each([
    [`""`, /must not be empty/],
    [`42`, /must be a string/],
    [`"has space"`, /is not a unit-style name/],
    [`"a/b"`, /is not a unit-style name/],
    [`"-dash"`, /is not a unit-style name/],
  ])("refuses name %s", (name, why) => {
    const text = specText([goodFile], { name: `"name": ${name}` });
    expectError(text, lineOf(text, `"name"`), "name", why);
  });

  it.each(["run/svc", "./run/svc", "/run/../etc", "/run/svc/..", "/", "//", "/./"])("refuses outputDir %j", (dir) => {
    const text = specText([goodFile], { outputDir: `"outputDir": ${JSON.stringify(dir)}` });
    expectError(text, lineOf(text, `"outputDir"`), "outputDir", /absolute directory path without "\.\."/);
  });

  it("normalises an accepted outputDir", () => {
    const spec = parseSpec(specText([goodFile], { outputDir: `"outputDir": "/run//svc/./x/"` }), "spec.json");
    expect(spec.outputDir).toBe("/run/svc/x/");
  });

  it.each([`"extra": 1`, `"Files": {}`, `"__proto__": {}`, `"constructor": 1`])("refuses the unknown top-level key %s", (entry) => {
    const text = specText([goodFile, entry]);
    const key = /^"([^"]+)"/.exec(entry)![1]!;
    expectError(text, lineOf(text, entry), key, /unknown key/);
  });

  it.each([
    ["[]", /must be an object/],
    ["null", /must be an object/],
    [`"spec"`, /must be an object/],
    ["{}", /must be 1/],
  ])("refuses the document %s", (doc, why) => {
    const error = errorOf(doc);
    expect(error.exitCode).toBe(65);
    expect(error.message).toMatch(/^spec\.json:1: /);
    expect(error.message).toMatch(why);
  });

  it("refuses a spec with no outputs", () => {
    expectError(specText(), 1, "spec", /defines no files, envFiles or templates/);
    expectError(specText([`"files": {}`, `"envFiles": {}`, `"templates": {}`]), 1, "spec", /defines no files/);
  });
});

describe("spec: invalid JSON names the line", () => {
  it.each([
    ["empty file", "", 1, /unexpected end of input/],
    ["only whitespace", "\n\n\n", 4, /unexpected end of input/],
    ["trailing comma", `{\n  "version": 1,\n  "name": "x",\n}`, 4, /expected a string key/],
    ["missing colon", `{\n  "version": 1,\n  "name" "x"\n}`, 3, /expected ":" after "name"/],
    ["missing comma", `{\n  "version": 1\n  "name": "x"\n}`, 3, /expected "," or "}"/],
    ["unterminated string", `{\n  "version": 1,\n  "name": "x\n}`, 3, /newline inside a string/],
    ["comment", `{\n  "version": 1,\n  // comment\n  "name": "x"\n}`, 3, /expected a string key/],
    ["single quotes", `{\n  'version': 1\n}`, 2, /expected a string key/],
    ["bad escape", `{\n  "version": 1,\n  "name": "\\q"\n}`, 3, /bad escape/],
    ["bad literal", `{\n  "version": TRUE\n}`, 2, /unexpected character "T"/],
    ["text after the end", `{\n  "version": 1\n}\n\n]`, 5, /unexpected text after the end/],
    ["unclosed object", `{\n  "version": 1,\n  "files": {\n`, 4, /expected a string key/],
  ])("%s", (_what, text, line, why) => {
    const error = errorOf(text);
    expect(error.exitCode).toBe(65);
    expect(error.message).toMatch(new RegExp(`^spec\\.json:${line}: invalid JSON: `));
    expect(error.message).toMatch(why);
  });

  it("refuses duplicate keys at the line of the second one, at any depth", () => {
    const top = specText([goodFile, `"name": "again"`]);
    const error = errorOf(top);
    expect(error.message).toBe(`spec.json:${lineOf(top, `"again"`)}: invalid JSON: duplicate key "name"`);

    const nested = specText([`"files": {\n    "pw": { "ref": "op://V/I/f",\n      "ref": "op://V/I/g" }\n  }`]);
    expect(errorOf(nested).message).toBe(`spec.json:${lineOf(nested, "op://V/I/g")}: invalid JSON: duplicate key "ref"`);

    const outputs = specText([`"files": {\n    "pw": { "ref": "op://V/I/f" },\n    "pw": { "ref": "op://V/I/g" }\n  }`]);
    expect(errorOf(outputs).message).toBe(`spec.json:${lineOf(outputs, "op://V/I/g")}: invalid JSON: duplicate key "pw"`);
  });

  it("refuses absurdly deep nesting as bad data (65), not a stack overflow (70)", () => {
    for (const [open, close] of [
      ["[", "]"],
      ['{"a":', "}"],
    ] as const) {
      const text = `{\n  "version": 1,\n  "files": ${open.repeat(20_000)}1${close.repeat(20_000)}\n}`;
      const error = errorOf(text);
      expect(error.exitCode).toBe(65);
      expect(error.message).toMatch(/^spec\.json:3: invalid JSON: nested more than 64 levels deep$/);
    }
    // Real specs are four levels deep; 64 is plenty.
    expect(() =>
      parseSpec(`{"version": 1, "name": "x", "outputDir": "/run/x", "files": {"f": {"ref": "op://V/I/f"}}, "templates": {}}`, "s"),
    ).not.toThrow();
  });

  it("uses the file name it was given", () => {
    expect(errorOf("{", "/etc/homelab/x.json").message).toMatch(/^\/etc\/homelab\/x\.json:1: invalid JSON/);
  });
});

describe("spec: files", () => {
  it.each([
    ["0o1777", "0o1777"],
    ["01777 (sticky)", "01777"],
    ["4755 (setuid)", "4755"],
    ["777x", "777x"],
    ["0800", "0800"],
    ["77", "77"],
    ["empty", ""],
    ["u+rw", "u+rw"],
  ])("refuses mode %s", (_what, mode) => {
    const text = specText([fileEntry("pw", `{\n      "ref": "op://V/I/f",\n      "mode": ${JSON.stringify(mode)}\n    }`)]);
    expectError(text, lineOf(text, `"mode"`), "files.pw.mode", /octal mode string/);
  });

  it.each([
    ["number 384", "384"],
    ["number 0", "0"],
    ["null", "null"],
    ["true", "true"],
  ])("refuses a non-string mode (%s)", (_what, mode) => {
    const text = specText([fileEntry("pw", `{\n      "ref": "op://V/I/f",\n      "mode": ${mode}\n    }`)]);
    expectError(text, lineOf(text, `"mode"`), "files.pw.mode", /octal mode string/);
  });

  it.each([
    ["600", 0o600],
    ["0600", 0o600],
    ["0440", 0o440],
    ["750", 0o750],
  ])("reads mode %s as octal", (mode, expected) => {
    const spec = parseSpec(specText([fileEntry("pw", `{ "ref": "op://V/I/f", "mode": "${mode}" }`)]), "spec.json");
    expect(spec.files[0]!.mode).toBe(expected);
  });

  it("defaults file mode to 0400 and leaves dirMode unset unless given", () => {
    const spec = parseSpec(specText([fileEntry("pw", `{ "ref": "op://V/I/f" }`)]), "spec.json");
    expect(spec.files[0]!.mode).toBe(0o400);
    expect(spec.dirMode).toBeUndefined();
    expect(parseSpec(specText([`"dirMode": "0710"`, goodFile]), "spec.json").dirMode).toBe(0o710);
  });

  it("refuses a bad dirMode on its line", () => {
    const text = specText([`"dirMode": "2750"`, goodFile]);
    expectError(text, lineOf(text, "dirMode"), "dirMode", /octal mode string/);
  });

  it("refuses unknown keys in a file entry", () => {
    const text = specText([fileEntry("pw", `{\n      "ref": "op://V/I/f",\n      "owner": "root"\n    }`)]);
    expectError(text, lineOf(text, `"owner"`), "files.pw.owner", /unknown key \(allowed: ref, mode\)/);
  });

  it.each([
    ["too few segments", `"op://V/I"`, /3 or 4 segments/],
    ["too many segments", `"op://V/I/S/T/f"`, /3 or 4 segments/],
    ["no scheme", `"V/I/f"`, /must start with "op:\/\/"/],
    ["bad character", `"op://V/I/f$x"`, /characters 1Password does not allow/],
    ["bad query", `"op://V/I/f?attribute=type"`, /unsupported query/],
    ["not a string", `42`, /must be an "op:\/\/…" reference string/],
    ["missing", `MISSING`, /must be an "op:\/\/…" reference string/],
  ])("refuses a bad file reference (%s)", (_what, ref, why) => {
    const body = ref === "MISSING" ? `{\n      "mode": "0400"\n    }` : `{\n      "mode": "0400",\n      "ref": ${ref}\n    }`;
    const text = specText([fileEntry("pw", body)]);
    const line = ref === "MISSING" ? lineOf(text, `"pw"`) : lineOf(text, `"ref"`);
    expectError(text, line, "files.pw.ref", why);
  });

  it.each(["a/b", ".hidden", "-x", "x.hs-tmp", "with space", "ünï"])("refuses the output name %j", (name) => {
    const text = specText([fileEntry(name, `{ "ref": "op://V/I/f" }`)]);
    const field = `files.${name.replace(/~/g, "~0").replace(/\//g, "~1")}`;
    expectError(text, lineOf(text, `"${name}"`), field, /plain file name/);
  });

  it("refuses a file entry that is not an object", () => {
    const text = specText([fileEntry("pw", `"op://V/I/f"`)]);
    expectError(text, lineOf(text, `"pw"`), "files.pw", /must be an object/);
  });
});

describe("spec: owner, group, source", () => {
  it.each([`"has space"`, `""`, `-1`, `1.5`, `true`, `"a:b"`, `4294967295`, `"$x"`])("refuses owner %s", (owner) => {
    const text = specText([`"owner": ${owner}`, goodFile]);
    expectError(text, lineOf(text, `"owner"`), "owner", /user\/group name or a numeric id/);
  });

  it("refuses a bad group the same way", () => {
    const text = specText([`"group": "wheel group"`, goodFile]);
    expectError(text, lineOf(text, `"group"`), "group", /user\/group name or a numeric id/);
  });

  it.each([
    [`"transmission"`, "transmission"],
    [`1000`, 1000],
    [`0`, 0],
    [`"machine$"`, "machine$"],
    [`"svc.user-1"`, "svc.user-1"],
  ])("accepts owner %s", (owner, expected) => {
    expect(parseSpec(specText([`"owner": ${owner}`, goodFile]), "spec.json").owner).toEqual(expected);
  });

  it.each([
    [`{ "type": "vault" }`, "source.type", /must be "onepassword", "connect" or "file"/],
    [`{ "type": "file", "path": "vault.json" }`, "source.path", /absolute path/],
    [`{ "type": "file" }`, "source.path", /is required/],
    [`{ "type": "connect", "host": "ftp://x" }`, "source.host", /http:\/\/ or https:\/\//],
    [`{ "type": "onepassword", "host": "https://x" }`, "source.host", /unknown key/],
    [`{ "type": "onepassword", "tokenCredential": "a/b" }`, "source.tokenCredential", /not valid/],
    [`"onepassword"`, "source", /must be an object/],
  ])("refuses source %s", (source, field, why) => {
    const text = specText([`"source": ${source}`, goodFile]);
    expectError(text, lineOf(text, `"source"`), field, why);
  });

  it.each([
    [`{ "type": "onepassword" }`, { type: "onepassword" }],
    [`{ "type": "onepassword", "tokenCredential": "op-token2" }`, { type: "onepassword", tokenCredential: "op-token2" }],
    [`{ "type": "connect", "host": "https://connect.local:8443" }`, { type: "connect", host: "https://connect.local:8443" }],
    [`{ "type": "file", "path": "/etc/v.json" }`, { type: "file", path: "/etc/v.json" }],
  ])("accepts source %s", (source, expected) => {
    expect(parseSpec(specText([`"source": ${source}`, goodFile]), "spec.json").source).toEqual(expected);
  });
});

describe("spec: envFiles", () => {
  const envEntry = (vars: string, extra = "") =>
    `"envFiles": {\n    "app.env": {${extra}\n      "vars": {\n        ${vars}\n      }\n    }\n  }`;

  it.each(["1BAD", "BAD-NAME", "A B", "", "É", "A.B", "A=B"])("refuses the variable name %j on its line", (key) => {
    const text = specText([envEntry(`${JSON.stringify(key)}: "op://V/I/f"`)]);
    const error = errorOf(text);
    expect(error.exitCode).toBe(65);
    const escaped = key.replace(/~/g, "~0").replace(/\//g, "~1");
    expect(error.message).toBe(
      `spec.json:${lineOf(text, "op://V/I/f")}: envFiles.app.env.vars.${escaped}: "${key}" is not a valid variable name`,
    );
  });

  it.each([
    [`"op://V/I"`, /3 or 4 segments/],
    [`"op://V/I/f?attribute=otp?ssh-format=openssh"`, /only one query parameter/],
    [`"op://V/I/f%20"`, /characters 1Password does not allow/],
    [`["op://V/I/f"]`, /must be an "op:\/\/…" reference string/],
  ])("refuses the bad var reference %s", (ref, why) => {
    const text = specText([envEntry(`"KEY": ${ref}`)]);
    expectError(text, lineOf(text, `"KEY"`), "envFiles.app.env.vars.KEY", why);
  });

  it("refuses empty vars, missing vars and unknown keys", () => {
    const empty = specText([`"envFiles": {\n    "app.env": {\n      "vars": {}\n    }\n  }`]);
    expectError(empty, lineOf(empty, `"vars"`), "envFiles.app.env.vars", /at least one variable/);
    const missing = specText([`"envFiles": {\n    "app.env": {\n      "mode": "0400"\n    }\n  }`]);
    expectError(missing, lineOf(missing, `"app.env"`), "envFiles.app.env.vars", /must be an object/);
    const unknown = specText([envEntry(`"KEY": "op://V/I/f"`, `\n      "content": "x",`)]);
    expectError(unknown, lineOf(unknown, `"content"`), "envFiles.app.env.content", /unknown key \(allowed: vars, mode\)/);
  });

  it("keeps variables in spec order", () => {
    const spec = parseSpec(
      specText([envEntry(`"Z": "op://V/I/z",\n        "_a": "op://V/I/a",\n        "M1": "op://V/S/I/m"`)]),
      "spec.json",
    );
    expect(spec.envFiles[0]!.vars.map(([k, r]) => [k, r.raw])).toEqual([
      ["Z", "op://V/I/z"],
      ["_a", "op://V/I/a"],
      ["M1", "op://V/S/I/m"],
    ]);
  });
});

describe("spec: templates", () => {
  const templateEntry = (content: string, extra = "") =>
    `"templates": {\n    "conf.ini": {${extra}\n      "content": ${JSON.stringify(content)}\n    }\n  }`;

  it("refuses a bad reference inside a template, naming the content line", () => {
    const text = specText([templateEntry("a = {{ op://V/I }}\nb = 1\n")]);
    expectError(text, lineOf(text, `"content"`), "templates.conf.ini.content", /invalid secret reference "op:\/\/V\/I"/);
  });

  it("refuses unknown keys and a non-string content", () => {
    const unknown = specText([templateEntry("x", `\n      "ref": "op://V/I/f",`)]);
    expectError(unknown, lineOf(unknown, `"ref"`), "templates.conf.ini.ref", /unknown key \(allowed: content, mode\)/);
    const notString = specText([`"templates": {\n    "conf.ini": {\n      "content": 7\n    }\n  }`]);
    expectError(notString, lineOf(notString, `"content"`), "templates.conf.ini.content", /must be a string/);
  });

  // Rule change (security issue 13): a template that fetches nothing is refused, in the CLI
  // as in the Nix module; {{ … }} that is not a reference stays literal text.
  it("keeps {{ … }} that is not a reference as text, and refuses a template with no reference", () => {
    const spec = parseSpec(specText([`"templates": { "b": { "content": "{{ not op }} {{ op://V/I/f }}" } }`]), "spec.json");
    expect(spec.templates.map((t) => t.parts)).toEqual([
      [{ text: "{{ not op }} " }, { ref: expect.objectContaining({ raw: "op://V/I/f" }) as unknown }],
    ]);
    for (const content of ["", "{{ not op }}"]) {
      const text = specText([`"templates": {\n    "t": {\n      "content": ${JSON.stringify(content)}\n    }\n  }`]);
      expectError(text, lineOf(text, `"content"`), "templates.t.content", /contains no \{\{ op:\/\/vault\/item\/field \}\} reference/);
    }
  });
});

describe("spec: duplicate output names", () => {
  it.each([
    [
      "files and envFiles",
      `"files": { "x": { "ref": "op://V/I/f" } }`,
      `"envFiles": {\n    "x": { "vars": { "K": "op://V/I/f" } }\n  }`,
      "envFiles.x",
    ],
    ["files and templates", `"files": { "x": { "ref": "op://V/I/f" } }`, `"templates": {\n    "x": { "content": "c" }\n  }`, "templates.x"],
    [
      "envFiles and templates",
      `"envFiles": { "x": { "vars": { "K": "op://V/I/f" } } }`,
      `"templates": {\n    "x": { "content": "c" }\n  }`,
      "templates.x",
    ],
  ])("refuses the same name in %s, naming both places", (_what, first, second, field) => {
    const text = specText([first, second]);
    const firstField = first.startsWith(`"files"`) ? "files.x" : "envFiles.x";
    const firstLine = lineOf(text, first.slice(0, 12));
    const rest = expectError(text, lineOf(text, second.split("\n")[1] ?? second), field);
    expect(rest).toBe(`output "x" is already defined at spec.json:${firstLine}: ${firstField}`);
  });
});

describe("spec: a valid spec", () => {
  const design = `{
  "version": 1,
  "name": "transmission",
  "outputDir": "/run/transmission-secrets",
  "owner": "transmission", "group": "transmission", "dirMode": "0750",
  "source": { "type": "onepassword", "tokenCredential": "op-token" },
  "files": {
    "rpc-password": { "ref": "op://Homelab/Transmission/password", "mode": "0400" },
    "otp": { "ref": "op://Homelab/Transmission/Login/one-time code?attribute=totp" }
  },
  "envFiles": {
    "transmission.env": { "mode": "0440", "vars": { "RPC_PASSWORD": "op://Homelab/Transmission/password", "USER": "op://Homelab/Transmission/username" } }
  },
  "templates": {
    "settings.json": { "mode": "0600", "content": "{\\"rpc-password\\": \\"{{ op://Homelab/Transmission/password }}\\", \\"u\\": \\"{{op://Homelab/Transmission/username}}\\"}" }
  }
}`;

  it("parses to the expected structure", () => {
    const spec = parseSpec(design, "/nix/store/x-spec.json");
    const ref = (raw: string, vault: string, item: string, section: string | undefined, field: string, attribute?: "otp" | "totp") => ({
      raw,
      vault,
      item,
      section,
      field,
      attribute,
      sshFormat: undefined,
    });
    const password = ref("op://Homelab/Transmission/password", "Homelab", "Transmission", undefined, "password");
    const username = ref("op://Homelab/Transmission/username", "Homelab", "Transmission", undefined, "username");
    expect(spec).toEqual({
      file: "/nix/store/x-spec.json",
      name: "transmission",
      outputDir: "/run/transmission-secrets",
      owner: "transmission",
      group: "transmission",
      dirMode: 0o750,
      source: { type: "onepassword", tokenCredential: "op-token" },
      files: [
        { name: "rpc-password", ref: password, mode: 0o400 },
        {
          name: "otp",
          ref: ref(
            "op://Homelab/Transmission/Login/one-time code?attribute=totp",
            "Homelab",
            "Transmission",
            "Login",
            "one-time code",
            "totp",
          ),
          mode: 0o400,
        },
      ],
      envFiles: [
        {
          name: "transmission.env",
          mode: 0o440,
          vars: [
            ["RPC_PASSWORD", password],
            ["USER", username],
          ],
        },
      ],
      templates: [
        {
          name: "settings.json",
          mode: 0o600,
          parts: [{ text: '{"rpc-password": "' }, { ref: password }, { text: '", "u": "' }, { ref: username }, { text: '"}' }],
        },
      ],
    });
    expect(specOutputNames(spec)).toEqual(["rpc-password", "otp", "transmission.env", "settings.json"]);
  });

  it("specReferences lists each reference once, in first-seen order", () => {
    const spec = parseSpec(design, "spec.json");
    expect(specReferences(spec).map((r) => r.raw)).toEqual([
      "op://Homelab/Transmission/password",
      "op://Homelab/Transmission/Login/one-time code?attribute=totp",
      "op://Homelab/Transmission/username",
    ]);
  });

  it("specReferences keeps references that differ only in their query apart", () => {
    const text = specText([
      `"files": { "a": { "ref": "op://V/I/f" }, "b": { "ref": "op://V/I/f?attribute=otp" }, "c": { "ref": "op://V/I/f" } }`,
      `"templates": { "t": { "content": "{{ op://V/I/f }}{{ op://V/I/f?attribute=totp }}{{op://V/I/f}}" } }`,
    ]);
    expect(specReferences(parseSpec(text, "spec.json")).map((r) => r.raw)).toEqual([
      "op://V/I/f",
      "op://V/I/f?attribute=otp",
      "op://V/I/f?attribute=totp",
    ]);
  });
});

describe("loadSpec", () => {
  it("reads a file and names it in errors", async () => {
    const dir = await makeTempDir();
    const path = join(dir, "bad.json");
    await writeFile(path, `{\n  "version": 1,\n  "name": "x",\n  "outputDir": "relative"\n}\n`);
    await expect(loadSpec(path)).rejects.toMatchObject({
      exitCode: 65,
      message: `${path}:4: outputDir: must be an absolute directory path without ".." (not "/")`,
    });
  });

  it("refuses a missing or unreadable spec file as a configuration error (78)", async () => {
    const dir = await makeTempDir();
    await expect(loadSpec(join(dir, "nope.json"))).rejects.toMatchObject({
      exitCode: 78,
      message: expect.stringContaining("ENOENT") as unknown,
    });
    await expect(loadSpec(dir)).rejects.toMatchObject({ exitCode: 78, message: expect.stringContaining("EISDIR") as unknown });
    if (process.geteuid?.() !== 0) {
      const locked = join(dir, "locked.json");
      await writeFile(locked, "{}");
      await chmod(locked, 0);
      await expect(loadSpec(locked)).rejects.toMatchObject({ exitCode: 78, message: expect.stringContaining("EACCES") as unknown });
    }
  });
});
