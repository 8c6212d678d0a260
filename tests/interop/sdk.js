#!/usr/bin/env node
// Thin CLI over ONDC's official signing SDK (ondc-crypto-sdk-nodejs), run as a
// subprocess by the Rust interop tests. The request body is read from stdin.
//
//   node sdk.js sign --private-key B64 --subscriber-id S --unique-key-id K --created N --expires N
//       prints the Authorization header value (no trailing newline), exit 0
//   node sdk.js verify --public-key B64 --header H
//       prints "valid" (exit 0) or "invalid" (exit 1)
//
// Usage errors and SDK exceptions exit 2 with a message on stderr.
'use strict';

const { createAuthorizationHeader, isHeaderValid } = require('ondc-crypto-sdk-nodejs');

function usage(msg) {
  process.stderr.write(`sdk.js: ${msg}\n` +
    'usage: node sdk.js sign --private-key B64 --subscriber-id S --unique-key-id K --created N --expires N\n' +
    '       node sdk.js verify --public-key B64 --header H\n');
  process.exit(2);
}

function parseArgs(argv, names) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const name = flag.startsWith('--') ? flag.slice(2) : null;
    if (!name || !names.includes(name)) usage(`unknown argument ${flag}`);
    if (i + 1 >= argv.length) usage(`missing value for ${flag}`);
    out[name] = argv[i + 1];
  }
  for (const n of names) if (out[n] === undefined) usage(`missing --${n}`);
  return out;
}

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks)));
    process.stdin.on('error', reject);
  });
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === 'sign') {
    const a = parseArgs(rest, ['private-key', 'subscriber-id', 'unique-key-id', 'created', 'expires']);
    // Buffer#toString keeps a leading BOM (TextDecoder would strip it).
    const body = (await readStdin()).toString('utf8');
    const header = await createAuthorizationHeader({
      body,
      privateKey: a['private-key'],
      subscriberId: a['subscriber-id'],
      subscriberUniqueKeyId: a['unique-key-id'],
      created: String(a.created),
      expires: String(a.expires),
    });
    process.stdout.write(header);
    process.exitCode = 0;
  } else if (cmd === 'verify') {
    const a = parseArgs(rest, ['public-key', 'header']);
    const body = (await readStdin()).toString('utf8');
    const ok = await isHeaderValid({ header: a.header, body, publicKey: a['public-key'] });
    process.stdout.write(ok === true ? 'valid' : 'invalid');
    process.exitCode = ok === true ? 0 : 1;
  } else {
    usage(`unknown command ${cmd === undefined ? '(none)' : cmd}`);
  }
}

main().catch((e) => {
  process.stderr.write(`sdk.js: ${e && e.stack ? e.stack : e}\n`);
  process.exitCode = 2;
});
