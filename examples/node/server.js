// A tiny app behind the gateway that trusts only the gateway's signed assertion.
//
// Node.js 20+, standard library only (node:http, node:crypto, global fetch): copy it as is.
//
//   GATEWAY_JWKS_URL=http://127.0.0.1:8080/.gateway/jwks.json \
//   GATEWAY_AUDIENCE=default PORT=8000 node server.js
//
// Every request must carry `X-Gateway-Assertion`: a short-lived JWT the gateway signs with
// Ed25519 (EdDSA) for this app (`aud` = the route's upstream name). It is verified on EVERY
// request; without a valid one the answer is 401 JSON.
//
// Why not read `X-User-Id`, `X-Tenant-Id`, `X-User-Roles` ...? Behind the gateway they are
// right (it removes every client copy and sets its own), but they are plain text: anything
// that reaches this port WITHOUT going through the gateway (a neighbouring container, a port
// published by mistake, an SSRF elsewhere) can send `X-User-Roles: admin` and be believed.
// Trust them only where the network guarantees that nothing but the gateway can connect.
// The assertion needs no such guarantee: only the gateway's private key can sign it, it
// names this app as its audience and it expires within a minute.
//
// Environment:
//   GATEWAY_JWKS_URL   the gateway's /.gateway/jwks.json (required to serve)
//   GATEWAY_AUDIENCE   this app's upstream name in the gateway config (`default` with
//                      `gateway serve --upstream URL`)
//   GATEWAY_ISSUER     expected `iss` (default "gateway"; the public_url when configured)
//   GATEWAY_JWKS_MIN_REFETCH_SECONDS  at most one JWKS fetch per this many seconds (30)
//   HOST, PORT         where to listen (default 127.0.0.1:8000)
//
// Test mode (no server; prints the claims as JSON, or the error and exits 1):
//   node server.js --verify TOKEN --jwks jwks.json [--aud NAME] [--iss ISSUER]

"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");

const ASSERTION_HEADER = "x-gateway-assertion";
const ALGORITHM = "EdDSA"; // the only algorithm accepted; never taken from the token's choice
const LEEWAY_SECONDS = 5; // tolerated clock skew between the gateway and this app
const MAX_LIFETIME_SECONDS = 60; // the gateway's assertions live at most a minute
const B64URL = /^[A-Za-z0-9_-]*$/;

class InvalidAssertion extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

class JwksUnavailable extends Error {}

function b64urlJson(part, what) {
  if (!B64URL.test(part)) throw new InvalidAssertion("assertion-malformed", `bad ${what}`);
  let value;
  try {
    value = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    throw new InvalidAssertion("assertion-malformed", `the ${what} is not JSON`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidAssertion("assertion-malformed", `the ${what} is not a JSON object`);
  }
  return value;
}

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

// Verifies one assertion and returns its claims, or throws InvalidAssertion.
// `keyFor(kid)` returns a KeyObject, or null when the gateway publishes no such kid; it may be
// async (the JWKS cache refetches on an unknown kid).
async function verifyAssertion(token, keyFor, { audience, issuer = "gateway", leeway = LEEWAY_SECONDS } = {}) {
  if (!token) throw new InvalidAssertion("assertion-missing", "X-Gateway-Assertion is required");
  const parts = token.split(".");
  if (parts.length !== 3) throw new InvalidAssertion("assertion-malformed", "the assertion is not a JWT");
  const [headerPart, payloadPart, signaturePart] = parts;
  const header = b64urlJson(headerPart, "header");
  // Refuse everything but EdDSA BEFORE touching a key: no "none", no HS256 with the public key
  // as an HMAC secret, no algorithm the token chose for us.
  if (header.alg !== ALGORITHM) {
    throw new InvalidAssertion("assertion-algorithm", "the assertion must be signed with EdDSA");
  }
  if (typeof header.kid !== "string" || header.kid === "") {
    throw new InvalidAssertion("assertion-kid", "the assertion names no key (kid)");
  }
  const key = await keyFor(header.kid);
  if (!key) throw new InvalidAssertion("assertion-kid", "the assertion's key is not published");
  if (!B64URL.test(signaturePart)) throw new InvalidAssertion("assertion-malformed", "bad signature");
  const signature = Buffer.from(signaturePart, "base64url");
  const signed = Buffer.from(`${headerPart}.${payloadPart}`, "ascii");
  let valid = false;
  try {
    valid = signature.length === 64 && crypto.verify(null, signed, key, signature);
  } catch {
    valid = false;
  }
  if (!valid) throw new InvalidAssertion("assertion-invalid", "the assertion's signature is invalid");

  // Only now, with the signature verified, are the claims worth reading.
  const claims = b64urlJson(payloadPart, "payload");
  const t = Date.now() / 1000;
  for (const name of ["exp", "iat", "nbf"]) {
    if (!isNumber(claims[name])) throw new InvalidAssertion("assertion-invalid", `the assertion has no ${name}`);
  }
  if (claims.iss !== issuer) throw new InvalidAssertion("assertion-invalid", "wrong issuer (iss)");
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(audience)) throw new InvalidAssertion("assertion-invalid", "wrong audience (aud)");
  if (t >= claims.exp + leeway) throw new InvalidAssertion("assertion-expired", "the assertion has expired");
  if (claims.nbf > t + leeway) throw new InvalidAssertion("assertion-invalid", "the assertion is not yet valid");
  if (claims.iat > t + leeway) throw new InvalidAssertion("assertion-invalid", "the assertion was issued in the future");
  if (claims.exp - claims.iat > MAX_LIFETIME_SECONDS) {
    throw new InvalidAssertion("assertion-invalid", "the assertion lives longer than allowed");
  }
  const tenant = claims.tenant;
  if (
    typeof claims.sub !== "string" ||
    tenant === null || typeof tenant !== "object" ||
    typeof tenant.id !== "string" || typeof tenant.slug !== "string" ||
    !Array.isArray(claims.roles) || !claims.roles.every((r) => typeof r === "string")
  ) {
    throw new InvalidAssertion("assertion-invalid", "the assertion lacks sub, tenant or roles");
  }
  // the key that signed it (changes after `gateway keys rotate`); not a claim, so kept apart
  Object.defineProperty(claims, "kid", { value: header.kid, enumerable: false });
  return claims;
}

