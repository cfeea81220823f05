// A Node.js cluster whose handlers call a backend, the peer of herd's clients_bench plugin: the
// primary forks WORKERS workers; each worker answers
//   GET /redis?key=K  one GET through ioredis (one connection per worker, ioredis's default)
//   GET /pg?id=N      SELECT name FROM items WHERE id = $1 through a pg.Pool at its defaults
//   GET /http         a GET of UPSTREAM through http.Agent({keepAlive: true})
// with what Node users pick from npm, at their defaults. REDIS, POSTGRES (URLs), UPSTREAM and
// PORT from the environment; NODE_PATH finds the npm packages. Prints "ready PID" per worker.
const cluster = require('cluster');
const http = require('http');

const workers = Number(process.env.WORKERS || 2);
const port = Number(process.env.PORT);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', () => cluster.fork());
  cluster.on('listening', (worker) => console.log(`ready ${worker.process.pid}`));
} else {
  const Redis = require('ioredis');
  const { Pool } = require('pg');
  const redis = new Redis(process.env.REDIS);
  const pool = new Pool({ connectionString: process.env.POSTGRES });
  const agent = new http.Agent({ keepAlive: true });
  const upstream = process.env.UPSTREAM;

  const fail = (res, what, err) => {
    res.statusCode = 503;
    res.end(`node-clients: ${what}: ${err.message}\n`);
  };

  http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    res.setHeader('Content-Type', 'text/plain');
    if (url.pathname === '/redis') {
      redis.get(url.searchParams.get('key') || '').then((value) => {
        if (value === null) res.statusCode = 404;
        res.end(value === null ? '' : value);
      }, (err) => fail(res, '/redis', err));
    } else if (url.pathname === '/pg') {
      pool.query('SELECT name FROM items WHERE id = $1', [url.searchParams.get('id')]).then((r) => {
        if (r.rows.length === 0) res.statusCode = 404;
        res.end(r.rows.length ? r.rows[0].name : '');
      }, (err) => fail(res, '/pg', err));
    } else if (url.pathname === '/http') {
      http.get(upstream, { agent }, (up) => {
        const chunks = [];
        up.on('data', (c) => chunks.push(c));
        up.on('end', () => {
          res.statusCode = up.statusCode;
          res.end(Buffer.concat(chunks));
        });
        up.on('error', (err) => fail(res, '/http', err));
      }).on('error', (err) => fail(res, '/http', err));
    } else {
      res.statusCode = 404;
      res.end();
    }
  }).listen(port, '127.0.0.1');
}
