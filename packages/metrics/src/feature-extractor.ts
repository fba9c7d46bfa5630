import type { Tensor } from "@ditcache/core";

/** What a {@link FeatureExtractor} returns for a batch of N images. */
export interface FeatureExtraction {
  /** Row-major (N, dim) feature vectors. */
  features: Float32Array;
  /** Row-major (N, classes) classifier logits, when the network has a classifier head. */
  logits?: Float32Array;
}

/**
 * Images to feature vectors: the one thing FID, precision/recall and the Inception-Score-style
 * score need from a network, so they never know which network it is (the demo's digit
 * classifier, Inception-v3, ...). `name` and `hash` identify the feature space in saved
 * feature stats, so stats of different extractors are never compared.
 */
export interface FeatureExtractor {
  /** Stable name of the feature space, e.g. "mnist-classifier". */
  readonly name: string;
  /** Hash of the weights, when known. */
  readonly hash?: string;
  /** Feature dimension. */
  readonly dim: number;
  /** Number of logits per image, when the extractor returns logits. */
  readonly classes?: number;
  /**
   * Extracts features (and logits) of a batch of NCHW images. A Float32Array is read with
   * `shape`; a Tensor must belong to the extractor's backend and have that shape. Input tensors
   * stay owned by the caller.
   */
  extract(images: Tensor | Float32Array, shape: readonly number[]): Promise<FeatureExtraction>;
  /** Releases weights and compiled forms. */
  dispose?(): void;
}
