export type { ClassifierLayer, DigitClassifierOptions } from "./digit-classifier.js";
export { DigitClassifier } from "./digit-classifier.js";
export type { FeatureExtraction, FeatureExtractor } from "./feature-extractor.js";
export type {
  ExtractorIdentity,
  FeatureStatsExpectation,
  FeatureStatsJson,
  FeatureStatsOptions,
} from "./feature-stats.js";
export { FeatureStats } from "./feature-stats.js";
export type { GaussianMoments } from "./frechet.js";
export { frechetDistance, frechetDistanceOfGaussians } from "./frechet.js";
export type { ImageQualityOptions, ImageScores } from "./image-quality.js";
export { meanSquaredError, psnr, ssim } from "./image-quality.js";
export type { InceptionScore, InceptionScoreOptions } from "./inception-score.js";
export { inceptionScore } from "./inception-score.js";
export type { InceptionV3Options } from "./inception-v3.js";
export { bilinearResizeMatrix, InceptionV3FeatureExtractor } from "./inception-v3.js";
export type { SymmetricEigen } from "./linalg.js";
export { symmetricEigen, traceSqrtProduct } from "./linalg.js";
export type { PrecisionRecall, PrecisionRecallOptions } from "./precision-recall.js";
export { precisionRecall } from "./precision-recall.js";
