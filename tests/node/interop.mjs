// Two official Node.js socket.io-client 4.x clients chat through the server, then print what they saw as JSON.
// Usage: node interop.mjs <server url> <websocket|polling> <room>
import { io } from "socket.io-client";

const [url, transport, room] = process.argv.slice(2);
const WAIT_MS = 10_000;

setTimeout(() => {
  console.error("interop: timed out");
  process.exit(2);
}, 4 * WAIT_MS).unref();

/** A connected client that has received `history` and `welcome`, with every later event recorded. */
async function join(name) {
  const socket = io(url, { auth: { room, name }, transports: [transport], reconnection: false });
  const seen = { events: [], history: null, welcome: null };
  socket.onAny((event, ...args) => seen.events.push([event, ...args]));
  const history = new Promise((resolve) => socket.once("history", resolve));
  const welcome = new Promise((resolve) => socket.once("welcome", resolve));
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
  seen.history = await history;
  seen.welcome = await welcome;
  seen.order = seen.events.map(([event]) => event);
  return { socket, seen };
}

/** The first `event` this socket receives from now on. */
function next(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${WAIT_MS} ms`)), WAIT_MS);
    socket.once(event, (payload) => {
      clearTimeout(timer);
      resolve(payload);
    });
  });
}

const alice = await join("alice");
const aliceAck = await alice.socket.timeout(WAIT_MS).emitWithAck("message", `hello over ${transport}`);

const bobJoined = next(alice.socket, "announcement");
const bob = await join("bob");
const joinNote = await bobJoined;

const aliceReceives = next(alice.socket, "message");
const bobAck = await bob.socket.timeout(WAIT_MS).emitWithAck("message", "hi alice");
const aliceReceived = await aliceReceives;
const rejected = await bob.socket.timeout(WAIT_MS).emitWithAck("message", "   ");

const bobLeft = next(alice.socket, "announcement");
bob.socket.disconnect();
const leaveNote = await bobLeft;

// Bob comes back having seen alice's first message: he is sent what came after, instead of the history.
const back = io(url, { auth: { room, name: "bob", last_id: aliceAck.id }, transports: [transport], reconnection: false });
const replay = await next(back, "replay");
back.disconnect();

const result = {
  transport: alice.socket.io.engine.transport.name,
  alice: { welcome: alice.seen.welcome, history: alice.seen.history, order: alice.seen.order, ack: aliceAck },
  bob: { welcome: bob.seen.welcome, history: bob.seen.history, ack: bobAck, rejected },
  aliceReceived,
  joinNote,
  leaveNote,
  replay,
};
alice.socket.disconnect();
console.log(JSON.stringify(result));
