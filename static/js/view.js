// What the page shows: the message list, who is online, the connection status, errors.
// Everything from the server or the user is set with textContent, never parsed as HTML.

const STATUS_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};
const NEAR_BOTTOM_PX = 48; // closer than this to the bottom counts as reading the newest messages

const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** `time` of a message (ISO 8601, UTC) in the reader's time zone: "14:05", or with the date if not today. */
export function formatTime(date) {
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? timeOfDay.format(date) : dateAndTime.format(date);
}

/** An ISO 8601 string as a Date; Python writes microseconds, which not every engine parses. */
export function parseTime(iso) {
  return new Date(iso.replace(/(\.\d{3})\d+/, "$1"));
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function isPending(item) {
  return Boolean(item.dataset.state) && item.dataset.state !== "sent";
}

function timeElement(date) {
  const node = element("time", "time", formatTime(date));
  node.dateTime = date.toISOString();
  node.title = date.toLocaleString();
  return node;
}

/** The list of messages and announcements, scrolled to the newest unless the reader scrolled up. */
export class MessageList {
  constructor(list, jumpButton) {
    this.list = list;
    this.jump = jumpButton;
    this.byId = new Map(); // id -> <li> of every stored message shown
    list.addEventListener("scroll", () => {
      if (this.atBottom()) this.jump.hidden = true;
    });
    jumpButton.addEventListener("click", () => {
      this.scrollToEnd();
      this.list.focus();
    });
  }

  atBottom() {
    const { scrollHeight, scrollTop, clientHeight } = this.list;
    return scrollHeight - scrollTop - clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
    this.jump.hidden = true;
  }

  /** Run `change`, then keep the reader at the end if they were there (or `follow`), else offer to jump. */
  update(change, follow = false) {
    const wasAtBottom = this.atBottom();
    change();
    if (wasAtBottom || follow) this.scrollToEnd();
    else this.jump.hidden = false;
  }

  /** A stored message ({id, name, text, time}) unless already shown; `mine` marks the reader's own. */
  addMessage(message, mine) {
    if (this.byId.has(message.id)) return;
    const item = this.messageItem(message.name, message.text, mine);
    item.append(timeElement(parseTime(message.time)));
    this.update(() => this.place(item, message.id));
  }

  /** The reader's own message before the server stored it; `setState` it as it goes. */
  addPending(name, text) {
    const item = this.messageItem(name, text, true);
    item.append(element("span", "note"));
    this.update(() => this.list.append(item), true);
    return item;
  }

  messageItem(name, text, mine) {
    const item = element("li", mine ? "message mine" : "message");
    const author = element("span", "name", name);
    if (mine) author.append(element("span", "visually-hidden", " (you)"));
    item.append(author, element("span", "text", text));
    return item;
  }

  /** Show a pending message's state: queued, sending, sent (stored as `id`) or failed (with `retry`). */
  setState(item, state, { id, note = "", retry } = {}) {
    item.dataset.state = state;
    const noteElement = item.querySelector(".note");
    noteElement.textContent = note;
    if (retry) {
      const button = element("button", "retry", "Retry");
      button.type = "button";
      button.addEventListener("click", retry, { once: true });
      noteElement.append(" ", button);
    }
    if (id !== undefined) {
      item.dataset.id = id;
      item.insertBefore(timeElement(new Date()), noteElement);
      this.update(() => this.place(item, id));
    }
  }

  remove(item) {
    item.remove();
  }

  /** A join or leave announcement, in the order it arrived. */
  addAnnouncement(note) {
    const item = element("li", `announcement ${note.kind}`, note.text);
    this.update(() => this.list.insertBefore(item, this.firstPending()));
  }

  firstPending() {
    return [...this.list.children].find(isPending) ?? null;
  }

  /** Put a stored message in id order, before any message still waiting for the server. */
  place(item, id) {
    this.byId.set(id, item);
    item.dataset.id = id;
    const before = [...this.list.children].find(
      (other) => other !== item && (isPending(other) || Number(other.dataset.id) > id),
    );
    this.list.insertBefore(item, before ?? null);
  }

  /** The highest message id shown: messages stored after it are new. */
  lastId() {
    return Math.max(0, ...this.byId.keys());
  }
}

/**
 * Who is online in the room: the names the page knows (the first page from `welcome`, more on
 * request), and the room's count. In a small room, announcements keep both exact; a big room
 * sends only its count now and then (`presence`).
 */
export class OnlineList {
  constructor(list, count, more) {
    this.list = list;
    this.count = count;
    this.more = more;
    this.names = new Set();
    this.total = 0;
    this.me = "";
  }

  reset(names, total, me) {
    this.names = new Set(names);
    this.total = total;
    this.me = me;
    this.render();
  }

  /** A join or leave: `online` says whether the name is online now (another tab may still be). */
  announce(note) {
    const online = note.online ?? note.kind === "join";
    if (online && !this.names.has(note.name)) {
      this.names.add(note.name);
      this.total += 1;
    } else if (!online && (this.names.delete(note.name) || this.total > this.names.size)) {
      this.total -= 1;
    }
    this.render();
  }

  setCount(total) {
    this.total = total;
    this.render();
  }

  /** The next page of names, from a `members` answer. */
  addPage(names, total) {
    for (const name of names) this.names.add(name);
    this.total = total;
    this.render();
  }

  /** The last name in order: the next page starts after it. */
  lastName() {
    return this.sorted().at(-1) ?? null;
  }

  sorted() {
    return [...this.names].sort();
  }

  render() {
    this.list.replaceChildren(
      ...this.sorted().map((name) => {
        const item = element("li", name === this.me ? "me" : "", name);
        if (name === this.me) item.append(element("span", "you", " (you)"));
        return item;
      }),
    );
    this.count.textContent = this.total.toLocaleString();
    const missing = this.total - this.names.size;
    this.more.hidden = missing <= 0;
    this.more.textContent = `Show more (${missing.toLocaleString()} not listed)`;
  }
}

/** The connection indicator: connecting, connected, reconnecting or offline, with an optional reason. */
export function showStatus(status, state, reason = "") {
  status.dataset.state = state;
  status.textContent = reason ? `${STATUS_TEXT[state]}: ${reason}` : STATUS_TEXT[state];
}

/** The alert under the conversation; an empty text hides it. */
export function showError(box, text) {
  box.textContent = text;
  box.hidden = !text;
}
