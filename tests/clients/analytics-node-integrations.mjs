// Sends track events with Segment's `integrations` flags through @segment/analytics-node.
// Usage: node analytics-node-integrations.mjs <host> <writeKey> <runId>
// Prints one JSON object per line: {"messageId": ..., "integrations": ...}.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, runId] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, flushAt: 10, maxRetries: 0 })
const failures = []
analytics.on('error', (err) => failures.push(String(err && (err.reason || err.message || err))))

const cases = [
  ['none', undefined],
  ['all-off', { All: false }],
  ['webhooks-off', { Webhooks: false }],
  ['all-off-webhooks-on', { All: false, Webhooks: true }],
  ['all-off-orders-options', { All: false, 'Orders Hook': { note: 'options object' } }],
  ['wrong-case', { webhooks: false }],
  ['all-on-orders-off', { All: true, 'Orders Hook': false }],
]
for (const [name, integrations] of cases) {
  const messageId = `${runId}-${name}`
  analytics.track({ userId: 'u-1', event: 'Flagged', messageId, ...(integrations ? { integrations } : {}) })
  console.log(JSON.stringify({ messageId, integrations }))
}
await analytics.closeAndFlush({ timeout: 20000 })
if (failures.length) {
  console.error('delivery to webhookd failed:', failures.join('; '))
  process.exit(1)
}
