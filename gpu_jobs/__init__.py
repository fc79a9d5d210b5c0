"""Training jobs for the remote GPU box: job specs, packing, transports (ssh, local), the
remote entry point and the torch models. Never imported by the trading engine."""
