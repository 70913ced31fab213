/**
 * What `inspectBwsnn` tells of a file without building its tensors: the header's fields, each layer's shapes and
 * bytes, the sizes and the signer. Types only, no imports and no Node API: the agent's wire types
 * (device-agent/messages.ts, the model card) are built from these, and the fleet console's page type-checks
 * against them in a browser setting. Type aliases, not interfaces, so each is also a plain JSON record.
 */

export type LayerSummary = {
  readonly op: string;
  readonly name: string;
  /** [h, w, c] for conv layers; [features] for linear layers and the head. */
  readonly inShape: readonly number[];
  readonly outShape: readonly number[];
  readonly shortcut?: string;
  /** Bytes of this layer's tensor sections. */
  readonly bytes: number;
};

export type BwsnnSummary = {
  readonly formatVersion: number;
  readonly name: string;
  readonly version: number;
  /** The time steps the model was trained for (an engine may run it at another T: EngineOptions.steps). */
  readonly T: number;
  readonly input: readonly number[];
  readonly labels: readonly string[];
  readonly producer: string;
  readonly createdAt: string;
  readonly layers: readonly LayerSummary[];
  readonly sizes: { readonly file: number; readonly header: number; readonly data: number };
  readonly signed: boolean;
  /** Hex key id (SHA-256 of the raw Ed25519 public key) of the signer, null when unsigned. */
  readonly keyId: string | null;
  /** Hex SHA-256 stored in the file (verified). */
  readonly checksum: string;
};
