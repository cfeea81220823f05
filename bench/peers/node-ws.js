// The Node.js peer of herd's probe WebSocket endpoints, for bench/websocket.py: a cluster whose
// primary forks WORKERS workers; each runs an http server on the shared PORT with a `ws`
// WebSocketServer (npm `ws`, at its defaults: no permessage-deflate) answering
//   /echo            echoes every message (text as text, binary as binary)
//   /room?room=R     the socket joins room R; every message a socket sends goes to every socket
//                    of room R in every worker (the sender too)
//   POST /publish?room=R   publishes the body to room R as text; answers 202
// The fan-out across workers is what a Node user has without a broker: the worker sends the
// message to the cluster primary over the IPC channel (process.send), and the primary relays it
// to every worker (the sender's too), which sends it to its own sockets of the room; the same
// path as herd's, where the master relays ws.publish between workers.
// PORT and WORKERS from the environment; NODE_PATH finds `ws`. Prints "ready PID" per worker.
const cluster = require('cluster');
const http = require('http');

const workers = Number(process.env.WORKERS || 2);
const port = Number(process.env.PORT);

if (cluster.isPrimary) {
  const relay = (msg) => {
    if (msg && msg.type === 'publish') {
      for (const id in cluster.workers) cluster.workers[id].send(msg);
    }
  };
  for (let i = 0; i < workers; i++) cluster.fork().on('message', relay);
  cluster.on('exit', () => cluster.fork().on('message', relay));
  cluster.on('listening', (worker) => console.log(`ready ${worker.process.pid}`));
} else {
  const { WebSocketServer } = require('ws');
  const rooms = new Map();  // room -> Set of sockets in this worker

  const publish = (room, data, binary) => {
    process.send({ type: 'publish', room, data: binary ? data.toString('base64') : data.toString(), binary });
  };
  process.on('message', (msg) => {
    if (!msg || msg.type !== 'publish') return;
    const sockets = rooms.get(msg.room);
    if (!sockets) return;
    const data = msg.binary ? Buffer.from(msg.data, 'base64') : msg.data;
    for (const ws of sockets) ws.send(data, { binary: msg.binary });
  });

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/publish' && req.method === 'POST') {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        publish(url.searchParams.get('room') || '', Buffer.concat(chunks), false);
        res.statusCode = 202;
        res.end('published\n');
      });
      return;
    }
    res.statusCode = 404;
    res.end('not found\n');
  });

  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/echo') {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    } else if (url.pathname === '/room') {
      const room = url.searchParams.get('room') || '';
      let sockets = rooms.get(room);
      if (!sockets) rooms.set(room, (sockets = new Set()));
      sockets.add(ws);
      ws.on('message', (data, isBinary) => publish(room, data, isBinary));
      ws.on('close', () => {
        sockets.delete(ws);
        if (sockets.size === 0 && rooms.get(room) === sockets) rooms.delete(room);
      });
    } else {
      ws.close(1008, 'unknown path');
    }
  });
  server.listen(port, '127.0.0.1');
}
