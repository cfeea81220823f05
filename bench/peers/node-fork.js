// Node.js child_process.fork() workers, timed as herd's are: from fork() in the parent to the
// worker's "ready" message, sent once its HTTP hello server listens (on a port of its own).
// usage: node node-fork.js COUNT
// Prints "spawn MS" for each of COUNT forks (each worker is stopped before the next), then
// forks one more, prints "worker PID PORT" and keeps it (for its memory) until it is killed.
const { fork } = require('child_process');
const http = require('http');

if (process.argv[2] === 'child') {
  const server = http.createServer((req, res) => res.end('Hello, World!'));
  server.listen(0, '127.0.0.1', () => process.send({ ready: true, port: server.address().port }));
  process.on('disconnect', () => process.exit(0));
} else {
  const count = Number(process.argv[2] || 50);
  let done = 0;
  const one = (keep) => {
    const t0 = process.hrtime.bigint();
    const child = fork(__filename, ['child']);
    child.once('message', (m) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (keep) {
        console.log(`worker ${child.pid} ${m.port}`);
        return;
      }
      console.log(`spawn ${ms.toFixed(3)}`);
      child.once('exit', () => one(++done >= count));
      child.kill();
    });
  };
  one(count <= 0);
}
