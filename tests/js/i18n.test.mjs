// The page's language (i18n.js) and its problem texts (state.js problemText): every code of the
// spec's table (spec/ors-v1.md, 12.2) has its own text in English and in French, and no server
// `detail` ever reaches the page.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { STRINGS, pickLang, translator } from "../../gateway/web/static/i18n.js";
import { problemText } from "../../gateway/web/static/state.js";

const SPEC = readFileSync(new URL("../../spec/ors-v1.md", import.meta.url), "utf8");

/** The codes of the spec's table of error codes (12.2): the first cell of each of its rows. */
function specCodes() {
  const section = SPEC.split(/^### 12\.2 Error codes$/m)[1].split(/^## /m)[0];
  return [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
}

test("the spec's table of error codes is read", () => {
  const codes = specCodes();
  assert.ok(codes.length >= 30, codes);
  assert.ok(codes.includes("rate_limited") && codes.includes("too_many_links"));
});

for (const language of ["en", "fr"]) {
  test(`every problem code of the spec has its own text in ${language}, never the server's detail`, () => {
    const tr = translator(language);
    const generic = tr("err_generic");
    for (const code of specCodes()) {
      assert.ok(Object.hasOwn(STRINGS[language], `err_${code}`), `err_${code} missing in ${language}`);
      const detail = `server detail for ${code}`;
      const text = problemText({ code, detail, problem: { code, detail } }, tr);
      assert.notEqual(text, generic, code);
      assert.ok(!text.includes(detail) && !text.includes("_"), text);
    }
    // an unknown code: the generic text, not the detail
    const unknown = problemText({ code: "from_the_future", detail: "Something in English" }, tr);
    assert.equal(unknown, generic);
  });
}

test("the French and English texts of a code differ", () => {
  const en = translator("en");
  const fr = translator("fr");
  for (const code of specCodes()) assert.notEqual(en(`err_${code}`), fr(`err_${code}`), code);
});

test("?lang= wins over the kept choice, which wins over the browser's language", () => {
  const french = { languages: ["fr-FR"] };
  assert.equal(pickLang("?lang=en", french, "fr"), "en");
  assert.equal(pickLang("", french, "en"), "en");
  assert.equal(pickLang("", french, null), "fr");
  assert.equal(pickLang("?lang=de", { language: "en-GB" }, "xx"), "en", "unknown languages are ignored");
});
