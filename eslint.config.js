// ESLint's configuration (flat config) for the web page's ES modules (gateway/web/static) and
// their Node unit tests (tests/js). `make lint` runs it with ESLint installed under .cache/ by
// tests/eslint_npm.sh, outside any node_modules folder this file would find: NODE_PATH names it,
// and only require() reads NODE_PATH.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const js = require("@eslint/js");
const globals = require("globals");

export default [
  js.configs.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      // Text is text (STYLE.md: no innerHTML): names and messages come from other people.
      "no-restricted-properties": [
        "error",
        ...["innerHTML", "outerHTML", "insertAdjacentHTML"].map((property) => ({
          property,
          message: "Build elements with el() and set text with textContent.",
        })),
      ],
    },
  },
  {
    files: ["gateway/web/static/**/*.js"],
    languageOptions: { sourceType: "module", globals: globals.browser },
  },
  {
    files: ["tests/js/**/*.mjs", "eslint.config.js"],
    languageOptions: { sourceType: "module", globals: globals.node },
  },
];
