// The oracle for webhookd's mappings: Segment's mapping-kit (transform of
// @segment/actions-core, which needs liquidjs beside it).
// Reads {"mappings": [...], "events": [...]} on stdin; writes, for each mapping,
// {"invalid": true} when its validation refuses it, else {"results": [{"ok": value} |
// {"throws": true}, ...]} (value as JSON.stringify writes it).
const { transform } = require('@segment/actions-core')
const path = require('path')
// Not exported by the package: required by its file path.
const validate = require(path.join(
  path.dirname(require.resolve('@segment/actions-core')),
  'mapping-kit',
  'validate.js'
)).default

let input = ''
process.stdin.on('data', (chunk) => (input += chunk))
process.stdin.on('end', () => {
  const { mappings, events } = JSON.parse(input)
  const out = mappings.map((mapping) => {
    try {
      validate(mapping)
    } catch (e) {
      return { invalid: true }
    }
    return {
      results: events.map((event) => {
        try {
          return { ok: JSON.stringify(transform(mapping, event)) }
        } catch (e) {
          return { throws: true }
        }
      })
    }
  })
  process.stdout.write(JSON.stringify(out))
})
