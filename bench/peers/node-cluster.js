// A Node.js cluster hello server, the peer herd is compared with: the primary forks WORKERS
// workers and forks a new one whenever one exits (the book's recipe). GET /throw throws in
// the handler (an uncaught exception: the worker dies). Prints "ready PID" per listening worker.
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
    if (req.url === '/throw') throw new Error('boom');
    res.end('Hello, World!');
  }).listen(port, '127.0.0.1');
}
