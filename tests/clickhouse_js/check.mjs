// The official ClickHouse JS client against the collector's read endpoint (tests/test_grafana_protocol.py):
// ping, a JSONEachRow query with query_params, the same with response compression, and a refused INSERT.
// Prints one JSON document with what each step got; the Python test judges it.
import { createClient } from '@clickhouse/client'

const url = process.env.TRACEHOUSE_QUERY_URL
const password = process.env.TRACEHOUSE_QUERY_KEY

async function step(fn) {
  try {
    return { ok: true, value: await fn() }
  } catch (err) {
    return { ok: false, code: err.code ?? null, type: err.type ?? null, message: String(err.message ?? err) }
  }
}

function client(compressResponse) {
  return createClient({ url, username: 'default', password, compression: { response: compressResponse } })
}

const plain = client(false)
const compressed = client(true)
const sql = 'SELECT {name:String} AS name, number + {add:UInt32} AS n FROM numbers(3) ORDER BY n'
const params = { name: "it's {x:String}", add: 40 }
const out = {
  ping: await step(async () => (await plain.ping()).success),
  rows: await step(async () => (await plain.query({ query: sql, query_params: params, format: 'JSONEachRow' })).json()),
  compressed: await step(async () => {
    const result = await compressed.query({ query: sql, query_params: params, format: 'JSONEachRow' })
    return { rows: await result.json(), query_id: result.query_id }
  }),
  insert: await step(async () => plain.insert({ table: 'llm_calls', values: [{ service: 'x' }], format: 'JSONEachRow' })),
  command: await step(async () => plain.command({ query: 'CREATE TABLE t (a UInt8) ENGINE = Memory' })),
}
await plain.close()
await compressed.close()
process.stdout.write(JSON.stringify(out))
