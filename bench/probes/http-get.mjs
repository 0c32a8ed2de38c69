// Probe: what one authenticated GET to a Connect server costs a fresh Node process, with the
// global fetch (undici, whose HTTP parser is a WASM module compiled on first use) or with
// node:http.
//   node bench/probes/http-get.mjs fetch|http URL TOKENFILE
import { readFileSync } from "node:fs";

const [client, url, tokenFile] = process.argv.slice(2);
const headers = { authorization: `Bearer ${readFileSync(tokenFile, "utf8").trim()}` };
let body;
if (client === "fetch") {
  const response = await fetch(url, { headers });
  body = await response.text();
} else if (client === "http") {
  const http = await import("node:http");
  body = await new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk) => (text += chunk));
        response.on("end", () => resolve(text));
      })
      .on("error", reject);
  });
} else {
  process.stderr.write("usage: http-get.mjs fetch|http URL TOKENFILE\n");
  process.exit(64);
}
JSON.parse(body);
process.exit(0);
