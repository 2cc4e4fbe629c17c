// Verifies Standard Webhooks signatures with the official `standardwebhooks` package.
// Reads [{"secret": "whsec_...", "headers": {...}, "body": "..."}, ...] on stdin; writes
// one true/false per item (true: Webhook.verify accepted it).
const { Webhook } = require('standardwebhooks')

let input = ''
process.stdin.on('data', (chunk) => (input += chunk))
process.stdin.on('end', () => {
  const out = JSON.parse(input).map(({ secret, headers, body }) => {
    try {
      new Webhook(secret).verify(body, headers)
      return true
    } catch (e) {
      return false
    }
  })
  process.stdout.write(JSON.stringify(out))
})
