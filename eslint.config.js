// Typed lint for the helper and the tests (typescript-eslint, type-aware rules).
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["helper/dist/**", "build/**", "node_modules/**", "docs/**", "**/*.mjs", "**/*.d.mts", "eslint.config.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ["vitest.config.ts"] }, tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    // Owned by the e2e-infrastructure branch, which is rewriting it: its two String(unknown)
    // findings are fixed there. Remove this block once that branch is merged.
    files: ["tests/e2e/container.ts"],
    rules: { "@typescript-eslint/no-base-to-string": "off" },
  },
);
