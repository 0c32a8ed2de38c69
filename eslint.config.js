// Typed lint for the helper and the tests (typescript-eslint, type-aware rules).
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["helper/dist/**", "build/**", "node_modules/**", "docs/**", "**/*.mjs", "**/*.d.mts", "eslint.config.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ["vitest.config.ts", "bench/agent/vitest.config.mts"] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
  },
);
