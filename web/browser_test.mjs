// Browser check of the tidemark dashboard with headless Chromium.
//
// Usage: node web/browser_test.mjs URL SCREENSHOT.png [--wait-correction]
//
// Loads the page, waits for the first full render (body[data-ready="1"]), prints one
// JSON line {kpis, charts, heatmap_cells, status, errors} and saves a full-page
// screenshot. With --wait-correction it then prints READY, waits up to 60 s for an
// element with class "corrected", prints {corrections, kpis} and saves a second
// screenshot named SCREENSHOT-corrected.png.
// Exit code: 0 on success, 1 on timeout or bad usage, 2 when the page logged errors.

import { chromium } from 'playwright-core';

const LOAD_TIMEOUT_MS = 60_000;
const CORRECTION_TIMEOUT_MS = 60_000;

function parseArgs(argv) {
  const flags = argv.filter((a) => a.startsWith('--'));
  const [url, screenshot] = argv.filter((a) => !a.startsWith('--'));
  if (!url || !screenshot) {
    console.error('usage: node browser_test.mjs URL SCREENSHOT.png [--wait-correction]');
    process.exit(1);
  }
  return { url, screenshot, waitCorrection: flags.includes('--wait-correction') };
}

function correctedPath(screenshot) {
  return screenshot.endsWith('.png') ? `${screenshot.slice(0, -4)}-corrected.png` : `${screenshot}-corrected.png`;
}

// Collects console errors and uncaught page errors.
function watchErrors(page) {
  const errors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`page: ${err.message}`));
  return errors;
}

// KPI values as exposed by the cards' data-value attribute (raw API numbers).
function readKpis(page) {
  return page.$$eval('.kpi[data-metric]', (cards) => Object.fromEntries(cards.map((c) => [
    c.dataset.metric,
    c.dataset.value === undefined || c.dataset.value === '' ? null : Number(c.dataset.value),
  ])));
}

async function readDump(page, errors) {
  const dom = await page.evaluate(() => ({
    charts: Array.from(document.querySelectorAll('.chart'))
      .filter((c) => Number(c.dataset.points || 0) > 0 && c.querySelector('.uplot canvas')).length,
    heatmap_cells: document.querySelectorAll('#retention td.heat').length,
    status: (document.getElementById('status')?.textContent || '').trim(),
  }));
  return { kpis: await readKpis(page), ...dom, errors: [...errors] };
}

async function readCorrections(page) {
  return {
    corrections: await page.$$eval('#correction-list li.corrected', (items) => items.map((i) => (i.querySelector('.note') || i).textContent.trim())),
    kpis: await readKpis(page),
  };
}

async function main() {
  const { url, screenshot, waitCorrection } = parseArgs(process.argv.slice(2));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let code = 0;
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    const errors = watchErrors(page);
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: LOAD_TIMEOUT_MS });
    await page.waitForFunction(() => document.body.dataset.ready === '1', null, { timeout: LOAD_TIMEOUT_MS });
    await page.waitForTimeout(500); // let the last render and fonts settle
    const dump = await readDump(page, errors);
    console.log(JSON.stringify(dump));
    await page.screenshot({ path: screenshot, fullPage: true });
    if (waitCorrection) {
      console.log('READY');
      await page.waitForSelector('.corrected', { state: 'attached', timeout: CORRECTION_TIMEOUT_MS });
      await page.waitForTimeout(300);
      console.log(JSON.stringify(await readCorrections(page)));
      await page.screenshot({ path: correctedPath(screenshot), fullPage: true });
    }
    if (errors.length) {
      console.error(`page errors:\n${errors.join('\n')}`);
      code = 2;
    }
  } catch (err) {
    console.error(`browser_test: ${err.message}`);
    code = 1;
  } finally {
    await browser.close();
  }
  process.exit(code);
}

main();
