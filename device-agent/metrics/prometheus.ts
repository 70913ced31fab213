/**
 * The agent's figures as Prometheus text on a local HTTP port, named by Prometheus conventions: base units
 * (seconds, bytes, ratios), `_total` counters. Every value is read from one snapshot per scrape.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';
import type { MetricsSnapshot } from './collector.js';

// prom-client is loaded when an exporter is made (metrics.httpPort set), not by every agent.
const require = createRequire(import.meta.url);

export class PrometheusExporter {
  readonly registry: Registry;
  private server: Server | null = null;
  private current: MetricsSnapshot | null = null;

  constructor(
    private readonly snapshot: () => MetricsSnapshot,
    labels: Record<string, string> = {},
  ) {
    const { Counter, Gauge, Registry, collectDefaultMetrics } = require('prom-client') as typeof import('prom-client');
    this.registry = new Registry();
    this.registry.setDefaultLabels(labels);
    // process_resident_memory_bytes, process_cpu_seconds_total and friends, under their standard names.
    collectDefaultMetrics({ register: this.registry });
    const reg = [this.registry];
    // The first collect of a scrape takes the snapshot; the others reuse it.
    const snap = (): MetricsSnapshot => (this.current ??= this.snapshot());
    const gauge = (
      name: string,
      help: string,
      read: (s: MetricsSnapshot) => number | null,
      labelNames: string[] = [],
    ) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: reg,
        collect() {
          const v = read(snap());
          if (v !== null) this.set(v);
        },
      });
    const counter = (name: string, help: string, read: (s: MetricsSnapshot) => number) =>
      new Counter({
        name,
        help,
        registers: reg,
        collect() {
          this.reset();
          this.inc(read(snap()));
        },
      });
    counter('sei_agent_frames_total', 'Frames inferred since start.', (s) => s.frames);
    counter('sei_agent_frames_dropped_total', 'Frames dropped by the full source queue.', (s) => s.dropped);
    counter('sei_agent_frame_errors_total', 'Frames refused as malformed.', (s) => s.frameErrors);
    counter(
      'sei_agent_labelled_frames_total',
      'Frames that came with a ground-truth label (current model).',
      (s) => s.accuracy?.labelled ?? 0,
    );
    counter(
      'sei_agent_correct_predictions_total',
      'Labelled frames predicted correctly (current model).',
      (s) => s.accuracy?.correct ?? 0,
    );
    gauge('sei_agent_frames_per_second', 'Inference throughput over the last seconds.', (s) => s.framesPerSecond);
    gauge('sei_agent_queue_depth', 'Frames waiting between source and engine.', (s) => s.queueDepth);
    gauge('sei_agent_outbox_messages', 'Messages waiting in the outbox for a broker acknowledgement.', (s) => s.outbox);
    gauge('sei_agent_synaptic_ops_per_frame', 'Synaptic operations per frame (recent mean).', (s) => s.synOpsPerFrame);
    gauge(
      'sei_agent_accuracy_ratio',
      'Accuracy against known labels (current model).',
      (s) => s.accuracy?.ratio ?? null,
    );
    gauge('sei_agent_cpu_temperature_celsius', 'CPU temperature from /sys/class/thermal.', (s) => s.cpuTemperatureC);
    new Gauge({
      name: 'sei_agent_inference_latency_seconds',
      help: 'Inference latency percentiles over the recent frames.',
      labelNames: ['quantile'],
      registers: reg,
      collect() {
        const l = snap().latencyMs;
        this.set({ quantile: '0.5' }, l.p50 / 1000);
        this.set({ quantile: '0.9' }, l.p90 / 1000);
        this.set({ quantile: '0.99' }, l.p99 / 1000);
      },
    });
    new Gauge({
      name: 'sei_agent_layer_spike_rate_ratio',
      help: 'Fraction of neuron-steps that spiked, per layer (recent mean).',
      labelNames: ['layer'],
      registers: reg,
      collect() {
        this.reset();
        for (const [layer, v] of Object.entries(snap().spikeRate)) this.set({ layer }, v);
      },
    });
    new Gauge({
      name: 'sei_agent_model_info',
      help: 'The active model version (value 1).',
      labelNames: ['version'],
      registers: reg,
      collect() {
        this.reset();
        const m = snap().model;
        if (m !== null) this.set({ version: m }, 1);
      },
    });
  }

  /** The Prometheus exposition text. */
  async text(): Promise<string> {
    this.current = null;
    try {
      return await this.registry.metrics();
    } finally {
      this.current = null;
    }
  }

  /** Serves GET /metrics; resolves with the bound port. */
  async listen(port: number, host: string): Promise<number> {
    const server = createServer((req, res) => {
      if (req.url !== '/metrics' && req.url !== '/') {
        res.writeHead(404).end('not found: try /metrics\n');
        return;
      }
      this.text().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