// The Ed25519 signing keys of a JWKS document, by kid; anything else is ignored.
function keysFromJwks(document) {
  const keys = new Map();
  for (const jwk of (document && Array.isArray(document.keys) ? document.keys : [])) {
    if (!jwk || typeof jwk.kid !== "string" || jwk.kty !== "OKP" || jwk.crv !== "Ed25519") continue;
    if ((jwk.alg ?? ALGORITHM) !== ALGORITHM || (jwk.use ?? "sig") !== "sig") continue;
    if (typeof jwk.x !== "string") continue;
    try {
      // Only the public members: a JWKS never has a reason to carry "d".
      keys.set(jwk.kid, crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" }));
    } catch {
      // a malformed key is skipped, not fatal
    }
  }
  return keys;
}

function maxAge(cacheControl) {
  for (const directive of (cacheControl || "").split(",")) {
    const [name, value] = directive.trim().split("=");
    if (name.toLowerCase() === "max-age" && /^\d+$/.test(value || "")) return Number(value);
  }
  return null;
}

async function fetchJwks(url) {
  let resp;
  try {
    resp = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(5000) });
  } catch (err) {
    throw new JwksUnavailable(`JWKS fetch failed: ${err.message}`);
  }
  if (resp.status !== 200) throw new JwksUnavailable(`JWKS fetch answered ${resp.status}`);
  try {
    return { document: await resp.json(), maxAge: maxAge(resp.headers.get("cache-control")) };
  } catch (err) {
    throw new JwksUnavailable(`JWKS is not JSON: ${err.message}`);
  }
}

// The gateway's public keys, fetched lazily. An unknown kid triggers a refetch (a rotated-in
// key is published before it signs), but at most one fetch per `minRefetch` seconds, so a flood
// of tokens with made-up kids cannot turn into a flood of requests to the gateway. Keys are
// refreshed once older than the document's max-age; on a failed refresh the old keys are kept.
class JwksCache {
  constructor(url, { minRefetch = 30, defaultMaxAge = 60, fetcher = fetchJwks, clock = () => performance.now() / 1000 } = {}) {
    Object.assign(this, { url, minRefetch, defaultMaxAge, fetcher, clock });
    this.keys = new Map();
    this.fetchedAt = null;
    this.attemptedAt = null;
    this.maxAge = defaultMaxAge;
    this.inflight = null;
    this.fetches = 0;
  }

  async refresh(now) {
    this.attemptedAt = now;
    this.fetches += 1;
    try {
      const { document, maxAge: age } = await this.fetcher(this.url);
      this.keys = keysFromJwks(document);
      this.fetchedAt = now;
      this.maxAge = age ?? this.defaultMaxAge;
    } catch (err) {
      if (this.fetchedAt === null) throw err;
    }
  }

