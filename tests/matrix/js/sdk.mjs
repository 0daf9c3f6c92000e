// What the matrix-js-sdk drivers (rtc_member.mjs, e2ee_keys.mjs) set up before anything else:
// the SDK's logging kept off stdout (which carries the protocol), the Node >= 22 built-ins
// matrix-js-sdk 43 may use provided on Node 20, and `loadSdk(path)`, a module of the SDK whose
// folder the Python wrapper passes in MATRIX_JS_SDK (NODE_PATH is not enough for ES modules).

import { pathToFileURL } from "node:url";

for (const level of ["log", "info", "debug", "warn", "trace"]) console[level] = console.error;

if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const sdkPath = process.env.MATRIX_JS_SDK;
if (!sdkPath) throw new Error("MATRIX_JS_SDK (the path of node_modules/matrix-js-sdk) is not set");

/** The SDK's module lib/PATH. */
export const loadSdk = (path) => import(pathToFileURL(`${sdkPath}/lib/${path}`).href);
