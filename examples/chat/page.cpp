// chat's page: one HTML document with its style and script inline. The script joins the room
// named in the page's query (?room=NAME&name=NICK) over the WebSocket at "ws" beside the
// page, and shows every event of the room with the worker that sent it. Everything a client
// wrote is put in the document as text (textContent), never as HTML.
#include "chat.hpp"

namespace chat {

namespace {

constexpr std::string_view html = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>herd chat</title>
<link rel="icon" href="data:,">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 1rem auto; padding: 0 1rem; }
  form { display: flex; gap: .5rem; margin: .5rem 0; }
  #text { flex: 1; }
  #log { list-style: none; padding: 0; border: 1px solid #ccc; min-height: 12rem; }
  #log li { padding: .15rem .5rem; white-space: pre-wrap; overflow-wrap: anywhere; }
  #log li.join, #log li.leave { color: #666; font-style: italic; }
  .worker { font: 12px monospace; color: #fff; background: #557; border-radius: 3px; padding: 0 .3rem; }
  .from { font-weight: bold; }
</style>
</head>
<body>
<h1>herd chat</h1>
<form id="join" method="get">
  <label>room <input name="room" id="room" required maxlength="32" pattern="[A-Za-z0-9_\-]+"></label>
  <label>nick <input name="name" id="name" required maxlength="32" pattern="[A-Za-z0-9_\-]+"></label>
  <button>join</button>
</form>
<p id="status">Choose a room and a nick (1 to 32 of A-Z a-z 0-9 _ -).</p>
<ul id="log"></ul>
<form id="say" hidden>
  <input id="text" autocomplete="off" placeholder="a message (at most 2000 bytes)">
  <button id="send">send</button>
</form>
<script>
"use strict";
const query = new URLSearchParams(location.search);
const room = query.get("room") || "";
const name = query.get("name") || "";
const $ = (id) => document.getElementById(id);

// The page's state and what it can do, also for scripts driving it (the tests).
const chat = {
  socket: null,
  worker: null,   // the worker that holds this page's socket, from the welcome
  welcomes: 0,    // sockets opened and welcomed so far
  closed: null,   // {code, reason} once the socket has closed
  join() {
    if (chat.socket) chat.socket.close();
    const url = new URL("ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = new URLSearchParams({room, name}).toString();
    const socket = new WebSocket(url);
    chat.socket = socket;
    chat.worker = null;
    chat.closed = null;
    socket.onmessage = (e) => { if (socket === chat.socket) show(JSON.parse(e.data)); };
    socket.onclose = (e) => {
      if (socket !== chat.socket) return;
      chat.closed = {code: e.code, reason: e.reason};
      $("say").hidden = true;
      $("status").textContent = "Disconnected (" + e.code + (e.reason ? ": " + e.reason : "") + ").";
    };
  },
  // Sends a text message; false when there is no open socket or nothing to send.
  send(text) {
    if (!chat.socket || chat.socket.readyState !== WebSocket.OPEN || text === "") return false;
    chat.socket.send(text);
    return true;
  },
};

function line(kind, event, text) {
  const li = document.createElement("li");
  li.className = kind;
  const worker = document.createElement("span");
  worker.className = "worker";
  worker.textContent = "worker " + event.worker;
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = event.from;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(worker, " ", from, " ", body);
  $("log").append(li);
  li.scrollIntoView({block: "nearest"});
}

function show(event) {
  if (event.type === "welcome") {
    chat.worker = event.worker;
    chat.welcomes += 1;
    $("status").textContent = "In room " + event.room + " as " + event.name +
        ", served by worker " + event.worker + ".";
    $("say").hidden = false;
    $("text").focus();
  } else if (event.type === "message") {
    line("message", event, event.text);
  } else if (event.type === "join") {
    line("join", event, "joined");
  } else if (event.type === "leave") {
    line("leave", event, "left");
  }
}

$("say").addEventListener("submit", (e) => {
  e.preventDefault();
  if (chat.send($("text").value)) $("text").value = "";
});
$("room").value = room;
$("name").value = name;
if (room && name) chat.join();
</script>
</body>
</html>
)html";

}  // namespace

std::string_view page() {
    return html;
}

}  // namespace chat
