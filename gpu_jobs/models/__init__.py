"""The torch models and the training tasks around them. Imported only on the GPU box, inside
job code and by `gpu_jobs.inference` (lazily); never by the trading engine."""
