// Per-user secrets as the NixOS module sets them up (golden `wrappers` and `etc` entries),
// under a real systemd: the SUID/SGID wrapper installed like security.wrappers does, the
// mapfile and config.json with the module's owners and modes, real users. Each user gets
// exactly their entries, the token stays unreadable, and `doctor` agrees with the module.
import { basename, join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildWrapper } from "../../helper/scripts/build-wrapper.mjs";
import { mapStorePaths } from "./render-units.js";
import { bootScenario, describeE2E, vaultPath, type Scenario } from "./scenario.js";
import { demoVault } from "./vault.js";

const wrapperPath = "/run/wrappers/bin/homelab-secrets-user";

describeE2E("real systemd: per-user secrets through the wrapper the module declares", () => {
  let s: Scenario;
  const vault = demoVault();
  const tokenOf = (user: string) => vault.vaults["Demo"]!.items[user]!.fields!["token"]!;

  beforeAll(async () => {
    s = await bootScenario("user", vault);
    const declared = s.golden.wrappers?.["homelab-secrets-user"];
    if (!declared) throw new Error("the golden units declare no homelab-secrets-user wrapper");
    const service = declared.owner;
    await s.c.cx(["groupadd", "--system", "-f", declared.group]);
    await s.c.cx(["useradd", "--system", "-g", declared.group, "--no-create-home", "--shell", "/usr/sbin/nologin", service]);
    for (const user of ["alice", "bob"]) await s.c.cx(["useradd", "--create-home", user]);
    // The module's /etc entries were installed root:root before the accounts existed.
    for (const [path, entry] of Object.entries(s.golden.etc ?? {})) {
      await s.c.cx(["chown", `${entry.user ?? "root"}:${entry.group ?? "root"}`, `/etc/${path}`]);
    }
    await s.c.cx(["chown", `${service}:${declared.group}`, "/etc/homelab-secrets/token"]);
    await s.c.cx(["chmod", "0600", "/etc/homelab-secrets/token"]);
    // This container runs no DynamicUser service, so the file-source vault can be what user
    // mode wants: readable by the service account only (doctor checks it).
    await s.c.cx(["chown", `root:${declared.group}`, vaultPath]);
    await s.c.cx(["chmod", "0640", vaultPath]);
    // What security.wrappers does: a copy of the package's wrapper, owned and moded as declared.
    const source = mapStorePaths(String(declared.source), s.golden);
    expect(source).toBe("/opt/homelab-secrets/libexec/homelab-secrets/homelab-secrets-user");
    const built = buildWrapper({
      node: "/usr/local/bin/node",
      cli: "/opt/homelab-secrets/lib/helper/dist/cli.js",
      out: join(s.c.root, "run-wrapper-build"),
    });
    // NixOS mounts /run/wrappers as its own tmpfs without nosuid (nspawn's /run is nosuid), then
    // copies each wrapper, chmod 0000, chown, and `chmod u+s,g+s,<permissions>`.
    const install = [
      "mkdir -p /run/wrappers && mount -t tmpfs -o nodev,mode=755 wrappers /run/wrappers && mkdir /run/wrappers/bin",
      `cp /${basename(built)} "$1" && chmod 0000 "$1" && chown "$2" "$1" && chmod "u+s,g+s,$3" "$1"`,
    ].join(" && ");
    await s.c.sh(install, [wrapperPath, `${declared.owner}:${declared.group}`, String(declared.permissions)]);
    for (const user of ["alice", "bob"]) {
      const uid = await s.uid(user);
      await s.c.sh('install -d -m 0700 -o "$1" -g "$1" "/run/user/$2"', [user, String(uid)]);
    }
  }, 180_000);
  afterAll(async () => {
    await s?.c.teardown();
  }, 60_000);

  const asUser = (user: string, args: string[] = []) => s.c.cx(["runuser", "-u", user, "--", wrapperPath, ...args], { allowFail: true });
  const listing = async (user: string) => {
    const uid = await s.uid(user);
    const r = await s.c.sh('cd "/run/user/$1/secrets" 2>/dev/null && find . -type f -printf "%P %U %m\\n" | sort', [String(uid)], {
      allowFail: true,
    });
    return r.stdout
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [path, owner, mode] = line.split(" ");
        return { path: path!, owner: Number(owner), mode: mode! };
      });
  };
  const read = async (user: string, path: string) =>
    (await s.c.sh('cat "/run/user/$1/secrets/$2"', [String(await s.uid(user)), path])).stdout;

  it("the wrapper is installed SUID/SGID to the service account, as the module declares", async () => {
    const declared = s.golden.wrappers!["homelab-secrets-user"]!;
    expect([declared.setuid, declared.setgid]).toEqual([true, true]);
    const stat = await s.c.cx(["stat", "-c", "%U:%G %a", wrapperPath]);
    // u+rx,g+x,o+x plus the set-id bits: 6511
    expect(stat.stdout.trim()).toBe(`${declared.owner}:${declared.group} 6511`);
  });

  it("doctor finds the module's token, mapfile, config.json and wrapper safe", async () => {
    const r = await s.c.cx(["/opt/homelab-secrets/bin/homelab-secrets", "doctor", "--wrapper", wrapperPath], { allowFail: true });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/UNSAFE/);
  });

  it("each user gets exactly their mapfile entries, owned by them, mode 0600", async () => {
    const alice = await asUser("alice");
    expect(alice.code, alice.stderr).toBe(0);
    const bob = await asUser("bob");
    expect(bob.code, bob.stderr).toBe(0);
    const aliceUid = await s.uid("alice");
    const bobUid = await s.uid("bob");
    expect(await listing("alice")).toEqual([
      { path: "shared/static-password", owner: aliceUid, mode: "600" },
      { path: "token", owner: aliceUid, mode: "600" },
    ]);
    expect(await listing("bob")).toEqual([{ path: "token", owner: bobUid, mode: "600" }]);
    expect(await read("alice", "token")).toBe(tokenOf("alice"));
    expect(await read("bob", "token")).toBe(tokenOf("bob"));
    expect(await read("alice", "shared/static-password")).toBe(vault.vaults["Demo"]!.items["static"]!.fields!["password"]);
  });

  it("a user can read neither the token nor the vault, and cannot point the wrapper at their own mapfile", async () => {
    for (const file of ["/etc/homelab-secrets/token", "/etc/homelab-secrets/mapfile", "/etc/homelab-secrets/config.json"]) {
      expect((await s.c.cx(["runuser", "-u", "alice", "--", "cat", file], { allowFail: true })).code, file).not.toBe(0);
    }
    await s.c.sh('echo "alice op://Demo/bob/token stolen" > /tmp/alice-map && chown alice /tmp/alice-map');
    const attempt = await asUser("alice", ["--map-file-path", "/tmp/alice-map"]);
    expect(attempt.code).toBe(77);
    expect((await listing("alice")).map((f) => f.path)).not.toContain("stolen");
  });

  it("tags filter and --cleanup removes only the caller's files", async () => {
    await asUser("alice", ["--cleanup"]);
    expect(await listing("alice")).toEqual([]);
    expect(await listing("bob")).toHaveLength(1);
    const tagged = await asUser("alice", ["--tags", "dev"]);
    expect(tagged.code, tagged.stderr).toBe(0);
    expect((await listing("alice")).map((f) => f.path)).toEqual(["token"]);
  });
});
