// The article's API gateway, brokerless: Node's built-in http checking the HS256 bearer token
// (as the article's express gateway does with jsonwebtoken) and proxying GET /users/:id to the
// user service over keep-alive HTTP. Started by `warren-bench gateway` (make bench) as
//   JWT_SECRET=... node bench/node_gateway.js PORT USERS_PORT
"use strict";
const http = require("http");
const crypto = require("crypto");
const port = Number(process.argv[2]);
const usersPort = Number(process.argv[3]);
const secret = process.env.JWT_SECRET;
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

function verify(header) {
  if (!header || !header.startsWith("Bearer ")) return null;
  const parts = header.slice(7).trim().split(".");
  if (parts.length !== 3) return null;
  const expected = crypto.createHmac("sha256", secret).update(parts[0] + "." + parts[1]).digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null;
  const head = JSON.parse(Buffer.from(parts[0], "base64url"));
  const claims = JSON.parse(Buffer.from(parts[1], "base64url"));
  if (head.alg !== "HS256" || !(claims.exp > Date.now() / 1000)) return null;
  return claims;
}

function fail(res, status, code, message) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ error: { code, message } }));
}

http.createServer((req, res) => {
  const match = /^\/users\/([^/?]+)$/.exec(req.url);
  if (req.method !== "GET" || !match) return fail(res, 404, "not_found", "no route");
  let claims;
  try { claims = verify(req.headers.authorization); } catch (e) { claims = null; }
  if (!claims) return fail(res, 401, "unauthorized", "invalid token");
  if (claims.role !== "admin" && claims.sub.toLowerCase() !== match[1].toLowerCase()) return fail(res, 403, "forbidden", "not yours");
  const upstream = http.request({ host: "127.0.0.1", port: usersPort, path: req.url, agent }, (reply) => {
    const chunks = [];
    reply.on("data", (chunk) => chunks.push(chunk));
    reply.on("end", () => {
      const body = Buffer.concat(chunks);
      res.writeHead(reply.statusCode, { "Content-Type": "application/json", "Content-Length": body.length });
      res.end(body);
    });
  });
  upstream.on("error", () => fail(res, 503, "unavailable", "the user service is unreachable"));
  upstream.end();
}).listen(port, "127.0.0.1", () => console.log("listening"));
