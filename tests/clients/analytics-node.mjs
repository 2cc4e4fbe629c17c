// Sends one event of each type through @segment/analytics-node to webhookd.
// Usage: node analytics-node.mjs <host> <writeKey> <runId>
// Prints the messageIds it sent, one JSON object per line: {"type": ..., "messageId": ...}.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, runId] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, flushAt: 3, maxRetries: 0 })
const failures = []
analytics.on('error', (err) => failures.push(String(err && (err.reason || err.message || err))))

const calls = [
  ['identify', { userId: 'u-1', traits: { email: 'a@example.com', friendCount: 29 } }],
  ['track', { userId: 'u-1', event: 'Purchased an Item', properties: { revenue: 39.95, shippingMethod: '2-day', big: 9007199254740993 } }],
  ['page', { anonymousId: 'anon-1', category: 'Docs', name: 'Pricing', properties: { path: '/pricing' } }],
  ['screen', { userId: 'u-1', name: 'Main Screen', properties: { 'élan': 'ünïcode ✓' } }],
  ['group', { userId: 'u-1', groupId: 'g-1', traits: { name: 'Initech', employees: 329 } }],
  ['alias', { previousId: 'anon-1', userId: 'u-1' }],
]
for (const [type, params] of calls) {
  const messageId = `${runId}-${type}`
  analytics[type]({ ...params, messageId })
  console.log(JSON.stringify({ type, messageId, params }))
}
await analytics.closeAndFlush({ timeout: 20000 })
if (failures.length) {
  console.error('delivery to webhookd failed:', failures.join('; '))
  process.exit(1)
}
