import { afterAll, describe, expect, it } from "vitest";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { HomelabError } from "../../helper/src/errors.js";
import { parseTemplate, renderTemplate, templateReferences } from "../../helper/src/render/template.js";
import { parseSpec } from "../../helper/src/spec.js";
import { makeTempDir, removeTempDirs, runCli, writeSpec, writeVault } from "../helpers.js";

afterAll(removeTempDirs);

const values = new Map([
  ["op://V/I/f", "F-VALUE"],
  ["op://V/I/g", "G-VALUE"],
  ["op://My Vault/My Item/my field", "SPACED"],
  ["op://V/I/S/f", "SECTION-VALUE"],
  ["op://V/I/f?attribute=otp", "123456"],
  ["op://V/I/multi", "line1\nline2 {{ op://V/I/f }} $x\n"],
]);

const render = (content: string) => renderTemplate(parseTemplate(content, "t:1: c"), values);
const refsOf = (content: string) => templateReferences(parseTemplate(content, "t:1: c")).map((r) => r.raw);

describe("template placeholders", () => {
  it.each([
    ["{{op://V/I/f}}", "F-VALUE"],
    ["{{ op://V/I/f }}", "F-VALUE"],
    ["{{   op://V/I/f   }}", "F-VALUE"],
    ["{{\top://V/I/f\t}}", "F-VALUE"],
    ["{{\n  op://V/I/f\n}}", "F-VALUE"],
    ["{{ op://V/I/f}}", "F-VALUE"],
    ["{{op://V/I/f }}", "F-VALUE"],
    ["pre {{ op://V/I/f }} post", "pre F-VALUE post"],
  ])("spacing: %j", (content, expected) => {
    expect(render(content)).toBe(expected);
    expect(refsOf(content)).toEqual(["op://V/I/f"]);
  });

  it("renders adjacent placeholders with nothing between them", () => {
    expect(render("{{ op://V/I/f }}{{ op://V/I/g }}{{op://V/I/f}}")).toBe("F-VALUEG-VALUEF-VALUE");
    expect(refsOf("{{ op://V/I/f }}{{ op://V/I/g }}")).toEqual(["op://V/I/f", "op://V/I/g"]);
  });

  it("keeps {{ … }} text without op:// literally", () => {
    const content = "{{ .Values.x }} {{}} {{ }} {{ op:/x }} {{ OP://V/I/f }} }} {{ a {{ b";
    expect(parseTemplate(content, "t:1: c")).toEqual([{ text: content }]);
    expect(render(content)).toBe(content);
  });

  it("keeps literal braces around a placeholder", () => {
    expect(render("{{{ op://V/I/f }}}")).toBe("{F-VALUE}");
    expect(render("{{ {{ op://V/I/f }} }}")).toBe("{{ F-VALUE }}");
    expect(render('{"a": {"b": "{{ op://V/I/g }}"}}')).toBe('{"a": {"b": "G-VALUE"}}');
  });

  it("renders multiline templates, keeping every other byte (CRLF, tabs, trailing newline)", () => {
    const content = "[db]\r\npassword = {{ op://V/I/f }}\r\n\tuser = {{ op://V/I/g }}\n\n# end {{ op://V/I/S/f }}\n";
    expect(render(content)).toBe("[db]\r\npassword = F-VALUE\r\n\tuser = G-VALUE\n\n# end SECTION-VALUE\n");
  });

  it("accepts references with spaces, sections and queries", () => {
    expect(render("a={{ op://My Vault/My Item/my field }};b={{ op://V/I/S/f }};c={{ op://V/I/f?attribute=otp }}")).toBe(
      "a=SPACED;b=SECTION-VALUE;c=123456",
    );
  });

  it("inserts values verbatim and never expands placeholders inside a value", () => {
    expect(render("<{{ op://V/I/multi }}>")).toBe("<line1\nline2 {{ op://V/I/f }} $x\n>");
  });

  it("treats a template with no placeholders, or an empty one, as plain text", () => {
    expect(parseTemplate("", "t:1: c")).toEqual([]);
    expect(render("")).toBe("");
    expect(render("no secrets here\n")).toBe("no secrets here\n");
  });

  it.each([
    ["too few segments", "x = {{ op://V/I }}", /invalid secret reference "op:\/\/V\/I": must have 3 or 4 segments/],
    ["a bad character", "x = {{ op://V/I/f$ }}", /invalid secret reference "op:\/\/V\/I\/f\$"/],
    ["a bad query", "x = {{ op://V/I/f?attribute=password }}", /unsupported query/],
    ["an empty segment", "{{ op://V//f }}", /empty segment/],
    ["a missing closing brace", "x = {{ op://V/I/f }\ny = 1", /malformed placeholder "\{\{ op:\/\/V\/I\/f \} y = 1"/],
    ["a brace inside", "x = {{ op://V/I/{f} }}", /malformed placeholder/],
    ["no closing braces at all", "x = {{ op://V/I/f", /malformed placeholder/],
  ])("refuses a template with %s, naming where", (_what, content, why) => {
    let error: unknown;
    try {
      parseTemplate(content, "spec.json:9: templates.t.content");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HomelabError);
    expect((error as HomelabError).exitCode).toBe(65);
    expect((error as HomelabError).message.startsWith("spec.json:9: templates.t.content: ")).toBe(true);
    expect((error as HomelabError).message).toMatch(why);
  });

  it("in a spec, a bad placeholder names the spec file and the content's line", () => {
    const text = [
      "{",
      '  "version": 1,',
      '  "name": "t",',
      '  "outputDir": "/run/t",',
      '  "templates": {',
      '    "ok.conf": { "content": "a={{ op://V/I/f }}" },',
      '    "bad.conf": {',
      '      "mode": "0400",',
      `      "content": ${JSON.stringify("line 1\nline 2 {{ op://V/I/f }}\nline 3 {{ op://V/I/f/g/h }}\n")}`,
      "    }",
      "  }",
      "}",
    ].join("\n");
    expect(() => parseSpec(text, "/etc/x/spec.json")).toThrow(
      /^\/etc\/x\/spec\.json:9: templates\.bad\.conf\.content: invalid secret reference "op:\/\/V\/I\/f\/g\/h"/,
    );
  });
});

describe("templates through the CLI (file source)", () => {
  it("writes exactly the rendered bytes", async () => {
    const dir = await makeTempDir();
    const vault = await writeVault(dir, {
      "Home Lab": { "Web App": { fields: { password: 'p"w$d`\\', user: "admin" }, sections: { DB: { url: "postgres://db/x?a=1&b=2" } } } },
    });
    const content =
      "user={{op://Home Lab/Web App/user}}\npass={{ op://Home Lab/Web App/password }}\r\n{{ op://Home Lab/Web App/DB/url }}{{ op://Home Lab/Web App/user }}\n{{ not.a.ref }}";
    const spec = await writeSpec(dir, {
      version: 1,
      name: "t",
      outputDir: join(dir, "out"),
      templates: { "app.conf": { content, mode: "0640" } },
    });
    const result = await runCli(["fetch", "--spec", spec, "--source", `file:${vault}`]);
    expect(result.stderr).not.toContain('p"w$d');
    expect(result.exitCode).toBe(0);
    expect(await readFile(join(dir, "out", "app.conf"), "utf8")).toBe(
      'user=admin\npass=p"w$d`\\\r\npostgres://db/x?a=1&b=2admin\n{{ not.a.ref }}',
    );
  });
});
