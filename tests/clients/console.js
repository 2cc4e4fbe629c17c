// Drives webhookd's console in headless Chromium, as an operator would. Run by
// tests/it/console.rs, which starts webhookd and its receivers and passes, as JSON on
// standard input: base (webhookd's URL), token, messageId (a delivered event), deadId
// (a dead-lettered delivery whose receiver now answers 200), source, destination,
// chromium (the browser binary) and shots (where screenshots go).
// Prints one JSON line per check; exits non-zero on the first failure.

const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const { base, token, messageId, deadId, source, destination, shots } = input;

function check(name, ok, detail) {
  console.log(JSON.stringify({ check: name, ok: !!ok, detail: detail || '' }));
  if (!ok) throw new Error(`${name}: ${detail || 'failed'}`);
}

async function shot(page, name) {
  if (shots) {
    fs.mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  }
}

// Clicks what submits a form and waits for the page it leads to.
async function submit(page, target) {
  const locator = typeof target === 'string' ? page.locator(target) : target;
  await Promise.all([page.waitForNavigation(), locator.click()]);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: input.chromium,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();

    // Signed out: the console sends you to sign in.
    await page.goto(`${base}/console/destinations`);
    check('signed out goes to the sign-in page', page.url().endsWith('/console/login'), page.url());
    await shot(page, 'sign-in');

    // A wrong token is refused.
    await page.fill('#token', 'not-the-token');
    await submit(page, 'button[type=submit]');
    check('a wrong token is refused', (await page.textContent('[role=alert]')).includes('Wrong admin token'));
    check('no session after a wrong token', (await context.cookies()).length === 0);

    // Sign in.
    await page.fill('#token', token);
    await submit(page, 'button[type=submit]');
    check('signed in lands on destinations', page.url().endsWith('/console/destinations'), page.url());
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'webhookd_console');
    check('the session cookie is HttpOnly and SameSite=Strict',
      session && session.httpOnly && session.sameSite === 'Strict', JSON.stringify(session));

    // A destination's queue.
    const row = page.locator(`tr[data-destination="${source}/${destination}"]`);
    check('the destination is listed', (await row.count()) === 1);
    const queue = (await row.locator('td.queue').textContent()).trim();
    check('its queue depth is shown', /^\d+$/.test(queue), queue);
    await shot(page, 'destinations');

    // A message and its attempts.
    await page.goto(`${base}/console/messages`);
    await page.fill('input[name=messageId]', messageId);
    await submit(page, 'main button[type=submit]');
    const timeline = page.locator('ul.timeline li');
    check('the message shows its attempts', (await timeline.count()) >= 1);
    check('the attempt shows its status', (await timeline.first().textContent()).includes('200'));
    await shot(page, 'message');

    // Replay a dead letter and see it delivered.
    await page.goto(`${base}/console/dead-letters`);
    await shot(page, 'dead-letters');
    await page.check(`input[name=deliveryId][value="${deadId}"]`);
    await submit(page, '#replay button[type=submit]');
    check('the replay is confirmed', (await page.textContent('[role=status]')).includes('1 dead letter(s) replayed'));
    let delivered = false;
    for (let i = 0; i < 100 && !delivered; i++) {
      await page.goto(`${base}/console/messages?userId=${encodeURIComponent(input.deadUser)}`);
      const dead = await page.locator('main .state.dead').count();
      const done = await page.locator('main .state.delivered').count();
      delivered = dead === 0 && done >= 2;
      if (!delivered) await new Promise((r) => setTimeout(r, 200));
    }
    check('the replayed dead letter is delivered', delivered);

    // Pause, then resume.
    await page.goto(`${base}/console/destinations`);
    await submit(page, row.locator('button', { hasText: 'Pause' }));
    check('pause is confirmed', (await page.textContent('[role=status]')).includes('paused'));
    check('the state shows paused', (await row.locator('.state').first().textContent()).includes('paused'));
    await submit(page, row.locator('button', { hasText: 'Resume' }));
    check('the state shows active again', (await row.locator('.state').first().textContent()).includes('active'));

    // Other pages render.
    await page.goto(`${base}/console/regulations`);
    check('regulations render', (await page.textContent('h1')).includes('Regulations'));
    await shot(page, 'regulations');
    await page.goto(`${base}/console/instances`);
    check('instances render', (await page.locator('td.mono').count()) >= 1);

    // On a phone.
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 } });
    await phone.addCookies([{ ...session }]);
    const small = await phone.newPage();
    await small.goto(`${base}/console/destinations`);
    await shot(small, 'destinations-phone');

    // A form posted from another site is refused, and nothing happens.
    const evil = await context.newPage();
    await evil.route('http://evil.test/**', (route) => route.fulfill({
      contentType: 'text/html',
      body: `<form id=f method=post action="${base}/console/destinations/${source}/${destination}/pause"></form>
             <script>document.getElementById('f').submit()</script>`,
    }));
    const answer = evil.waitForNavigation();
    await evil.goto('http://evil.test/attack');
    await answer;
    const refusedText = await evil.textContent('body');
    check('a cross-site form post is refused',
      evil.url().includes('/console/login') || refusedText.includes('refused'), `${evil.url()} ${refusedText.slice(0, 120)}`);
    await page.goto(`${base}/console/destinations`);
    check('the destination is still active after the attack',
      (await row.locator('.state').first().textContent()).includes('active'));

    // Sign out.
    await submit(page, 'header button[type=submit]');
    check('signed out', page.url().endsWith('/console/login'), page.url());
    await page.goto(`${base}/console/destinations`);
    check('signed out stays out', page.url().endsWith('/console/login'), page.url());
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
