#!/usr/bin/env node
// Load generator: raw Engine.IO v4 / Socket.IO v5 clients over WebSocket (the `ws`
// package) or HTTP long-polling, spread over worker processes and 127.x source
// addresses. Driven by JSON commands, one per line on stdin; answers one JSON line
// per command on stdout (bench/run.py drives it). It exits when stdin closes.
//
//   node bench/loadgen.js --url http://127.0.0.1:9000 [--workers 2] [--sources 8]
//
// Commands:
//   {"cmd": "connect", "count": N, "room_size": 0, "transport": "websocket", "namespace": "/",
//    "stalled": false, "source_prefix": "127.0.1."}
//        open N more receivers (room_size 0: all in room "bench"; else rooms of that size), in a
//        Socket.IO namespace (other than "/": connected with `40/ns,`, no auth). Stalled receivers
//        stop reading their socket once connected (the ws stream paused), are counted apart and
//        never expected to receive anything
//   {"cmd": "sender", "namespace": "/"}  open the sender (a WebSocket client in room "bench")
//   {"cmd": "drain", "quiet_ms": 1000}  wait until no client got a non-ping packet for quiet_ms
//   {"cmd": "fanout", "messages": M, "window": 4}   send M messages, at most `window` not yet
//        delivered to every receiver; answer when all are delivered (or on timeout)
//   {"cmd": "steady", "rate": R, "seconds": S}       send R messages a second for S seconds
//        (fanout and steady: "pad": P pads each message's text to P characters; when the server's
//        session ids name their process, "<token>.<random>" as this project's do, the answer also
//        splits the latencies by whether the receiver sits on the sender's server process or not)
//   {"cmd": "broadcast", "emit": "ping", "event": "seen", "limit": 60, "quiet_ms": 3000}
//        the sender emits one event in its namespace; answer how many receivers got `event`
//        and when (once every receiver did, after limit seconds, or quiet_ms without a new one)
//   {"cmd": "storm", "count": N, "room": "lobby", "welcome": "welcome", "limit": 120, "quiet_ms": 1500}
//        open N clients of room `room` all at once (no limit on connections in flight, no retry),
//        from the source addresses in turn; record per client when the Socket.IO CONNECT answer
//        came, when the `welcome` event came (welcome null: the CONNECT answer is the welcome), and
//        whether and why its connection ended. Answers once every client was welcomed or ended (or
//        after limit seconds) and no client got a packet for quiet_ms
//   {"cmd": "storm_message", "limit": 60, "quiet_ms": 3000}   one storm client sends one `message`;
//        answer how many of the other storm clients got it
//   {"cmd": "storm_report"}       the storm's per-client records, summed: welcomed, closed by the
//        server, failed (and why), welcome times, who got the message
//   {"cmd": "stats"}              counts of connected / closed clients
//   {"cmd": "quit"}
"use strict";

const { fork } = require("node:child_process");
const http = require("node:http");
const readline = require("node:readline");
const WebSocket = require("ws");

const RS = "\x1e"; // Engine.IO v4 long-polling packet separator

function parseArgs(argv) {
  const args = { url: "http://127.0.0.1:9000", workers: 2, sources: 8, timeout: 600 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, "");
    if (key === "worker") args.worker = true;
    else args[key] = argv[++i];
  }
  args.workers = Number(args.workers);
  args.sources = Number(args.sources);
  args.timeout = Number(args.timeout);
  return args;
}

const nowNs = () => process.hrtime.bigint(); // CLOCK_MONOTONIC: the same clock in every process
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------
// One client. `onPacket(client, text)` sees every Engine.IO packet as a string.

class Client {
  constructor(spec, url, hooks) {
    this.spec = spec; // {idx, room, name, src, transport, namespace, stalled}
    this.url = url;
    this.hooks = hooks;
    this.state = "new"; // new -> connecting -> open | failed | closed
    this.ws = null;
    this.sid = null;
    this.serverWorker = null; // the server process holding the session, when its id says ("<token>.")
    this.agent = null;
  }

  connectPacket() {
    const namespace = this.spec.namespace || "/";
    if (namespace !== "/") return `40${namespace},`;
    return `40${JSON.stringify({ room: this.spec.room, name: this.spec.name })}`;
  }

