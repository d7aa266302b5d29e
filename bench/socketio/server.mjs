// The Socket.IO 4 peer of hubwire's benchmarks (docs/benchmarks.md).
//
// It offers what hubwire's `diagnostics` hub offers the load scenarios, as
// Socket.IO events on the main namespace:
//
//   join(group, ack)                  -> socket.join(group), then ack(null)
//   sendToGroup(group, event, payload[, ack]) -> io.to(group).emit(event, payload)
//   echo(value, ack)                  -> ack(value)
//
// Environment:
//   PORT       port to listen on (default 3000)
//   HOST       address to listen on (default 127.0.0.1: benchmarks stay on loopback)
//   REDIS_URL  when set, rooms span every process on that Redis through
//              @socket.io/redis-adapter (one publishing and one subscribing
//              client, from the `redis` package); unset: in-memory adapter
//
// WebSocket transport only, as the load generator connects with
// `/socket.io/?EIO=4&transport=websocket` directly. Prints one line starting
// with "ready" once it accepts connections; SIGTERM or SIGINT stops it.

import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";
const redisUrl = process.env.REDIS_URL;

const httpServer = createServer();
const io = new Server(httpServer, { transports: ["websocket"], serveClient: false });

const redisClients = [];
if (redisUrl) {
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    client.on("error", (error) => console.error(`redis: ${error.message}`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);
  redisClients.push(pubClient, subClient);
  io.adapter(createAdapter(pubClient, subClient));
}

io.on("connection", (socket) => {
  socket.on("join", (group, ack) => {
    if (typeof group !== "string") return;
    socket.join(group);
    if (typeof ack === "function") ack(null);
  });
  socket.on("sendToGroup", (group, event, payload, ack) => {
    if (typeof group !== "string" || typeof event !== "string") return;
    io.to(group).emit(event, payload);
    if (typeof ack === "function") ack(null);
  });
  socket.on("echo", (value, ack) => {
    if (typeof ack === "function") ack(value);
  });
});

httpServer.listen(port, host, () => {
  const adapter = redisUrl ? `redis ${redisUrl}` : "in-memory";
  console.log(`ready: socket.io ${host}:${port} (adapter ${adapter}, pid ${process.pid})`);
});

function shutdown() {
  io.close(() => {
    // Quitting may fail if Redis is already gone; the process ends either way.
    Promise.allSettled(redisClients.map((client) => client.quit())).then(() => process.exit(0));
  });
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
