//! Synthetic product photos with ground truth, for tests, samples and the quality benchmark.
