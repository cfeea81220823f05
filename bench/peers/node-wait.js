// A Node.js cluster whose handler waits on a timer before answering, the peer of herd's
// /wait: the primary forks WORKERS workers; GET /wait?ms=N answers the worker's pid after
// setTimeout(N). Prints "ready PID" per listening worker. Node at its defaults: http, cluster.
const cluster = require('cluster');
const http = require('http');

const workers = Number(process.env.WORKERS || 2);
const port = Number(process.env.PORT);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', () => cluster.fork());
  cluster.on('listening', (worker) => console.log(`ready ${worker.process.pid}`));
} else {
  http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const ms = Number(url.searchParams.get('ms') || 0);
    setTimeout(() => res.end(String(process.pid)), ms);
  }).listen(port, '127.0.0.1');
}
