#!/usr/bin/env node
// ONDC's Node signing SDK (ondc-crypto-sdk-nodejs) measured over the same body and key as the
// Rust micro benchmark (benches/micro.rs), which runs this script as a subprocess.
//
//   node sign_verify.js CONFIG.json
//
// CONFIG.json: {
//   "mode": "check" | "bench",
//   "body_file": path of the exact body bytes (read as UTF-8, as the SDK takes a string),
//   "private_key": base64 of the 64-byte seed||public key, "public_key": base64 of 32 bytes,
//   "subscriber_id", "unique_key_id", "created", "expires": header parameters,
//   "header": an Authorization header made by the Rust code over the body,
//   "seconds": measuring time per operation (bench), "warmup_seconds": warm-up per operation
// }
//
// check: prints {"sdk_version","node_version","rust_header_valid","node_header"}.
// bench: prints {"sign":{"ops","secs","cpu_secs"},"verify":{...}}: sequential awaits of
//        createAuthorizationHeader and isHeaderValid, each for a fixed time after a warm-up.
//
// The SDK is resolved from ONDC_NODE_SDK_DIR (default: tests/interop of this repository).
// Exit 3 when the SDK cannot be loaded, 2 on any other failure; stdout carries only the JSON.
'use strict';

const fs = require('fs');
const path = require('path');

// Anything the SDK logs goes to stderr, so stdout stays one JSON document.
console.log = (...args) => console.error(...args);

function loadSdk() {
  const dir = process.env.ONDC_NODE_SDK_DIR || path.join(__dirname, '..', '..', 'tests', 'interop');
  let resolved;
  try {
    resolved = require.resolve('ondc-crypto-sdk-nodejs', { paths: [dir] });
  } catch (e) {
    process.stderr.write(`ondc-crypto-sdk-nodejs not found from ${dir} (run npm ci there)\n`);
    process.exit(3);
  }
  const sdk = require(resolved);
  let version = 'unknown';
  try {
    const pkg = path.join(path.dirname(resolved), '..', 'package.json');
    version = JSON.parse(fs.readFileSync(pkg, 'utf8')).version;
  } catch (_) {
    // The version is only reported.
  }
  return { sdk, version };
}

// Sequential awaits of `op` for `seconds` of wall-clock time: the operations completed, the wall
// time, and the process's CPU time (user + system, every thread: the SDK's cost as the machine
// pays it, whatever else competes for the cores).
async function timeLoop(op, seconds) {
  const ns = BigInt(Math.round(seconds * 1e9));
  const cpuBefore = process.cpuUsage();
  const start = process.hrtime.bigint();
  let ops = 0;
  let now = start;
  while (now - start < ns) {
    await op();
    ops += 1;
    now = process.hrtime.bigint();
  }
  const cpu = process.cpuUsage(cpuBefore);
  return { ops, secs: Number(now - start) / 1e9, cpu_secs: (cpu.user + cpu.system) / 1e6 };
}

async function main() {
  const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const { sdk, version } = loadSdk();
  const body = fs.readFileSync(config.body_file).toString('utf8');
  const sign = () =>
    sdk.createAuthorizationHeader({
      body,
      privateKey: config.private_key,
      subscriberId: config.subscriber_id,
      subscriberUniqueKeyId: config.unique_key_id,
      created: String(config.created),
      expires: String(config.expires),
    });
  const verify = (header) => sdk.isHeaderValid({ header, body, publicKey: config.public_key });

  if (config.mode === 'check') {
    const rustHeaderValid = (await verify(config.header)) === true;
    const nodeHeader = await sign();
    process.stdout.write(JSON.stringify({
      sdk_version: version,
      node_version: process.version,
      rust_header_valid: rustHeaderValid,
      node_header: nodeHeader,
    }));
  } else if (config.mode === 'bench') {
    const header = await sign();
    if ((await verify(header)) !== true) throw new Error('the SDK does not verify its own header');
    const result = {};
    for (const [name, op] of [['sign', sign], ['verify', () => verify(header)]]) {
      await timeLoop(op, config.warmup_seconds);
      result[name] = await timeLoop(op, config.seconds);
    }
    process.stdout.write(JSON.stringify(result));
  } else {
    throw new Error(`unknown mode ${config.mode}`);
  }
}

main().catch((e) => {
  process.stderr.write(`sign_verify.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});
