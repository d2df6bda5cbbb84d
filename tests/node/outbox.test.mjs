// Unit tests of the page's outbox (static/js/outbox.js) with a fake socket: node --test outbox.test.mjs
import assert from "node:assert/strict";
import { test } from "node:test";

import { ACK_TIMEOUT_MS, MAX_ATTEMPTS, Outbox } from "../../static/js/outbox.js";

/** Records emits; the test answers them (`answer(index, error, reply)`) as the server or socket.io would. */
class FakeSocket {
  constructor() {
    this.emits = [];
  }

  timeout(ms) {
    return { emit: (event, text, callback) => this.emits.push({ ms, event, text, callback }) };
  }

  answer(index, error, reply) {
    this.emits[index].callback(error, reply);
  }
}

function setup({ known = [], lastId = 0 } = {}) {
  const socket = new FakeSocket();
  const changes = [];
  const outbox = new Outbox(socket, {
    onChange: (item) => changes.push(`${item.text}:${item.state}`),
    known: (id) => known.includes(id),
    lastId: () => lastId,
  });
  return { socket, outbox, changes };
}

test("messages wait while offline and go out in order once in the room", () => {
  const { socket, outbox, changes } = setup();
  outbox.add("one");
  outbox.add("two");
  assert.deepEqual(socket.emits, []);
  outbox.resume("alice", []);
  assert.deepEqual(
    socket.emits.map((emit) => [emit.event, emit.text, emit.ms]),
    [
      ["message", "one", ACK_TIMEOUT_MS],
      ["message", "two", ACK_TIMEOUT_MS],
    ],
  );
  assert.deepEqual(changes, ["one:queued", "two:queued", "one:sending", "two:sending"]);
});

test("sent only when acknowledged, rejected with the server's reason", () => {
  const { socket, outbox } = setup();
  outbox.resume("alice", []);
  const good = outbox.add("good");
  const bad = outbox.add("");
  assert.equal(good.state, "sending");
  socket.answer(0, null, { ok: true, id: 7 });
  socket.answer(1, null, { error: "message is empty" });
  assert.deepEqual([good.state, good.id], ["sent", 7]);
  assert.deepEqual([bad.state, bad.error], ["rejected", "message is empty"]);
  assert.deepEqual(outbox.items, []);
});

test("no answer while connected: failed, and a retry sends it again", () => {
  const { socket, outbox } = setup();
  outbox.resume("alice", []);
  const item = outbox.add("hello");
  socket.answer(0, new Error("operation has timed out"));
  assert.deepEqual([item.state, item.error], ["failed", "no answer from the server"]);
  outbox.retry(item);
  assert.equal(socket.emits.length, 2);
  socket.answer(1, null, { ok: true, id: 3 });
  assert.equal(item.state, "sent");
});

test("connection lost before the ack: history shows it was stored, so it is not sent twice", () => {
  const { socket, outbox } = setup({ lastId: 10 });
  outbox.resume("alice", []);
  const item = outbox.add("hello");
  outbox.pause();
  socket.answer(0, new Error("socket has been disconnected"));
  assert.equal(item.state, "unconfirmed");
  outbox.resume("alice", [
    { id: 9, name: "alice", text: "hello", time: "" }, // older than the send: another "hello"
    { id: 11, name: "bob", text: "hello", time: "" }, // someone else's
    { id: 12, name: "alice", text: "hello", time: "" },
  ]);
  assert.deepEqual([item.state, item.id], ["sent", 12]);
  assert.equal(socket.emits.length, 1);
});

test("connection lost before the ack and not in history: sent again, until MAX_ATTEMPTS", () => {
  const { socket, outbox } = setup({ known: [12], lastId: 10 });
  outbox.resume("alice", []);
  const item = outbox.add("hello");
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    assert.equal(socket.emits.length, attempt);
    outbox.pause();
    socket.answer(attempt - 1, new Error("socket has been disconnected"));
    outbox.resume("alice", [{ id: 12, name: "alice", text: "hello", time: "" }]); // 12 is another one, shown
  }
  assert.deepEqual([item.state, item.error], ["failed", "the connection kept dropping"]);
  assert.equal(socket.emits.length, MAX_ATTEMPTS);
});

test("a late answer to an earlier attempt is ignored", () => {
  const { socket, outbox } = setup();
  outbox.resume("alice", []);
  const item = outbox.add("hello");
  socket.answer(0, new Error("operation has timed out"));
  outbox.retry(item);
  socket.answer(0, null, { error: "stale" });
  assert.equal(item.state, "sending");
  socket.answer(1, null, { ok: true, id: 5 });
  assert.deepEqual([item.state, item.id], ["sent", 5]);
});