  async keyFor(kid) {
    if (this.inflight) await this.inflight.catch(() => {});
    const now = this.clock();
    const stale = this.fetchedAt === null || now - this.fetchedAt >= this.maxAge;
    const mayFetch = this.attemptedAt === null || now - this.attemptedAt >= this.minRefetch;
    if ((stale || !this.keys.has(kid)) && mayFetch) {
      this.inflight = this.refresh(now);
      try {
        await this.inflight;
      } finally {
        this.inflight = null;
      }
    }
    return this.keys.get(kid) ?? null;
  }
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function renderPage(claims) {
  const rows = [
    ["user (sub)", claims.sub],
    ["email", claims.email ?? "-"],
    ["tenant", `${claims.tenant.slug} (${claims.tenant.id})`],
    ["roles", claims.roles.join(", ") || "-"],
    ["auth method", claims.auth_method ?? "-"],
    ["session (sid)", claims.sid ?? "-"],
  ].map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join("");
  return `<!doctype html><html><head><meta charset="utf-8"><title>verified by the gateway</title></head>
<body><h1>Hello from the Node.js example</h1><p>Everything below comes from the gateway's signed
assertion, verified on this request.</p><table>${rows}</table></body></html>`;
}

function send(res, status, body, type) {
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body), "cache-control": "no-store" });
  res.end(body);
}

function createApp({ keyFor, audience, issuer }) {
  return http.createServer(async (req, res) => {
    req.resume(); // the body is never read
    let claims;
    try {
      claims = await verifyAssertion(req.headers[ASSERTION_HEADER], keyFor, { audience, issuer });
    } catch (err) {
      if (err instanceof InvalidAssertion) {
        return send(res, 401, JSON.stringify({ error: { code: err.code, message: err.message } }), "application/json");
      }
      if (err instanceof JwksUnavailable) {
        return send(res, 503, JSON.stringify({ error: { code: "jwks-unavailable", message: "cannot verify" } }), "application/json");
      }
      console.error(err);
      return send(res, 500, JSON.stringify({ error: { code: "internal", message: "internal error" } }), "application/json");
    }
    if ((req.headers.accept || "").includes("text/html")) {
      return send(res, 200, renderPage(claims), "text/html; charset=utf-8");
    }
    const { sub, email = null, tenant, roles, auth_method = null, sid = null } = claims;
    const body = { verified: true, sub, email, tenant, roles, auth_method, sid, kid: claims.kid, path: req.url, method: req.method };
    return send(res, 200, JSON.stringify(body), "application/json");
  });
}

function argValue(args, name) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : undefined;
}

async function cliVerify(args) {
  const keys = keysFromJwks(JSON.parse(fs.readFileSync(argValue(args, "--jwks"), "utf8")));
  try {
    const claims = await verifyAssertion(argValue(args, "--verify"), (kid) => keys.get(kid) ?? null, {
      audience: argValue(args, "--aud") ?? process.env.GATEWAY_AUDIENCE,
      issuer: argValue(args, "--iss") ?? process.env.GATEWAY_ISSUER ?? "gateway",
    });
    process.stdout.write(JSON.stringify({ claims }) + "\n");
    return 0;
  } catch (err) {
    if (!(err instanceof InvalidAssertion)) throw err;
    process.stdout.write(JSON.stringify({ error: { code: err.code, message: err.message } }) + "\n");
    return 1;
  }
}

function main() {
  const args = process.argv.slice(2);
  if (args.includes("--verify")) {
    cliVerify(args).then((code) => { process.exitCode = code; });
    return;
  }
  const { GATEWAY_JWKS_URL: jwksUrl, GATEWAY_AUDIENCE: audience } = process.env;
  if (!jwksUrl || !audience) {
    console.error("set GATEWAY_JWKS_URL and GATEWAY_AUDIENCE");
    process.exit(2);
  }
  const issuer = process.env.GATEWAY_ISSUER || "gateway";
  const cache = new JwksCache(jwksUrl, { minRefetch: Number(process.env.GATEWAY_JWKS_MIN_REFETCH_SECONDS || 30) });
  const host = process.env.HOST || "127.0.0.1";
  const port = Number(process.env.PORT || 8000);
  const server = createApp({ keyFor: (kid) => cache.keyFor(kid), audience, issuer });
  server.listen(port, host, () => console.log(`example app on http://${host}:${port} (aud=${audience}, iss=${issuer})`));
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

module.exports = { verifyAssertion, keysFromJwks, JwksCache, createApp, InvalidAssertion, JwksUnavailable };

if (require.main === module) main();
