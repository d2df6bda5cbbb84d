// The chat page: joins the room named in <body data-room> and wires the socket to the page.
// `?transport=polling` keeps to HTTP long-polling, for networks that block WebSocket.
import { io } from "./vendor/socket.io.esm.min.js";
import { Outbox } from "./outbox.js";
import { MessageList, OnlineList, showError, showStatus } from "./view.js";

const NAME_KEY = "chat.name";
const MAX_NAME_LENGTH = 32;
const byId = (id) => document.getElementById(id);

const room = document.body.dataset.room;
const maxLength = Number(document.body.dataset.maxLength) || 1000;
const params = new URLSearchParams(location.search);
const status = byId("status");
const reconnectButton = byId("reconnect");
const errorBox = byId("error");
const nameForm = byId("identity");
const nameInput = byId("name");
const sendForm = byId("send");
const input = byId("text");
const counter = byId("count");
const messages = new MessageList(byId("messages"), byId("jump"));
const online = new OnlineList(byId("online"), byId("online-count"), byId("more-online"));

function storedName() {
  try {
    return localStorage.getItem(NAME_KEY) || "";
  } catch {
    return ""; // storage disabled: a guest name each visit
  }
}

function storeName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // storage disabled or full: the name lasts as long as the page
  }
}

let wantedName = params.get("name") || storedName(); // what we ask for; the server may give another
let me = ""; // the name the server says we chat under, from `welcome`
let history = []; // the last `history`, rendered once `welcome` says who we are
nameInput.value = wantedName;

const socket = io({
  // Asked on every (re)connection: after the first, the last message shown, so the server sends what we missed.
  auth: (send) => send({ room, name: wantedName, ...(messages.lastId() ? { last_id: messages.lastId() } : {}) }),
  transports: params.get("transport") === "polling" ? ["polling"] : ["polling", "websocket"],
});

const outbox = new Outbox(socket, {
  onChange: showOutgoing,
  known: (id) => messages.byId.has(id),
  lastId: () => messages.lastId(),
});

// The transport in use, for the curious and for the tests (it changes when polling upgrades).
socket.io.on("open", () => {
  const engine = socket.io.engine;
  document.body.dataset.transport = engine.transport.name;
  engine.on("upgrade", (transport) => {
    document.body.dataset.transport = transport.name;
  });
});

function setConnection(state, reason = "") {
  showStatus(status, state, reason);
  reconnectButton.hidden = state !== "offline" || socket.active;
}

socket.on("disconnect", (reason) => {
  outbox.pause();
  if (socket.active) setConnection("reconnecting");
  else setConnection("offline", reason === "io server disconnect" ? "disconnected by the server" : "");
});
socket.on("connect_error", (error) => {
  if (socket.active) {
    setConnection("reconnecting"); // the server is unreachable for now; the manager retries
    return;
  }
  setConnection("offline", error.message); // refused, e.g. "invalid name: ..."
  nameInput.setAttribute("aria-invalid", String(error.message.startsWith("invalid name")));
});
socket.io.on("reconnect_attempt", () => setConnection("reconnecting"));
window.addEventListener("offline", () => setConnection("offline", "no network"));
window.addEventListener("online", () => socket.connected || setConnection("reconnecting"));
reconnectButton.addEventListener("click", () => {
  setConnection("connecting");
  socket.connect();
});

socket.on("history", (stored) => {
  history = stored;
});
// After a reconnection: every message stored since the last one shown, or (when too many) word that
// some were missed, before the latest `history`.
socket.on("replay", (replay) => {
  history = replay.messages;
  if (!replay.complete) messages.addAnnouncement({ kind: "gap", text: "Some messages were missed while away." });
});
socket.on("welcome", (info) => {
  me = info.name;
  if (document.activeElement !== nameInput) nameInput.value = me;
  nameInput.removeAttribute("aria-invalid");
  storeName(me);
  outbox.resume(me, history); // settles our unconfirmed messages before history shows them
  for (const message of history) messages.addMessage(message, message.name === me);
  online.reset(info.online, info.count ?? info.online.length, me);
  setConnection("connected");
});
socket.on("message", (message) => messages.addMessage(message, message.name === me));
socket.on("announcement", (note) => {
  messages.addAnnouncement(note);
  online.announce(note);
});
socket.on("presence", (change) => online.setCount(change.count)); // a big room: its count, no names
byId("more-online").addEventListener("click", () => {
  socket.timeout(10000).emit("members", { after: online.lastName() }, (error, answer) => {
    if (!error && answer.names) online.addPage(answer.names, answer.count);
  });
});

function showOutgoing(item) {
  const element = item.element;
  switch (item.state) {
    case "queued":
      messages.setState(element, "queued", { note: "Not sent yet: waiting for the connection…" });
      break;
    case "sending":
      messages.setState(element, "sending", { note: "Sending…" });
      break;
    case "unconfirmed":
      messages.setState(element, "unconfirmed", { note: "Connection lost: will check and resend…" });
      break;
    case "sent":
      messages.setState(element, "sent", { id: item.id });
      break;
    case "rejected":
      // Not part of the conversation: take it out, say why, give the text back to fix it.
      messages.remove(element);
      showError(errorBox, `Not sent: ${item.error}`);
      if (!input.value) input.value = item.text;
      updateCounter();
      break;
    case "failed":
      messages.setState(element, "failed", { note: `Not sent: ${item.error}.`, retry: () => outbox.retry(item) });
      showError(errorBox, `Not sent: ${item.error}`);
      break;
  }
}

sendForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  showError(errorBox, "");
  outbox.add(text, { element: messages.addPending(me || wantedName || "you", text) });
  input.value = "";
  updateCounter();
  input.focus();
});

function updateCounter() {
  const length = input.value.length;
  counter.textContent = length > maxLength * 0.9 ? `${length}/${maxLength}` : "";
  counter.classList.toggle("over", length > maxLength);
}
input.addEventListener("input", updateCounter);

nameForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = nameInput.value.trim();
  if (!name || name.length > MAX_NAME_LENGTH) {
    nameInput.setAttribute("aria-invalid", "true");
    showError(errorBox, `Choose a name of 1-${MAX_NAME_LENGTH} characters.`);
    return;
  }
  showError(errorBox, "");
  if (name === me && socket.connected) return;
  wantedName = name;
  storeName(name);
  socket.disconnect().connect(); // rejoin under the new name
  setConnection("connecting");
});
