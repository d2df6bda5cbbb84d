#!/usr/bin/env node
// Reference server for the benchmark: Node's socket.io 4.x speaking the benchmark's
// protocol. A client connects with auth {room, name} and joins that room; a `message`
// event with a text is broadcast to everyone else in the room as
// {id, name, text, time}, and acknowledged with {ok: true, id} when asked. Namespace
// /echo behaves like the project's echo view (project/echo.py): any event is sent back
// to its sender and broadcast to everyone else in the namespace as `seen` {from, event}.
//
//   node bench/node_server.js --port 9100 [--host 127.0.0.1]
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const args = { host: "127.0.0.1", port: 9100 };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];

const httpServer = http.createServer();
const io = new Server(httpServer, { serveClient: false });
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
  socket.onAny((event, ...args) => {
    const ack = typeof args.at(-1) === "function" ? args.pop() : null;
    socket.emit(event, ...args);
    if (ack) ack({ echoed: event });
    socket.broadcast.emit("seen", { from: socket.id, event });
  });
});

// Node's default listen backlog (511) drops bursts of connections: take the kernel's maximum.
httpServer.listen({ host: args.host, port: Number(args.port), backlog: 65535 }, () => {
  console.log(`node socket.io ${require("socket.io/package.json").version} listening on http://${args.host}:${httpServer.address().port}/`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
