#!/usr/bin/env node
// Reference server for the benchmark: Node's socket.io 4.x speaking the benchmark's
// protocol. A client connects with auth {room, name} and joins that room; a `message`
// event with a text is broadcast to everyone else in the room as
// {id, name, text, time}, and acknowledged with {ok: true, id} when asked. Namespace
// /echo behaves like the project's echo view (project/echo.py): any event is sent back
// to its sender and broadcast to everyone else in the namespace as `seen` {from, event}.
//
//   node bench/node_server.js --port 9100 [--host 127.0.0.1]
//   node bench/node_server.js --port 9100 --workers 2 --redis redis://127.0.0.1:6379 [--sticky]
//
// With --workers, a node:cluster primary forks that many workers, which share the port
// (the primary accepts and hands each connection to a worker, round-robin) and one chat
// through @socket.io/redis-adapter. --sticky: the primary routes every HTTP request by
// its session id instead (@socket.io/sticky), which long-polling needs.
"use strict";

const cluster = require("node:cluster");
const http = require("node:http");
const { Server } = require("socket.io");

const args = { host: "127.0.0.1", port: 9100, workers: 0, redis: "", sticky: false };
for (let i = 2; i < process.argv.length; i++) {
  const key = process.argv[i].replace(/^--/, "");
  args[key] = key === "sticky" ? true : process.argv[++i];
}
args.workers = Number(args.workers);
const listenOptions = () => ({ host: args.host, port: Number(args.port), backlog: 65535 });
const version = require("socket.io/package.json").version;

function chat(io) {
  let nextId = 0;
  io.on("connection", (socket) => {
    const auth = socket.handshake.auth || {};
    const room = String(auth.room || "lobby");
    const name = String(auth.name || "guest");
    socket.join(room);
    socket.on("message", (text, ack) => {
      const message = { id: ++nextId, name, text: String(text), time: new Date().toISOString() };
      socket.to(room).emit("message", message);
      if (typeof ack === "function") ack({ ok: true, id: message.id });
    });
  });

  io.of("/echo").on("connection", (socket) => {
    socket.onAny((event, ...rest) => {
      const ack = typeof rest.at(-1) === "function" ? rest.pop() : null;
      socket.emit(event, ...rest);
      if (ack) ack({ echoed: event });
      socket.broadcast.emit("seen", { from: socket.id, event });
    });
  });
}

async function worker() {
  const httpServer = http.createServer();
  const io = new Server(httpServer, { serveClient: false });
  if (args.redis) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: args.redis });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  chat(io);
  if (args.sticky) {
    require("@socket.io/sticky").setupWorker(io);
    process.send({ type: "bench:ready" });
    return;
  }
  // Node's default listen backlog (511) drops bursts of connections: take the kernel's maximum.
  httpServer.listen(listenOptions(), () => {
    const where = `http://${args.host}:${httpServer.address().port}/`;
    console.log(`node socket.io ${version} (pid ${process.pid}) listening on ${where}`);
  });
}

function primary() {
  cluster.setupPrimary({ serialization: "advanced" }); // Buffers stay Buffers over IPC (sticky)
  let ready = 0;
  for (let i = 0; i < args.workers; i++) {
    const child = cluster.fork();
    child.on("message", (msg) => {
      // With --sticky only the primary listens, once every worker can take connections.
      if (msg && msg.type === "bench:ready" && ++ready === args.workers) listenSticky();
    });
  }
  cluster.on("exit", (child, code) => {
    console.log(`worker ${child.process.pid} exited with ${code}`);
    process.exit(1);
  });
  console.log(`node socket.io ${version}: primary ${process.pid}, ${args.workers} workers, redis ${args.redis}`);
}

function listenSticky() {
  const httpServer = http.createServer();
  require("@socket.io/sticky").setupMaster(httpServer, { loadBalancingMethod: "least-connection" });
  httpServer.listen(listenOptions(), () => console.log(`sticky primary listening on port ${args.port}`));
}

for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
if (args.workers > 1 && cluster.isPrimary) primary();
else worker();