  start(timeoutMs) {
    this.state = "connecting";
    this.timer = setTimeout(() => this.fail("timeout"), timeoutMs);
    if (this.spec.transport === "polling") this.startPolling();
    else this.startWebSocket();
  }

  fail(reason) {
    if (this.state !== "connecting") return;
    this.state = "failed";
    clearTimeout(this.timer);
    this.teardown();
    this.hooks.onFailed(this, reason);
  }

  opened() {
    this.state = "open";
    clearTimeout(this.timer);
    // A stalled receiver reads nothing more: the server's writes pile up in the kernel, then in the server.
    if (this.spec.stalled && this.ws) this.ws.pause();
    this.hooks.onOpen(this);
  }

  lost(reason) {
    if (this.state === "connecting") return this.fail(reason);
    if (this.state !== "open") return;
    this.state = "closed";
    this.teardown();
    this.hooks.onClosed(this, reason);
  }

  teardown() {
    if (this.ws) {
      this.ws.removeAllListeners();
      this.ws.on("error", () => {});
      this.ws.terminate();
      this.ws = null;
    }
    if (this.agent) {
      this.agent.destroy();
      this.agent = null;
    }
  }

  close() {
    this.state = "done";
    clearTimeout(this.timer);
    this.teardown();
  }

  // Engine.IO packet handling, shared by both transports.
  packet(text) {
    const type = text.charCodeAt(0);
    if (type === 50 /* "2" ping */) return this.send("3");
    if (type === 52 /* "4" message */) {
      if (text.charCodeAt(1) === 50 /* "42" event */) return this.hooks.onEvent(this, text);
      if (text.startsWith("40")) {
        if (this.state === "connecting") this.opened();
        return;
      }
      if (text.startsWith("44")) return this.fail(`connect_error ${text.slice(2, 200)}`);
      if (text.startsWith("41")) return this.lost("server disconnect");
      return;
    }
    if (type === 48 /* "0" open */) {
      this.sid = JSON.parse(text.slice(1)).sid;
      const dot = this.sid.indexOf(".");
      this.serverWorker = dot > 0 ? this.sid.slice(0, dot) : null;
      return this.send(this.connectPacket());
    }
    if (type === 49 /* "1" close */) return this.lost("engine.io close");
  }

