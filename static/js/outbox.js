// Sending chat messages so that none is silently lost, and none is sent twice.
//
// - A message is emitted only while the page is in the room (between `welcome` and `disconnect`);
//   otherwise it waits here, "queued". socket.io-client's own buffering of emits made while
//   disconnected is never used, so it cannot resend anything behind our back.
// - Every emit waits at most ACK_TIMEOUT_MS for the server's acknowledgement: `{ok: true, id}` means
//   stored ("sent"), `{error}` means rejected. No answer while still connected means "failed" (the
//   user may retry). A connection lost before the answer makes it "unconfirmed": the server may or may
//   not have stored it. On reconnection the room's `history` settles that: a message with the same
//   name and text, stored after the last one the page knew of when sending, is this one; if there is
//   none it is sent again (at most MAX_ATTEMPTS times in all).

export const ACK_TIMEOUT_MS = 10000;
export const MAX_ATTEMPTS = 3;

export class Outbox {
  /**
   * @param socket the Socket.IO socket
   * @param onChange called with an item whenever its `state` changes:
   *   queued, sending, unconfirmed, sent (with `id`), rejected or failed (with `error`)
   * @param known whether a message id is already shown, so never taken for an unconfirmed one
   * @param lastId the highest message id shown
   */
  constructor(socket, { onChange, known, lastId }) {
    this.socket = socket;
    this.onChange = onChange;
    this.known = known;
    this.lastId = lastId;
    this.items = []; // queued, sending or unconfirmed, oldest first
    this.ready = false;
    this.name = "";
  }

  /** A new message from the user: sent now if the page is in the room, else queued. */
  add(text, extra = {}) {
    const item = { ...extra, text, state: "queued", attempts: 0 };
    this.enqueue(item);
    return item;
  }

  /** Send a failed message again, as if new. */
  retry(item) {
    item.attempts = 0;
    item.state = "queued";
    this.enqueue(item);
  }

  enqueue(item) {
    this.items.push(item);
    if (this.ready) this.send(item);
    else this.onChange(item);
  }

  /** The connection is gone: nothing more is emitted until `resume`. */
  pause() {
    this.ready = false;
  }

  /** In the room (again) as `name`: settle unconfirmed messages against `history`, send the rest in order. */
  resume(name, history) {
    this.name = name;
    this.ready = true;
    const taken = new Set();
    for (const item of [...this.items]) {
      if (item.state === "unconfirmed") {
        const stored = history.find(
          (message) =>
            message.id > item.afterId &&
            message.name === item.name &&
            message.text === item.text &&
            !taken.has(message.id) &&
            !this.known(message.id),
        );
        if (stored) {
          taken.add(stored.id);
          this.settle(item, "sent", { id: stored.id });
          continue;
        }
        if (item.attempts >= MAX_ATTEMPTS) {
          this.settle(item, "failed", { error: "the connection kept dropping" });
          continue;
        }
      }
      if (item.state === "queued" || item.state === "unconfirmed") this.send(item);
    }
  }

  send(item) {
    item.state = "sending";
    item.attempts += 1;
    item.name = this.name;
    item.afterId = this.lastId();
    const attempt = Symbol("attempt"); // answers to earlier attempts are stale
    item.attempt = attempt;
    this.onChange(item);
    this.socket.timeout(ACK_TIMEOUT_MS).emit("message", item.text, (error, answer) => {
      if (item.state !== "sending" || item.attempt !== attempt) return;
      if (error && this.ready) this.settle(item, "failed", { error: "no answer from the server" });
      else if (error) {
        item.state = "unconfirmed";
        this.onChange(item);
      } else if (answer && answer.ok) this.settle(item, "sent", { id: answer.id });
      else this.settle(item, "rejected", { error: (answer && answer.error) || "rejected by the server" });
    });
  }

  settle(item, state, details) {
    Object.assign(item, details, { state });
    this.items = this.items.filter((other) => other !== item);
    this.onChange(item);
  }
}
