// The chat page: joins the room named in <body data-room>, shows its history and new messages.
import { io } from "./vendor/socket.io.esm.min.js";

const room = document.body.dataset.room;
const params = new URLSearchParams(location.search);
const transports = params.get("transport") === "polling" ? ["polling"] : ["polling", "websocket"];
const socket = io({ auth: { room, name: params.get("name") || "" }, transports });

const list = document.getElementById("messages");
const status = document.getElementById("status");
const error = document.getElementById("error");
const form = document.getElementById("send");
const input = document.getElementById("text");

function show(className, text) {
  const item = document.createElement("li");
  item.className = className;
  item.textContent = text; // never parsed as HTML
  list.append(item);
  item.scrollIntoView({ block: "end" });
}

function showMessage(message) {
  show("message", `${message.name}: ${message.text}`);
}

socket.on("connect", () => { status.textContent = "connected"; });
socket.on("disconnect", () => { status.textContent = "reconnecting…"; });
socket.on("connect_error", (err) => { status.textContent = `cannot connect: ${err.message}`; });
socket.on("history", (messages) => { list.replaceChildren(); messages.forEach(showMessage); });
socket.on("welcome", (info) => { status.textContent = `connected as ${info.name}`; });
socket.on("message", showMessage);
socket.on("announcement", (note) => show("announcement", note.text));

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  socket.emit("message", text, (answer) => {
    if (answer.error) {
      error.textContent = answer.error;
      error.hidden = false;
      return;
    }
    error.hidden = true;
    showMessage({ name: "you", text });
  });
  input.value = "";
});
