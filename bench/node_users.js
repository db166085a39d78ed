// The article's user service, brokerless: Node's built-in http answering GET /users/:id with
// the user as JSON. Started by `warren-bench gateway` (make bench) as
//   node bench/node_users.js PORT 'USER_JSON'
"use strict";
const http = require("http");
const port = Number(process.argv[2]);
const user = JSON.parse(process.argv[3]);
http.createServer((req, res) => {
  const match = /^\/users\/([^/?]+)$/.exec(req.url);
  if (req.method !== "GET" || !match) {
    res.writeHead(404, { "Content-Type": "application/json" });
    return res.end('{"error":{"code":"not_found","message":"no route"}}');
  }
  if (match[1].toLowerCase() !== user.id) {
    res.writeHead(404, { "Content-Type": "application/json" });
    return res.end('{"error":{"code":"not_found","message":"no such user"}}');
  }
  const body = JSON.stringify(user);
  res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}).listen(port, "127.0.0.1", () => console.log("listening"));