  send(text) {
    if (this.spec.transport === "polling") return this.post(text);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  startWebSocket() {
    const url = `${this.url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;
    const ws = new WebSocket(url, { localAddress: this.spec.src, perMessageDeflate: false });
    this.ws = ws;
    ws.on("message", (data) => this.packet(data.toString()));
    ws.on("error", (error) => this.lost(`error ${error.code || error.message}`));
    ws.on("close", () => this.lost("socket closed"));
  }

  // -- long-polling ---------------------------------------------------------------

  request(method, body, callback) {
    const sid = this.sid ? `&sid=${this.sid}` : "";
    const url = new URL(`${this.url}/socket.io/?EIO=4&transport=polling${sid}&t=${Date.now()}`);
    const headers = body === null ? {} : { "Content-Type": "text/plain;charset=UTF-8" };
    const req = http.request(
      { method, host: url.hostname, port: url.port, path: url.pathname + url.search, agent: this.agent, headers },
      (res) => {
        const chunks = [];
        res.on("data", (chunk) => chunks.push(chunk));
        res.on("end", () => {
          if (res.statusCode !== 200) return this.lost(`HTTP ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 200)}`);
          callback(Buffer.concat(chunks).toString());
        });
        res.on("error", (error) => this.lost(`response error ${error.message}`));
      },
    );
    req.on("error", (error) => this.lost(`request error ${error.code || error.message}`));
    req.end(body === null ? undefined : body);
  }

  startPolling() {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 2, localAddress: this.spec.src });
    this.poll();
  }

  poll() {
    if (!this.agent) return;
    this.request("GET", null, (body) => {
      for (const text of body.split(RS)) if (text && this.agent) this.packet(text);
      if (this.state === "connecting" || this.state === "open") this.poll();
    });
  }

  post(text) {
    if (this.agent) this.request("POST", text, () => {});
  }
}

// Whether a connection's end (a reason of Client.lost / fail) came from the server: it closed
// or reset the TCP connection, or closed the Engine.IO / Socket.IO session. Not: timeouts, refusals.
function closedByServer(reason) {
  return /^(socket closed|engine\.io close|server disconnect|error (ECONNRESET|EPIPE))/.test(reason);
}

// ---------------------------------------------------------------------------------
// Worker process: holds a share of the receivers, counts what they receive.

function runWorker(args) {
  const clients = new Set();
  const queue = [];
  let inflight = 0;
  let maxPending = 32;
  let retries = 2;
  let attemptTimeoutMs = 60000;
  let connectDone = null;
  const counts = { connected: 0, stalled: 0, failed: 0, closed: 0, frames: 0, announcements: 0, messages: 0, other: 0 };
  const failures = {};
  let lastFrame = performance.now();
  // Per measuring phase: deliveries per message and latencies (microseconds).
  let phase = null;
  // During a broadcast: when each receiver got the watched event (nanoseconds, monotonic).
  let watch = null;

  const messageRe = /"text":"b(\d+):(\d+):(\d+)/;
  // The join storm: its clients (each with its record: opened / welcomed / ended, in ns), the
  // welcome event (null: the CONNECT answer), the final message's text once sent.
  let storm = null;
  const recordOpen = (client) => {
    if (!client.spec.storm) return;
    client.openedAt = nowNs();
    if (!storm.welcome) client.welcomedAt = client.openedAt;
  };
  const recordEnd = (client, reason) => {
    if (!client.spec.storm || client.endReason) return;
    client.endReason = reason;
    client.endAt = nowNs();
  };

  const hooks = {
    onOpen(client) {
      recordOpen(client);
      if (!client.spec.storm) inflight--;
      counts[client.spec.stalled ? "stalled" : "connected"]++;
      if (!client.spec.storm) pump();
    },
    onFailed(client, reason) {
      clients.delete(client);
      if (client.spec.storm) {
        recordEnd(client, reason);
        counts.failed++;
        return;
      }
      inflight--;
      const attempt = (client.spec.attempt || 0) + 1;
      if (attempt <= retries) {
        queue.push({ ...client.spec, attempt });
      } else {
        counts.failed++;
        const key = reason.slice(0, 80);
        failures[key] = (failures[key] || 0) + 1;
      }
      setTimeout(pump, 100);
    },
    onClosed(client, reason) {
      recordEnd(client, reason);
      counts[client.spec.stalled ? "stalled" : "connected"]--;
      counts.closed++;
      clients.delete(client);
      const key = `closed: ${reason}`.slice(0, 80);
      failures[key] = (failures[key] || 0) + 1;
    },
    onEvent(client, text) {
      counts.frames++;
      lastFrame = performance.now();
      if (storm && client.spec.storm) {
        if (storm.welcome && !client.welcomedAt && text.startsWith(storm.welcomePrefix)) client.welcomedAt = nowNs();
        if (storm.finalText && !client.gotFinal && text.includes(storm.finalText)) {
          client.gotFinal = nowNs();
          storm.reached++;
        }
      }
      if (watch && text.startsWith(watch.prefix)) {
        if (!client.watched) watch.times.push(nowNs());
        client.watched = true;
        return;
      }
      if (text.startsWith('42["message"')) {
        counts.messages++;
        const match = messageRe.exec(text);
        if (!match || !phase || Number(match[1]) !== phase.id) return;
        const seq = Number(match[2]);
        const n = (phase.counts[seq] || 0) + 1;
        phase.counts[seq] = n;
        phase.delivered++;
        if (phase.latencies.length < phase.maxSamples) {
          const latency = Number((nowNs() - BigInt(match[3])) / 1000n);
          phase.latencies.push(latency);
          if (phase.senderWorker && client.serverWorker) {
            (client.serverWorker === phase.senderWorker ? phase.same : phase.cross).push(latency);
          }
        }
        if (n === phase.expected) process.send({ type: "complete", seq });
      } else if (text.startsWith('42["announcement"')) {
        counts.announcements++;
      } else {
        counts.other++;
      }
    },
  };

  function pump() {
    while (inflight < maxPending && queue.length) {
      const spec = queue.shift();
      const client = new Client(spec, args.url, hooks);
      clients.add(client);
      inflight++;
      client.start(attemptTimeoutMs);
    }
    if (connectDone && inflight === 0 && queue.length === 0) {
      const done = connectDone;
      connectDone = null;
      done();
    }
  }

  // Open receivers per server process ("?": the session id does not say).
  function serverWorkerCounts() {
    const out = {};
    for (const client of clients) {
      if (client.state !== "open" || client.spec.stalled) continue;
      const key = client.serverWorker || "?";
      out[key] = (out[key] || 0) + 1;
    }
    return out;
  }

  function stats() {
    return {
      type: "stats",
      ...counts,
      serverWorkers: serverWorkerCounts(),
      pending: inflight + queue.length,
      quietMs: performance.now() - lastFrame,
      failures,
    };
  }

  process.on("message", (msg) => {
    if (msg.type === "connect") {
      maxPending = msg.maxPending;
      retries = msg.retries;
      attemptTimeoutMs = msg.attemptTimeoutMs;
      queue.push(...msg.specs);
      connectDone = () => process.send(stats());
      pump();
    } else if (msg.type === "storm") {
      storm = { welcome: msg.welcome, welcomePrefix: `42["${msg.welcome}"`, clients: [], finalText: null, reached: 0 };
      for (const spec of msg.specs) {
        const client = new Client({ ...spec, storm: true }, args.url, hooks);
        clients.add(client);
        storm.clients.push(client);
      }
      // All at once: every connection is started before any answer is read.
      for (const client of storm.clients) client.start(msg.attemptTimeoutMs);
      process.send({ type: "storm", started: storm.clients.length });
    } else if (msg.type === "stormStats") {
      let welcomed = 0;
      let settled = 0;
      let last = 0n;
      for (const client of storm ? storm.clients : []) {
        if (client.welcomedAt) {
          welcomed++;
          if (client.welcomedAt > last) last = client.welcomedAt;
        }
        if (client.welcomedAt || client.endReason) settled++;
      }
      const total = storm ? storm.clients.length : 0;
      process.send({ type: "stormStats", total, welcomed, settled, last: String(last), reached: storm ? storm.reached : 0, quietMs: performance.now() - lastFrame });
    } else if (msg.type === "stormSend") {
      // The first storm client of this worker that is still open sends the message.
      const client = storm && storm.clients.find((c) => c.state === "open" && c.ws);
      storm.finalText = msg.text;
      if (client) {
        client.isSender = true;
        client.send(`42["message","${msg.text}"]`);
      }
      process.send({ type: "stormSend", sent: !!client });
    } else if (msg.type === "stormFinal") {
      storm.finalText = msg.text;
      process.send({ type: "stormFinal" });
    } else if (msg.type === "stormReport") {
      const t0 = BigInt(msg.t0);
      const us = (t) => Number((t - t0) / 1000n);
      const out = { type: "stormReport", total: 0, opened: 0, welcomed: 0, open_now: 0, closed_by_server: 0, failed: 0, ends: {}, welcome_us: [], open_us: [], final_expected: 0, final_reached: 0, final_missed_open: 0 };
      for (const client of storm ? storm.clients : []) {
        out.total++;
        if (client.openedAt) {
          out.opened++;
          out.open_us.push(us(client.openedAt));
        }
        if (client.welcomedAt) {
          out.welcomed++;
          out.welcome_us.push(us(client.welcomedAt));
        }
        if (client.state === "open") out.open_now++;
        if (client.endReason) {
          const key = client.endReason.slice(0, 80);
          out.ends[key] = (out.ends[key] || 0) + 1;
          if (closedByServer(client.endReason)) out.closed_by_server++;
          else out.failed++;
        }
        if (!client.isSender && (client.welcomedAt || client.openedAt)) {
          out.final_expected++;
          if (client.gotFinal) out.final_reached++;
          else if (client.state === "open") out.final_missed_open++;
        }
      }
      process.send(out);
    } else if (msg.type === "stats") {
      process.send(stats());
    } else if (msg.type === "phase") {
      // Every open receiver is in the sender's room during measuring phases.
      const { id, maxSamples, senderWorker } = msg;
      phase = { id, counts: {}, delivered: 0, latencies: [], same: [], cross: [], maxSamples, senderWorker, expected: counts.connected };
      process.send({ type: "phase", expected: phase.expected, serverWorkers: serverWorkerCounts() });
    } else if (msg.type === "phaseEnd") {
      const result = phase || { counts: {}, delivered: 0, latencies: [], same: [], cross: [] };
      const { delivered, counts: perMessage, latencies, same, cross } = result;
      process.send({ type: "phaseEnd", delivered, counts: perMessage, latencies, same, cross });
      phase = null;
    } else if (msg.type === "watch") {
      watch = { prefix: msg.prefix, times: [] };
      for (const client of clients) client.watched = false;
      process.send({ type: "watch", expected: counts.connected });
    } else if (msg.type === "watchStats") {
      process.send({ type: "watchStats", received: watch ? watch.times.length : 0, quietMs: performance.now() - lastFrame });
    } else if (msg.type === "watchEnd") {
      const t0 = BigInt(msg.t0);
      const times = watch ? watch.times.map((t) => Number((t - t0) / 1000n)) : [];
      watch = null;
      process.send({ type: "watchEnd", times });
    } else if (msg.type === "quit") {
      for (const client of clients) client.close();
      process.exit(0);
    }
  });
  process.on("disconnect", () => process.exit(0));
}

// ---------------------------------------------------------------------------------
// Coordinator: splits work over the workers, owns the sender, answers run.py.

async function runCoordinator(args) {
  const workers = [];
  for (let i = 0; i < args.workers; i++) {
    const child = fork(__filename, ["--worker", "--url", args.url], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
    child.waiters = [];
    child.on("message", (msg) => {
      if (msg.type === "complete") return onComplete(msg.seq);
      const waiter = child.waiters.shift();
      if (waiter) waiter(msg);
    });
    child.on("exit", (code) => {
      if (!quitting) {
        process.stderr.write(`loadgen worker ${i} exited with ${code}\n`);
        process.exit(1);
      }
    });
    workers.push(child);
  }
  let quitting = false;
  const ask = (child, msg) =>
    new Promise((resolve) => {
      child.waiters.push(resolve);
      child.send(msg);
    });
  const askAll = (msg) => Promise.all(workers.map((child) => ask(child, msg)));

  let nextIndex = 0;
  let phaseId = 0;
  let sender = null;
  let senderPrefix = ""; // "/ns," when the sender is in a namespace other than "/"
  let senderLastFrame = performance.now();
  // Fan-out bookkeeping: per message, how many workers saw it delivered to all their receivers.
  let completions = null;
  let onAllComplete = null;
  let completedCount = 0;
  function onComplete(seq) {
    if (!completions) return;
    completions[seq] = (completions[seq] || 0) + 1;
    if (completions[seq] === completions.needed) {
      completedCount++;
      if (onAllComplete) onAllComplete();
    }
  }

  // Several source addresses: each (source, destination) pair has only ~28k ephemeral ports.
  const source = (index, prefix = "127.0.1.") => `${prefix}${2 + (index % args.sources)}`;

  async function connect(cmd) {
    const count = cmd.count;
    const roomSize = cmd.room_size || 0;
    const transport = cmd.transport || "websocket";
    const perWorker = workers.map(() => []);
    for (let k = 0; k < count; k++) {
      const idx = nextIndex++;
      const room = roomSize ? `m${Math.floor(idx / roomSize)}` : "bench";
      const src = source(idx, cmd.source_prefix);
      const spec = { idx, room, name: `u${idx}`, src, transport, namespace: cmd.namespace || "/", stalled: !!cmd.stalled };
      perWorker[idx % workers.length].push(spec);
    }
    const started = performance.now();
    const maxPending = Math.max(1, Math.floor((cmd.max_pending || 96) / workers.length));
    const replies = await Promise.all(
      workers.map((child, i) =>
        ask(child, {
          type: "connect",
          specs: perWorker[i],
          maxPending,
          retries: cmd.retries ?? 2,
          attemptTimeoutMs: (cmd.attempt_timeout || 60) * 1000,
        }),
      ),
    );
    return { ...summarize(replies), seconds: (performance.now() - started) / 1000 };
  }

  function addCounts(objects) {
    const out = {};
    for (const counts of objects) for (const [key, n] of Object.entries(counts)) out[key] = (out[key] || 0) + n;
    return out;
  }

  function summarize(replies) {
    const out = { connected: 0, stalled: 0, failed: 0, closed: 0, frames: 0, announcements: 0, messages: 0 };
    for (const r of replies) {
      for (const key of ["connected", "stalled", "failed", "closed", "frames", "announcements", "messages"]) out[key] += r[key];
    }
    out.failures = addCounts(replies.map((r) => r.failures));
    out.receivers_by_server_worker = addCounts(replies.map((r) => r.serverWorkers));
    out.quiet_ms = Math.min(...replies.map((r) => r.quietMs), performance.now() - senderLastFrame);
    out.sender = sender ? sender.state : null;
    return out;
  }

  function openSender(cmd) {
    return new Promise((resolve) => {
      const namespace = cmd.namespace || "/";
      senderPrefix = namespace === "/" ? "" : `${namespace},`;
      const spec = { idx: -1, room: "bench", name: "sender", src: "127.0.0.1", transport: "websocket", namespace };
      const client = new Client(spec, args.url, {
        onOpen: () => resolve({ sender: "open" }),
        onFailed: (_, reason) => resolve({ sender: "failed", error: reason }),
        onClosed: (_, reason) => process.stderr.write(`loadgen: sender closed: ${reason}\n`),
        onEvent: () => {
          senderLastFrame = performance.now();
        },
      });
      sender = client;
      client.start(60000);
    });
  }

  async function drain(cmd) {
    const quiet = cmd.quiet_ms || 1000;
    const deadline = performance.now() + (cmd.timeout || args.timeout) * 1000;
    const started = performance.now();
    for (;;) {
      const out = summarize(await askAll({ type: "stats" }));
      if (out.quiet_ms >= quiet || performance.now() > deadline) {
        return { ...out, drained: out.quiet_ms >= quiet, seconds: (performance.now() - started) / 1000 };
      }
      await sleep(Math.min(250, quiet / 4));
    }
  }

  const sendMessage = (id, seq, pad = 0) => {
    const text = `b${id}:${seq}:${nowNs()}`;
    sender.send(`42["message","${pad > text.length ? `${text} ${"x".repeat(pad - text.length - 1)}` : text}"]`);
  };

  async function startPhase(maxSamples) {
    const id = ++phaseId;
    const senderWorker = sender ? sender.serverWorker : null;
    const expected = await askAll({ type: "phase", id, maxSamples, senderWorker });
    completions = { needed: expected.filter((r) => r.expected > 0).length };
    completedCount = 0;
    const serverWorkers = addCounts(expected.map((r) => r.serverWorkers));
    return { id, receivers: expected.reduce((sum, r) => sum + r.expected, 0), senderWorker, serverWorkers };
  }

  async function endPhase(phase, messages, started) {
    const seconds = (performance.now() - started) / 1000;
    completions = null;
    onAllComplete = null;
    const replies = await askAll({ type: "phaseEnd" });
    let delivered = 0;
    let complete = 0;
    const perMessage = new Array(messages).fill(0);
    for (const r of replies) {
      delivered += r.delivered;
      for (const [seq, n] of Object.entries(r.counts)) perMessage[Number(seq)] += n;
    }
    for (const n of perMessage) if (n === phase.receivers) complete++;
    const summary = (key) => {
      const latencies = replies.flatMap((r) => r[key]).sort((a, b) => a - b);
      const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : null);
      return { samples: latencies.length, p50: pct(50), p90: pct(90), p99: pct(99), max: latencies.at(-1) ?? null };
    };
    const split = phase.senderWorker
      ? {
          sender_server_worker: phase.senderWorker,
          receivers_by_server_worker: phase.serverWorkers,
          latency_us_same_worker: summary("same"),
          latency_us_other_worker: summary("cross"),
        }
      : { receivers_by_server_worker: phase.serverWorkers };
    return {
      messages,
      receivers: phase.receivers,
      expected: messages * phase.receivers,
      delivered,
      complete_messages: complete,
      all_delivered: delivered === messages * phase.receivers,
      seconds,
      deliveries_per_second: delivered / seconds,
      latency_us: summary("latencies"),
      ...split,
    };
  }

  function waitForDeliveries(messages, timeoutMs) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      onAllComplete = () => {
        if (completedCount >= messages) {
          clearTimeout(timer);
          resolve();
        }
      };
      onAllComplete();
    });
  }

  async function fanout(cmd) {
    const messages = cmd.messages;
    const window = cmd.window || 4;
    const phase = await startPhase(cmd.max_samples ?? 2000000);
    const started = performance.now();
    let sent = 0;
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, (cmd.timeout || args.timeout) * 1000);
      const pump = () => {
        while (sent < messages && sent - completedCount < window) sendMessage(phase.id, sent++, cmd.pad);
        if (completedCount >= messages || phase.receivers === 0) {
          clearTimeout(timer);
          resolve();
        }
      };
      onAllComplete = pump;
      pump();
    });
    return { ...(await endPhase(phase, messages, started)), sent };
  }

  async function steady(cmd) {
    const total = Math.max(1, Math.round(cmd.rate * cmd.seconds));
    const intervalNs = BigInt(Math.round(1e9 / cmd.rate));
    const phase = await startPhase(cmd.max_samples ?? 2000000);
    const started = performance.now();
    const t0 = nowNs();
    for (let seq = 0; seq < total; seq++) {
      const due = t0 + BigInt(seq) * intervalNs;
      const waitMs = Number(due - nowNs()) / 1e6;
      if (waitMs > 1) await sleep(waitMs - 0.5);
      while (nowNs() < due) await new Promise(setImmediate);
      sendMessage(phase.id, seq, cmd.pad);
    }
    await waitForDeliveries(total, (cmd.timeout || 60) * 1000);
    return { ...(await endPhase(phase, total, started)), rate: cmd.rate };
  }

  async function broadcast(cmd) {
    const prefix = `42${senderPrefix}["${cmd.event || "seen"}"`;
    const expected = (await askAll({ type: "watch", prefix })).reduce((sum, r) => sum + r.expected, 0);
    const quiet = cmd.quiet_ms || 3000;
    const t0 = nowNs();
    const started = performance.now();
    sender.send(`42${senderPrefix}["${cmd.emit || "ping"}",{}]`);
    let received = 0;
    for (;;) {
      await sleep(50);
      const replies = await askAll({ type: "watchStats" });
      received = replies.reduce((sum, r) => sum + r.received, 0);
      const elapsed = performance.now() - started;
      const quietMs = Math.min(...replies.map((r) => r.quietMs));
      if (received >= expected || elapsed > (cmd.limit || 60) * 1000 || (elapsed > quiet && quietMs > quiet)) break;
    }
    const times = (await askAll({ type: "watchEnd", t0: String(t0) })).flatMap((r) => r.times).sort((a, b) => a - b);
    const pct = (p) => (times.length ? times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))] : null);
    return {
      expected,
      received: times.length,
      all_received: times.length === expected,
      first_us: times[0] ?? null,
      p50_us: pct(50),
      p99_us: pct(99),
      last_us: times.at(-1) ?? null,
    };
  }

  // -- the join storm ------------------------------------------------------------
  let stormT0 = null;

  async function stormCmd(cmd) {
    const perWorker = workers.map(() => []);
    for (let k = 0; k < cmd.count; k++) {
      const idx = nextIndex++;
      const spec = { idx, room: cmd.room || "lobby", name: `s${idx}`, src: source(idx, cmd.source_prefix), transport: "websocket", namespace: "/" };
      perWorker[idx % workers.length].push(spec);
    }
    const limitMs = (cmd.limit || 120) * 1000;
    const quiet = cmd.quiet_ms || 1500;
    const welcome = cmd.welcome || null;
    stormT0 = nowNs();
    const started = performance.now();
    await Promise.all(workers.map((child, i) => ask(child, { type: "storm", specs: perWorker[i], welcome, attemptTimeoutMs: limitMs })));
    let replies;
    let settledMs = null;
    for (;;) {
      await sleep(100);
      replies = await askAll({ type: "stormStats" });
      const settled = replies.reduce((sum, r) => sum + r.settled, 0);
      const elapsed = performance.now() - started;
      if (settledMs === null && (settled >= cmd.count || elapsed > limitMs)) settledMs = elapsed;
      const quietMs = Math.min(...replies.map((r) => r.quietMs));
      if (settledMs !== null && (quietMs >= quiet || elapsed > limitMs + 60000)) break;
    }
    const last = replies.reduce((max, r) => (BigInt(r.last) > max ? BigInt(r.last) : max), 0n);
    return {
      clients: cmd.count,
      welcomed: replies.reduce((sum, r) => sum + r.welcomed, 0),
      settled: replies.reduce((sum, r) => sum + r.settled, 0),
      settled_seconds: settledMs / 1000,
      last_welcome_seconds: last ? Number(last - stormT0) / 1e9 : null,
      seconds: (performance.now() - started) / 1000,
    };
  }

  async function stormMessage(cmd) {
    const text = `storm-final-${nowNs()}`;
    for (const child of workers) await ask(child, { type: "stormFinal", text });
    const t0 = nowNs();
    let sent = false;
    for (const child of workers) {
      if ((await ask(child, { type: "stormSend", text })).sent) {
        sent = true;
        break;
      }
    }
    const started = performance.now();
    const quiet = cmd.quiet_ms || 3000;
    let reached = 0;
    let expected = 0;
    for (;;) {
      await sleep(50);
      const replies = await askAll({ type: "stormStats" });
      reached = replies.reduce((sum, r) => sum + r.reached, 0);
      expected = replies.reduce((sum, r) => sum + r.welcomed, 0) - 1;
      const elapsed = performance.now() - started;
      const quietMs = Math.min(...replies.map((r) => r.quietMs));
      if (!sent || reached >= expected || elapsed > (cmd.limit || 60) * 1000 || (elapsed > quiet && quietMs > quiet)) break;
    }
    return { sent, reached, expected, seconds: Number(nowNs() - t0) / 1e9 };
  }

  async function stormReport() {
    const replies = await askAll({ type: "stormReport", t0: String(stormT0) });
    const out = { welcome_us: {}, open_us: {} };
    for (const key of ["total", "opened", "welcomed", "open_now", "closed_by_server", "failed", "final_expected", "final_reached", "final_missed_open"]) {
      out[key] = replies.reduce((sum, r) => sum + r[key], 0);
    }
    out.ends = addCounts(replies.map((r) => r.ends));
    for (const key of ["welcome_us", "open_us"]) {
      const times = replies.flatMap((r) => r[key]).sort((a, b) => a - b);
      const pct = (p) => (times.length ? times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))] : null);
      out[key] = { first: times[0] ?? null, p50: pct(50), p90: pct(90), p99: pct(99), last: times.at(-1) ?? null };
    }
    return out;
  }

  const handlers = {
    storm: stormCmd,
    storm_message: stormMessage,
    storm_report: stormReport,
    broadcast,
    connect,
    sender: openSender,
    drain,
    fanout,
    steady,
    stats: async () => summarize(await askAll({ type: "stats" })),
  };

  const lines = readline.createInterface({ input: process.stdin });
  const queue = [];
  let busy = false;
  async function next() {
    if (busy || !queue.length) return;
    busy = true;
    const cmd = queue.shift();
    let reply;
    try {
      if (cmd.cmd === "quit") return shutdown();
      const handler = handlers[cmd.cmd];
      reply = handler ? await handler(cmd) : { error: `unknown command ${cmd.cmd}` };
    } catch (error) {
      reply = { error: String(error && error.stack ? error.stack : error) };
    }
    process.stdout.write(`${JSON.stringify(reply)}\n`);
    busy = false;
    next();
  }
  function shutdown() {
    quitting = true;
    if (sender) sender.close();
    for (const child of workers) child.send({ type: "quit" });
    setTimeout(() => process.exit(0), 200);
  }
  lines.on("line", (line) => {
    if (!line.trim()) return;
    queue.push(JSON.parse(line));
    next();
  });
  lines.on("close", () => queue.push({ cmd: "quit" }) && next());
  // Never outlive the run: stop by ourselves.
  setTimeout(() => {
    process.stderr.write("loadgen: overall time limit reached\n");
    shutdown();
  }, args.timeout * 1000).unref();
}

const args = parseArgs(process.argv.slice(2));
if (args.worker) runWorker(args);
else runCoordinator(args);
