"""The async shell around the synchronous core: feeds it market events with a wall clock,
executes its intents through a broker, journals, and publishes snapshots to clients."""
