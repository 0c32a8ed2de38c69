# Shared fixtures of the VM tests: a local `file` vault and a (fake) service-account token.
# Test data only: a real token never belongs in the Nix store.
{
  vaultPath = "/etc/homelab-secrets/vault.json";
  vault = {
    vaults.Demo.items = {
      static.fields.password = "static-secret-1";
      static.fields.username = "demo";
      dynamic.fields.password = "dynamic-secret-1";
      alice.fields.token = "alice-token-1";
      bob.fields.token = "bob-token-1";
    };
  };
  fakeToken = "ops_test-token-not-valid";
}
