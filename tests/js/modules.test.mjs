// Every module of the web page but its entry (app.js, which starts the page) imports without a
// DOM, so that Node can test them; and every English text has its French one and back.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { test } from "node:test";

import { STRINGS } from "../../gateway/web/static/i18n.js";

const STATIC = new URL("../../gateway/web/static/", import.meta.url);

test("the page's modules import without a browser", async () => {
  const modules = readdirSync(STATIC).filter((name) => name.endsWith(".js") && name !== "app.js");
  assert.ok(modules.length >= 8, modules);
  for (const name of modules) await import(new URL(name, STATIC));
});

test("every text is in English and in French", () => {
  assert.deepEqual(Object.keys(STRINGS.fr).sort(), Object.keys(STRINGS.en).sort());
});
