/**
 * `sei deploy`: the operator side of a remote model update. Signs the artifact, publishes a job to one device or
 * a fleet in waves, serves the blocks the devices ask for, prints per-device progress and a per-wave summary,
 * and exits 0 only when every targeted device succeeded.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { deploy, deviceLine, prepareArtifact, readPrivateKey } from '../../device-agent/ota/index.js';
import { ConfigError } from '../../runtime/index.js';
import { printJson } from '../output.js';
import { fromFile, num, positive, positiveInt } from '../options.js';

interface Opts {
  model: string;
  key: string;
  device?: string;
  fleet?: string;
  blockSize: number;
  waveSize?: number;
  rate?: number;
  abortThreshold: number;
  broker: string;
  allowDowngrade?: boolean;
  timeout: number;
  discover: number;
  canaries: number;
  topicRoot: string;
  username?: string;
  password?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('deploy')
    .description(
      'push a signed model to one device or a fleet over MQTT: waves, resumable block transfer, health-gated activation with rollback',
    )
    .requiredOption('--model <file>', '.bwsnn model to install')
    .requiredOption('--key <file>', 'Ed25519 private key (PEM) whose public key the agents trust')
    .option('--device <ids>', 'device id(s), comma-separated (in --fleet, default fleet "default")')
    .option('--fleet <name>', 'fleet name; without --device, every online device of the fleet')
    .option('--block-size <n>', 'bytes per block', positiveInt('--block-size'), 16384)
    .option('--wave-size <n>', 'devices per wave (default: all at once)', positiveInt('--wave-size'))
    .option('--rate <r>', 'devices started per minute at most (waves of that size, a minute apart)', positive('--rate'))
    .option(
      '--abort-threshold <pct>',
      'stop the rollout when more than this % of a wave does not succeed',
      num('--abort-threshold', 0, 100),
      50,
    )
    .option('--broker <url>', 'broker URL', 'mqtt://127.0.0.1:1883')
    .option('--allow-downgrade', 'install even if the version is not newer than the running one')
    .option('--timeout <s>', 'seconds a device may take before its job is TIMED_OUT', positive('--timeout'), 600)
    .option('--discover <ms>', "time to collect the fleet's retained status messages", positiveInt('--discover'), 1500)
    .option('--canaries <n>', 'canary frames in the manifest', positiveInt('--canaries'), 4)
    .option('--topic-root <root>', 'first topic level', 'sei')
    .option('--username <u>', 'broker username')
    .option('--password <p>', 'broker password')
    .option('--json', 'print the outcome as one JSON object on the last line')
    .action(async (opts: Opts) => {
      if (opts.device === undefined && opts.fleet === undefined)
        throw new ConfigError('--device / --fleet: expected one of them, got neither', '--device');
      if (opts.waveSize !== undefined && opts.rate !== undefined)
        throw new ConfigError('--wave-size / --rate: expected one of them, got both', '--rate');
      const key = readPrivateKey(opts.key);
      const { artifact, manifest, signed } = await fromFile('--model', 'a .bwsnn model', opts.model, () =>
        prepareArtifact(new Uint8Array(readFileSync(opts.model)), key, { canaries: opts.canaries }),
      );
      const result = await deploy({
        url: opts.broker,
        artifact,
        manifest,
        signed,
        fleet: opts.fleet ?? 'default',
        devices: opts.device === undefined ? null : opts.device.split(',').filter((d) => d.length > 0),
        topicRoot: opts.topicRoot,
        blockSize: opts.blockSize,
        ...(opts.waveSize !== undefined ? { waveSize: opts.waveSize } : {}),
        ...(opts.rate !== undefined ? { ratePerMinute: opts.rate } : {}),
        abortThresholdPct: opts.abortThreshold,
        allowDowngrade: opts.allowDowngrade === true,
        timeoutS: opts.timeout,
        discoverMs: opts.discover,
        ...(opts.username !== undefined ? { username: opts.username } : {}),
        ...(opts.password !== undefined ? { password: opts.password } : {}),
        log: (line) => console.log(line),
      });
      console.log(
        `job ${result.jobId}: ${result.ok ? 'every device updated' : result.aborted ? 'rollout aborted' : 'not every device updated'}`,
      );
      for (const d of result.devices) console.log(deviceLine(d));
      if (opts.json) printJson({ ...result });
      process.exitCode = result.ok ? 0 : 1;
    });
}
