// The oracle for webhookd's FQL: Segment's own parseFql and validate.
// Reads {"expressions": [...], "events": [...]} on stdin; writes, for each expression,
// {"error": true} when parseFql refuses it, else {"verdicts": [true|false|"throws", ...]}.
const { parseFql, validate } = require('@segment/destination-subscriptions')

let input = ''
process.stdin.on('data', (chunk) => (input += chunk))
process.stdin.on('end', () => {
  const { expressions, events } = JSON.parse(input)
  const out = expressions.map((fql) => {
    const ast = parseFql(fql)
    if (ast.error) return { error: true }
    return {
      verdicts: events.map((event) => {
        try {
          return validate(ast, event)
        } catch (e) {
          return 'throws'
        }
      })
    }
  })
  process.stdout.write(JSON.stringify(out))
})
