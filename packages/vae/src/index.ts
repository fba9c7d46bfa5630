export type { VaeConfig } from "./config.js";
export { decoderWeightShapes, parseVaeConfig, SD_VAE_CONFIG, validateVaeConfig } from "./config.js";
export type { VaeDecodeOptions, VaeLoadOptions } from "./decoder.js";
export { VAE_FILES, VaeDecoder } from "./decoder.js";
