// Test helper: an unsigned JWT with the given claims (the page only reads claims; the server
// verifies signatures).
export function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.c2lnbmF0dXJl`;
}
